"""A procedural pose and shape prior for Anny: realistic random humans without motion capture.

Why: MEGA's tokenizer and generator need many plausible human meshes, and no free motion-capture set can
be shipped (spec ``pose-data.md``). The recipe: pick an authored key pose (:mod:`key_poses`) or blend two
of one category, add correlated noise, mirror left/right at random, clamp every anatomical angle to its
normal adult range of motion, reject self-intersections with a coarse capsule test, and draw phenotypes
from a mostly adult population and an upright-ish, all-round-yawed global orientation.

Angles are anatomical (degrees, :data:`DOF_NAMES`; ranges of motion in :mod:`key_poses`) and are
converted to Anny's ``local-ref`` axis-angles (rotations about world-aligned rest axes at each bone head,
composed onto the parent; Anny axes: x = body left, -y = front, z = up). Anny's rest pose is an A-pose with
bent elbows, so the shoulder and elbow are measured from the anatomical neutral (arm hanging, elbow
straight) and converted with rotations derived from the rest skeleton.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from megaviewer.body.anny_body import AnnyBody
from megaviewer.body.base import BodyParams
from megaviewer.body.key_poses import KEY_POSES, SIDED_RANGES, TRUNK_RANGES, KeyPose
from megaviewer.geometry.rotations import matrix_to_rotvec, rotvec_to_matrix

DOF_NAMES: tuple[str, ...] = tuple(f"{n}_{s}" for s in "lr" for n in SIDED_RANGES) + tuple(TRUNK_RANGES)
DOF_LIMITS = torch.tensor([SIDED_RANGES[n[:-2]] if n[-2:] in ("_l", "_r") else TRUNK_RANGES[n]
                           for n in DOF_NAMES], dtype=torch.float32)  # (D, 3): low, high, noise sigma
_IDX = {n: i for i, n in enumerate(DOF_NAMES)}
_SPINE = ("spine05", "spine04", "spine03", "spine02", "spine01")
_SPINE_W = {"flex": (0.3, 0.25, 0.2, 0.15, 0.1), "bend": (0.25, 0.2, 0.2, 0.2, 0.15),
            "rot": (0.1, 0.15, 0.2, 0.25, 0.3)}
_NECK = ("neck01", "neck02", "neck03", "head")
_NECK_W = (0.3, 0.25, 0.2, 0.25)


@dataclass
class PosePriorConfig:
    """Knobs of the prior; defaults give the distribution shown in the README contact sheet."""

    noise_scale: float = 1.0  # multiplies every DOF's noise sigma
    interpolate_prob: float = 0.5  # chance of blending the key pose with another of its category
    mirror_prob: float = 0.5
    side_correlation: float = 0.5  # correlation of the left and right noise of one DOF
    tilt_sigma_deg: float = 7.0  # pitch/roll of the global orientation, clipped to +-tilt_max_deg
    tilt_max_deg: float = 20.0
    child_fraction: float = 0.08  # children/teens; the rest are adults
    phenotype_sigma: float = 0.15  # spread of muscle, weight, proportions around 0.5
    height_mean: float = 0.45
    height_sigma: float = 0.12
    finger_curl_deg: float = 18.0  # fixed relaxed hand
    scapula_share: float = 0.2  # part of the arm elevation taken by the shoulder girdle
    max_rounds: int = 12  # rejection rounds before falling back to a plain standing pose
    # Real motion (used only when the prior is given a MotionBank): the chance that a sample is a motion
    # frame rather than a key pose, the noise on such frames (they are real poses already), and blends
    # with a random key pose of weight up to motion_blend_max in motion_blend_prob of them.
    motion_prob: float = 0.4
    motion_noise_scale: float = 0.5
    motion_blend_prob: float = 0.3
    motion_blend_max: float = 0.3


@dataclass(frozen=True)
class MotionBank:
    """Frames of real motion retargeted onto the prior's angles (``training.data.motion_clips``).

    ``angles`` (F, D) degrees in ``DOF_NAMES`` order; ``root`` (F, 3, 3) the pelvis rotation in the shared
    frame (y up, facing +z), which carries lying, crawling and rolling orientations; ``clip_index`` (F,)
    which clip each frame is from. Clips are drawn uniformly, then a frame, so long clips do not dominate.
    """

    angles: torch.Tensor
    root: torch.Tensor
    clip_index: torch.Tensor
    clip_names: tuple[str, ...]

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Frame indices (B,): a uniform clip, then a uniform frame of it."""
        clips = torch.randint(len(self.clip_names), (batch,), generator=generator)
        counts = torch.bincount(self.clip_index, minlength=len(self.clip_names))
        starts = torch.cumsum(counts, 0) - counts
        offset = (torch.rand(batch, generator=generator) * counts[clips]).long().clamp_max(counts[clips] - 1)
        return starts[clips] + offset


class PosePrior:
    """Draws :class:`BodyParams` for an :class:`AnnyBody` (see module docstring)."""

    def __init__(self, body: AnnyBody, config: PosePriorConfig | None = None,
                 key_poses: tuple[KeyPose, ...] = KEY_POSES, motion: MotionBank | None = None):
        self._init_sampling(config, key_poses, motion)
        self.body = body
        self.num_joints = len(body.pose_joint_names)
        with torch.no_grad():
            rest = body.anny_output(torch.zeros(1, self.num_joints, 3), body.default_shape(1))
        self.rest_heads = rest["bone_poses"][0, :, :3, 3].float()  # (J+1, 3) Anny axes, all bones
        self.parents = [int(p) for p in body.anny.bone_parents]
        self._build_geometry()
        self.capsules = CapsuleTest(self.rest_heads, self.parents, body.bone_names)

    def _init_sampling(self, config: PosePriorConfig | None, key_poses: tuple[KeyPose, ...],
                       motion: MotionBank | None) -> None:
        """The body-independent state: key poses, their categories and weights, the motion bank. Priors of
        other bodies (:class:`~megaviewer.body.smpl_pose_prior.SmplPosePrior`) share it and the angle
        sampling, and bring their own conversion to pose parameters."""
        self.config = config or PosePriorConfig()
        self.motion = motion if motion is not None and self.config.motion_prob > 0 else None
        self.key_poses = key_poses
        self._key_angles = torch.stack([_key_vector(k) for k in key_poses])  # (K, D)
        self._key_root = torch.tensor([k.root for k in key_poses], dtype=torch.float32)  # (K, 2)
        self._key_weight = torch.tensor([k.weight for k in key_poses], dtype=torch.float32)
        cats = sorted({k.category for k in key_poses})
        cat = torch.tensor([cats.index(k.category) for k in key_poses])
        self._same_cat = (cat[:, None] == cat[None, :]).float() * self._key_weight[None, :]

    # ----------------------------------------------------------------------------------------- geometry
    def _h(self, name: str) -> torch.Tensor:
        return self.rest_heads[self.body.bone_names.index(name)]

    def _build_geometry(self) -> None:
        """Axes of the rest skeleton that turn anatomical angles into local-ref rotations."""
        self._arm: dict[str, dict[str, torch.Tensor]] = {}
        self._leg_axis: dict[str, torch.Tensor] = {}
        hand = torch.zeros(self.num_joints, 3)
        for s, side in (("L", 1.0), ("R", -1.0)):
            upper = _unit(self._h(f"lowerarm01.{s}") - self._h(f"upperarm01.{s}"))
            fore = _unit(self._h(f"wrist.{s}") - self._h(f"lowerarm01.{s}"))
            down = torch.tensor([0.0, 0.0, -1.0])
            neutral = _unit(torch.linalg.cross(upper, down)) * torch.acos(upper @ down)  # rest -> hanging
            elbow_axis = _unit(torch.linalg.cross(upper, fore))
            rest_bend = torch.rad2deg(torch.acos(upper @ fore))
            index = self._h(f"finger2-1.{s}") - self._h(f"wrist.{s}")
            pinky = self._h(f"finger5-1.{s}") - self._h(f"wrist.{s}")
            palm = _unit(torch.linalg.cross(index, pinky)) * -side
            self._arm[s] = {"neutral": rotvec_to_matrix(neutral), "elbow_axis": elbow_axis,
                            "rest_bend": rest_bend, "humerus": upper, "forearm": fore,
                            "wrist_axis": _unit(torch.linalg.cross(fore, palm)), "palm": palm}
            self._leg_axis[s] = _unit(self._h(f"lowerleg01.{s}") - self._h(f"upperleg01.{s}"))
            for i, name in enumerate(self.body.pose_joint_names):
                if not (name.startswith("finger") and name.endswith(f".{s}")):
                    continue
                bone = self.body.bone_names.index(name)
                children = [c for c, p in enumerate(self.parents) if p == bone]
                tip = self.rest_heads[children[0]] if children else self.rest_heads[bone] + 0.02 * fore
                direction = _unit(tip - self.rest_heads[bone])
                curl = self.config.finger_curl_deg * (0.5 if name.startswith("finger1") else 1.0)
                hand[i] = _unit(torch.linalg.cross(direction, palm)) * math.radians(curl)
        self._hand_pose = hand

    # ---------------------------------------------------------------------------------------- sampling
    def sample(self, batch: int, generator: torch.Generator) -> BodyParams:
        """``batch`` random bodies: pose (B, 103, 3), phenotypes (B, 6) in [0, 1], orientation (B, 3, 3)."""
        return self.sample_with_angles(batch, generator)[0]

    def sample_with_angles(self, batch: int, generator: torch.Generator) -> tuple[BodyParams, torch.Tensor]:
        """As :meth:`sample`, also returning the anatomical angles (B, D) in degrees (``DOF_NAMES``)."""
        shape = self.sample_phenotypes(batch, generator)
        angles, root, frame_root = self._sample_valid_angles(shape, generator)
        pose = self.angles_to_pose(angles)
        orient = self.sample_orientation(root, generator, frame_root)
        return BodyParams(pose=pose, shape=shape, global_orient=orient), angles

    def _sample_valid_angles(self, shape: torch.Tensor, generator: torch.Generator):
        """Draw angles; redraw the self-intersecting ones for a few rounds (batched, no per-sample loop)."""
        batch = shape.shape[0]
        angles = torch.zeros(batch, len(DOF_NAMES))
        root = torch.zeros(batch, 2)
        frame_root = torch.eye(3).repeat(batch, 1, 1) if self.motion is not None else None
        todo = torch.arange(batch)
        for _ in range(self.config.max_rounds):
            cand, cand_root, cand_frame = self.sample_angles(shape[todo], generator)
            ok = ~self.capsules.intersects(self.angles_to_pose(cand))
            angles[todo[ok]], root[todo[ok]] = cand[ok], cand_root[ok]
            if frame_root is not None:
                frame_root[todo[ok]] = cand_frame[ok]
            todo = todo[~ok]
            if todo.numel() == 0:
                break
        if todo.numel():  # plain standing, arms slightly out: always valid
            angles[todo] = standing_angles(todo.numel())
            root[todo] = 0.0
        return angles, root, frame_root

    def sample_angles(self, shape: torch.Tensor, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Key pose (or blend) or motion frame, + correlated noise + mirroring, clamped: angles (B, D), key
        root tilt (B, 2), and the motion frames' root rotations (B, 3, 3; identity for key poses), or
        ``None`` when the prior has no motion (then no random number is drawn for motion at all)."""
        cfg, batch = self.config, shape.shape[0]
        key = torch.multinomial(self._key_weight, batch, replacement=True, generator=generator)
        partner = torch.multinomial(self._same_cat[key], 1, generator=generator)[:, 0]
        blend = torch.rand(batch, generator=generator)
        blend = blend * (torch.rand(batch, generator=generator) < cfg.interpolate_prob)
        angles = torch.lerp(self._key_angles[key], self._key_angles[partner], blend[:, None])
        root = torch.lerp(self._key_root[key], self._key_root[partner], blend[:, None])
        noise = self._correlated_noise(batch, generator)
        frame_root = None
        if self.motion is not None:
            angles, root, noise, frame_root = self._mix_motion(angles, root, noise, key, generator)
        angles = angles + noise
        bulk = self._bulk(shape)
        for s in "lr":
            angles[:, _IDX[f"shoulder_abd_{s}"]] += 15.0 * bulk
            angles[:, _IDX[f"hip_abd_{s}"]] += 5.0 * bulk
        mirror = torch.rand(batch, generator=generator) < cfg.mirror_prob
        angles = torch.where(mirror[:, None], mirror_angles(angles), angles)
        root = torch.where(mirror[:, None], root * torch.tensor([1.0, -1.0]), root)
        if frame_root is not None:  # a reflection x -> -x of the body: S R S with S = diag(-1, 1, 1)
            flip = torch.tensor([-1.0, 1.0, 1.0])
            frame_root = torch.where(mirror[:, None, None], frame_root * flip[:, None] * flip, frame_root)
        return clamp_angles(angles), root, frame_root

    def _bulk(self, shape: torch.Tensor) -> torch.Tensor:
        """(B,) >= 0: how much further out a body holds its arms and thighs for its build. Heavier, more
        muscular Anny bodies (phenotypes muscle + weight above 1) hold them a little further out."""
        return (shape[:, 2] + shape[:, 3] - 1.0).clamp_min(0.0)

    def _mix_motion(self, angles: torch.Tensor, root: torch.Tensor, noise: torch.Tensor, key: torch.Tensor,
                    generator: torch.Generator):
        """Replace a ``motion_prob`` share of the rows by motion frames: their angles (blended with the row's
        key pose in some), their root rotation, no key tilt, and scaled-down noise."""
        cfg, motion, batch = self.config, self.motion, angles.shape[0]
        use = torch.rand(batch, generator=generator) < cfg.motion_prob
        frame = motion.sample(batch, generator)
        weight = torch.rand(batch, generator=generator) * cfg.motion_blend_max
        weight = weight * (torch.rand(batch, generator=generator) < cfg.motion_blend_prob)
        moving = torch.lerp(motion.angles[frame], self._key_angles[key], weight[:, None])
        angles = torch.where(use[:, None], moving, angles)
        root = torch.where(use[:, None], torch.zeros_like(root), root)
        noise = torch.where(use[:, None], noise * cfg.motion_noise_scale, noise)
        frame_root = torch.where(use[:, None, None], motion.root[frame], torch.eye(3).expand(batch, 3, 3))
        return angles, root, noise, frame_root

    def _correlated_noise(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Per-DOF Gaussian noise, correlated across sides and along the leg and arm chains."""
        cfg = self.config
        n_sided = len(SIDED_RANGES)
        sigma = DOF_LIMITS[:, 2] * cfg.noise_scale * (0.5 + torch.rand(batch, 1, generator=generator))
        rho = cfg.side_correlation
        shared = torch.randn(batch, n_sided, generator=generator)
        own = torch.randn(batch, len(DOF_NAMES), generator=generator)
        z = own.clone()
        z[:, :2 * n_sided] = rho * shared.repeat(1, 2) + math.sqrt(1 - rho * rho) * own[:, :2 * n_sided]
        noise = sigma * z
        synergy = torch.randn(batch, 2, 2, generator=generator) * cfg.noise_scale  # (B, side, {leg, arm})
        for j, s in enumerate("lr"):  # crouching chain and arm-raise chain
            leg, arm = synergy[:, j, 0], synergy[:, j, 1]
            noise[:, _IDX[f"hip_flex_{s}"]] += 8.0 * leg
            noise[:, _IDX[f"knee_flex_{s}"]] += 14.0 * leg
            noise[:, _IDX[f"ankle_flex_{s}"]] += 5.0 * leg
            noise[:, _IDX[f"shoulder_flex_{s}"]] += 10.0 * arm
            noise[:, _IDX[f"elbow_flex_{s}"]] += 12.0 * arm
        return noise

    def sample_phenotypes(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Gender uniform; mostly adults; muscle/weight/height/proportions around 0.5 (PHENOTYPES order)."""
        cfg = self.config
        u = torch.rand(batch, 3, generator=generator)
        young = torch.rand(batch, 2, generator=generator).amin(-1)  # density 2(1-x): more young adults
        adult = 0.6 + 0.4 * young
        child = 0.3 + 0.3 * u[:, 2]
        age = torch.where(u[:, 1] < cfg.child_fraction, child, adult)
        z = torch.randn(batch, 4, generator=generator)
        muscle, weight, proportions = (0.5 + cfg.phenotype_sigma * z[:, :3]).unbind(-1)
        height = cfg.height_mean + cfg.height_sigma * z[:, 3]
        return torch.stack([u[:, 0], age, muscle, weight, height, proportions], -1).clamp(0.0, 1.0)

    def sample_orientation(self, root: torch.Tensor, generator: torch.Generator,
                           frame_root: torch.Tensor | None = None) -> torch.Tensor:
        """Shared y-up/+z-front frame: R = yaw (uniform) . pitch/roll noise . key-pose pelvis tilt
        (. the motion frame's root rotation, when given)."""
        cfg, batch = self.config, root.shape[0]
        yaw = (torch.rand(batch, generator=generator) * 2.0 - 1.0) * math.pi
        tilt = (torch.randn(batch, 2, generator=generator) * cfg.tilt_sigma_deg).clamp(-cfg.tilt_max_deg,
                                                                                         cfg.tilt_max_deg)
        def axis(i: int, deg: torch.Tensor) -> torch.Tensor:
            v = torch.zeros(batch, 3)
            v[:, i] = torch.deg2rad(deg)
            return rotvec_to_matrix(v)

        rot = axis(1, torch.rad2deg(yaw)) @ axis(0, tilt[:, 0]) @ axis(2, tilt[:, 1])
        rot = rot @ axis(0, root[:, 0]) @ axis(2, -root[:, 1])
        return rot if frame_root is None else rot @ frame_root

    # ---------------------------------------------------------------------------------------- conversion
    def angles_to_pose(self, angles: torch.Tensor) -> torch.Tensor:
        """Anatomical angles (B, D) in degrees -> Anny local-ref axis-angles (B, 103, 3) in radians."""
        batch = angles.shape[0]
        rad = torch.deg2rad(angles)
        pose = self._hand_pose.expand(batch, -1, -1).clone()
        col = {n: rad[:, i] for n, i in _IDX.items()}
        bi = self.body.bone_index
        zero = torch.zeros(batch)
        for s, side in (("L", 1.0), ("R", -1.0)):
            def a(name: str, s: str = s) -> torch.Tensor:
                return col[f"{name}_{s.lower()}"]

            # Hip: swing (flexion = -x, abduction = -side*y) after a twist about the thigh axis.
            swing = torch.stack([-a("hip_flex"), -side * a("hip_abd"), zero], -1)
            twist = side * a("hip_rot")[:, None] * self._leg_axis[s]
            pose[:, bi(f"upperleg01.{s}")] = _compose(swing, twist)
            pose[:, bi(f"lowerleg01.{s}")] = torch.stack([a("knee_flex"), zero, zero], -1)
            pose[:, bi(f"foot.{s}")] = torch.stack([-a("ankle_flex"), side * a("ankle_inv"), zero], -1)
            # Shoulder: swing about a horizontal axis from the hanging arm, split with the shoulder girdle.
            arm = self._arm[s]
            swing = torch.stack([-a("shoulder_flex"), -side * a("shoulder_abd"), zero], -1)
            k = self.config.scapula_share
            pose[:, bi(f"shoulder01.{s}")] = k * swing
            upper = rotvec_to_matrix((1 - k) * swing) @ arm["neutral"]
            pose[:, bi(f"upperarm01.{s}")] = matrix_to_rotvec(upper)
            pose[:, bi(f"upperarm02.{s}")] = side * a("shoulder_rot")[:, None] * arm["humerus"]
            bend = a("elbow_flex") - math.radians(float(arm["rest_bend"]))
            pose[:, bi(f"lowerarm01.{s}")] = bend[:, None] * arm["elbow_axis"]
            pose[:, bi(f"lowerarm02.{s}")] = side * a("forearm_pron")[:, None] * arm["forearm"]
            pose[:, bi(f"wrist.{s}")] = (a("wrist_flex")[:, None] * arm["wrist_axis"]
                                         + side * a("wrist_dev")[:, None] * arm["palm"])
        trunk = torch.stack([col["spine_flex"], col["spine_bend"], col["spine_rot"]], -1)
        for j, name in enumerate(_SPINE):
            w = torch.tensor([_SPINE_W["flex"][j], _SPINE_W["bend"][j], _SPINE_W["rot"][j]])
            pose[:, bi(name)] = trunk * w
        neck = torch.stack([col["neck_flex"], col["neck_bend"], col["neck_rot"]], -1)
        for j, name in enumerate(_NECK):
            pose[:, bi(name)] = neck * _NECK_W[j]
        return pose


def canonical_batch(body: AnnyBody, batch: int, generator: torch.Generator,
                    prior: PosePrior | None = None) -> tuple[torch.Tensor, BodyParams]:
    """Canonical meshes (B, V, 3) of random bodies and their parameters: what the tokenizer trains on."""
    prior = prior or PosePrior(body)
    params = prior.sample(batch, generator)
    with torch.no_grad():
        vertices = body.canonical_vertices(params.pose, params.shape)
    return vertices, params


def standing_angles(batch: int) -> torch.Tensor:
    """Neutral standing with the arms 10 degrees out, the fallback when rejection keeps failing."""
    angles = torch.zeros(batch, len(DOF_NAMES))
    angles[:, [_IDX["shoulder_abd_l"], _IDX["shoulder_abd_r"]]] = 10.0
    return angles


def mirror_angles(angles: torch.Tensor) -> torch.Tensor:
    """Swap left/right DOFs and negate the trunk's bends and turns (a reflection of the body)."""
    n = len(SIDED_RANGES)
    out = torch.cat([angles[:, n:2 * n], angles[:, :n], angles[:, 2 * n:]], -1)
    for name in ("spine_bend", "spine_rot", "neck_bend", "neck_rot"):
        out[:, _IDX[name]] = -out[:, _IDX[name]]
    return out


def average_pairwise_distance(joints: torch.Tensor) -> float:
    """APD (paper App. C): mean over sample pairs of the mean joint distance, joints (N, J, 3), same unit."""
    n = joints.shape[0]
    dist = (joints[:, None] - joints[None]).norm(dim=-1).mean(-1)  # (N, N)
    return float(dist.sum() / (n * (n - 1)))


def clamp_angles(angles: torch.Tensor) -> torch.Tensor:
    """Clamp to the ranges of motion; the shoulder's total elevation is also capped at 180 degrees."""
    out = angles.clamp(DOF_LIMITS[:, 0], DOF_LIMITS[:, 1])
    for s in "lr":
        f, a = _IDX[f"shoulder_flex_{s}"], _IDX[f"shoulder_abd_{s}"]
        elevation = out[:, [f, a]].norm(dim=-1).clamp_min(1e-6)
        out[:, [f, a]] *= (180.0 / elevation).clamp(max=1.0)[:, None]
    return out


def _key_vector(key: KeyPose) -> torch.Tensor:
    """Angles (D,) of a key pose: two-sided keys first, so that one-sided keys win."""
    v = torch.zeros(len(DOF_NAMES))
    for name, value in sorted(key.angles.items(), key=lambda item: item[0] in _IDX):
        if name not in _IDX and name not in SIDED_RANGES:
            raise KeyError(f"key pose {key.name!r}: unknown angle {name!r}")
        for dof in [name] if name in _IDX else [f"{name}_l", f"{name}_r"]:
            v[_IDX[dof]] = value
    return v


def _compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Axis-angle of R(outer) @ R(inner)."""
    return matrix_to_rotvec(rotvec_to_matrix(outer) @ rotvec_to_matrix(inner))


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


# Capsules in Anny axes (metres), deliberately thinner than the body so that only limbs passing *through*
# the torso or each other are rejected, not limbs resting against it. An end is (bone, toward bone,
# fraction of the way, offset); "S" stands for L or R.
_CAPSULES: dict[str, tuple[tuple, tuple, float]] = {
    "torso_L": (("spine04", None, 0.0, (0.05, -0.03, 0.02)), ("spine01", None, 0.0, (0.05, -0.03, 0.03)),
                0.07),
    "torso_R": (("spine04", None, 0.0, (-0.05, -0.03, 0.02)), ("spine01", None, 0.0, (-0.05, -0.03, 0.03)),
                0.07),
    "pelvis": (("root", None, 0.0, (0.07, -0.02, 0.0)), ("root", None, 0.0, (-0.07, -0.02, 0.0)), 0.06),
    "head": (("head", None, 0.0, (0.0, -0.015, 0.06)), ("head", None, 0.0, (0.0, -0.015, 0.1)), 0.06),
    "uarm_S": (("upperarm01.S", "lowerarm01.S", 0.45, None), ("lowerarm01.S", None, 0.0, None), 0.02),
    "farm_S": (("lowerarm01.S", None, 0.0, None), ("wrist.S", None, 0.0, None), 0.022),
    "hand_S": (("wrist.S", None, 0.0, None), ("finger3-2.S", None, 0.0, None), 0.02),
    "thigh_S": (("upperleg01.S", "lowerleg01.S", 0.45, None), ("lowerleg01.S", None, 0.0, None), 0.045),
    "shank_S": (("lowerleg01.S", None, 0.0, None), ("foot.S", None, 0.0, None), 0.035),
    "foot_S": (("foot.S", None, 0.0, None), ("toe3-1.S", None, 0.0, None), 0.025),
}
_LEG, _BODY = ("thigh", "shank", "foot"), ("torso_L", "torso_R", "pelvis", "head")


def _capsule_pairs() -> list[tuple[str, str]]:
    """Which capsules must not overlap: limbs vs the trunk and head and vs other limbs (not their own chain).
    Hands are only tested against the head: they legitimately rest on hips, knees, feet and the other arm."""
    pairs = []
    for s in "LR":
        pairs += [(f"farm_{s}", b) for b in _BODY] + [(f"hand_{s}", "head")]  # hands may rest on the body
        pairs += [(f"uarm_{s}", b) for b in ("torso_L", "torso_R", "pelvis")]
        pairs += [(f"{p}_{s}", b) for p in ("shank", "foot") for b in _BODY]
        pairs += [(f"thigh_{s}", b) for b in ("torso_L", "torso_R", "head")]
        pairs += [(f"{p}_{s}", f"{q}_{t}") for p in ("uarm", "farm") for q in _LEG for t in "LR"]
        if s == "L":
            pairs += [("farm_L", "farm_R")]
            pairs += [(f"{p}_L", f"{q}_R") for p in _LEG for q in _LEG]
    return pairs


class CapsuleTest:
    """Coarse, batched self-intersection test of a pose on the mean skeleton (own forward kinematics).

    local-ref kinematics: a bone's world rotation is G_c = G_parent · R(pose_c), and its head is
    head_parent + G_parent (rest_c - rest_parent); a capsule end moves with its bone's G.
    """

    def __init__(self, rest_heads: torch.Tensor, parents: list[int], bone_names: tuple[str, ...],
                 capsules: dict[str, tuple[tuple, tuple, float]] | None = None):
        """``capsules``: the capsule table in the skeleton's own bone names and axes (default: Anny's
        ``_CAPSULES``); it must define the capsule names that ``_capsule_pairs`` tests."""
        names = {}
        for key, (a, b, radius) in (_CAPSULES if capsules is None else capsules).items():
            for s in ("LR" if key.endswith("_S") else "-"):
                fix = (lambda n, s=s: None if n is None else n.replace(".S", f".{s}"))  # noqa: E731
                ends = [(fix(bone), fix(toward), frac, off) for bone, toward, frac, off in (a, b)]
                names[key.replace("_S", f"_{s}")] = (ends, radius)
        self.names = list(names)
        ends, self.ends_bone, self.radius = [], [], torch.tensor([names[n][1] for n in self.names])
        for n in self.names:
            for bone, toward, frac, off in names[n][0]:
                i = bone_names.index(bone)
                offset = torch.tensor(off or (0.0, 0.0, 0.0))
                if toward is not None:
                    offset = offset + frac * (rest_heads[bone_names.index(toward)] - rest_heads[i])
                ends.append(offset)
                self.ends_bone.append(i)
        self.ends_offset = torch.stack(ends)  # (2C, 3)
        needed = set(self.ends_bone)
        for i in list(needed):
            while parents[i] >= 0:
                i = parents[i]
                needed.add(i)
        self.bones = sorted(needed)  # parents precede children in Anny's order; bones[0] is the root
        self._pose_index = torch.tensor(self.bones[1:]) - 1
        self.parents, self.rest_heads = parents, rest_heads
        pairs = _capsule_pairs()
        self.pairs = torch.tensor([(self.names.index(a), self.names.index(b)) for a, b in pairs])

    def clearance(self, pose: torch.Tensor) -> torch.Tensor:
        """Smallest gap (B,) in metres between capsules that must not touch; negative = intersecting."""
        batch = pose.shape[0]
        rot = rotvec_to_matrix(pose[:, self._pose_index].float()).unbind(1)  # bone i is pose index i - 1
        g: dict[int, torch.Tensor] = {0: torch.eye(3).expand(batch, 3, 3)}
        head: dict[int, torch.Tensor] = {0: self.rest_heads[0].expand(batch, 3)}
        for k, i in enumerate(self.bones[1:]):
            p = self.parents[i]
            head[i] = head[p] + g[p] @ (self.rest_heads[i] - self.rest_heads[p])
            g[i] = g[p] @ rot[k]
        gs = torch.stack([g[i] for i in self.ends_bone], 1)  # (B, 2C, 3, 3)
        pts = torch.stack([head[i] for i in self.ends_bone], 1) + (gs @ self.ends_offset[..., None])[..., 0]
        pts = pts.view(batch, -1, 2, 3)
        a, b = self.pairs[:, 0], self.pairs[:, 1]
        dist = _segment_distance(pts[:, a, 0], pts[:, a, 1], pts[:, b, 0], pts[:, b, 1])
        return (dist - self.radius[a] - self.radius[b]).amin(-1)

    def intersects(self, pose: torch.Tensor) -> torch.Tensor:
        """(B,) bool: some limb passes through the trunk, the head or another limb."""
        return self.clearance(pose) < 0.0


def _segment_distance(p1: torch.Tensor, q1: torch.Tensor, p2: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Distance between segments [p1, q1] and [p2, q2] (..., 3) of non-zero length (Ericson, RTCD 5.1.9)."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a, e, b = (d1 * d1).sum(-1), (d2 * d2).sum(-1), (d1 * d2).sum(-1)
    c, f = (d1 * r).sum(-1), (d2 * r).sum(-1)
    denom = a * e - b * b
    s = torch.where(denom > 1e-10, ((b * f - c * e) / denom.clamp_min(1e-10)).clamp(0.0, 1.0), 0.0)
    t = (b * s + f) / e
    s = torch.where(t < 0, (-c / a).clamp(0.0, 1.0), torch.where(t > 1, ((b - c) / a).clamp(0.0, 1.0), s))
    t = t.clamp(0.0, 1.0)
    return (p1 + d1 * s[..., None] - p2 - d2 * t[..., None]).norm(dim=-1)
