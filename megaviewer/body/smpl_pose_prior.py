"""The pose prior driving SMPL / SMPL-H: the same anatomical poses as Anny's, converted to SMPL joint rotations.

Why transfer the anatomical angles rather than invent a SMPL-native prior: the project's prior
(:class:`~megaviewer.body.pose_prior.PosePrior`) does not sample Anny bone rotations directly; it samples
*anatomical angles* (hip flexion, knee flexion, shoulder abduction, ... in degrees, :data:`DOF_NAMES`) from the
authored key poses and the retargeted motion clips, with correlated noise, mirroring and clinical ranges of
motion, and only then converts them to the body's rotations. Those angles mean the same on any human
skeleton, so SMPL gets the whole prior -- key poses, real motion (``motion`` / ``hard`` priors), noise and
orientation model -- by writing only the conversion, instead of a weaker prior of random joint rotations
that would produce implausible bodies and would not share the benchmark's pose splits.

The conversion follows ``PosePrior.angles_to_pose`` axis for axis. Both bodies use the same "local-ref"
kinematics (each joint rotates about world-aligned rest axes at its head, composed onto its parent), so every
rotation vector in Anny's axes (x left, -y front, z up) becomes the same physical rotation in SMPL's
(x left, y up, z front) through ``(x, y, z) -> (x, z, -y)``. What differs is the rest pose: SMPL's is a
T-pose with straight elbows and palms down, Anny's an A-pose. The shoulder is measured from the anatomical
neutral (arm hanging, palm facing the thigh, thumb forward); the shortest rotation from SMPL's rest upper arm to
hanging reaches exactly that neutral, and the elbow, pronation and wrist axes are that neutral's axes carried
back to the rest pose. SMPL has no separate twist joints: the humerus twist is composed into the shoulder and
forearm pronation is split evenly between the elbow and the wrist (so neither joint's skinning wraps much).
Fingers stay flat (SMPL-H, as the original) and SMPL's ``*_hand`` joints at rest.

Shapes are SMPL betas drawn from a standard normal (the shape space is whitened: N(0, I) is its population),
clipped to +-3. Self-intersections are rejected with the same coarse capsule test as Anny's, on SMPL's rest
skeleton, with capsules named after SMPL joints.
"""

from __future__ import annotations

import torch

from megaviewer.body.key_poses import KEY_POSES, KeyPose
from megaviewer.body.pose_prior import (
    _IDX,
    CapsuleTest,
    MotionBank,
    PosePrior,
    PosePriorConfig,
    _compose,
    _unit,
)
from megaviewer.geometry.rotations import matrix_to_rotvec, rotvec_to_matrix

# Share of the trunk's flexion, side bend and turn per SMPL spine joint (bottom to top), and of the neck's.
_SPINE = ("spine1", "spine2", "spine3")
_SPINE_W = {"flex": (0.45, 0.3, 0.25), "bend": (0.35, 0.35, 0.3), "rot": (0.25, 0.35, 0.4)}
_NECK = ("neck", "head")
_NECK_W = (0.55, 0.45)
SIDES = (("l", "left", 1.0), ("r", "right", -1.0))
BETA_SIGMA = 1.0
BETA_CLIP = 3.0
HAND_LENGTH = 0.08  # m, the hand capsule's length beyond the wrist


class SmplPosePrior(PosePrior):
    """Draws :class:`~megaviewer.body.base.BodyParams` for a :class:`~megaviewer.body.smpl_body.SmplBody`
    (module docstring): pose (B, 23 or 21, 3) axis-angles in smplx's joint order, betas (B, S), orientation
    (B, 3, 3) in the shared frame."""

    def __init__(self, body, config: PosePriorConfig | None = None, key_poses: tuple[KeyPose, ...] = KEY_POSES,
                 motion: MotionBank | None = None):
        self._init_sampling(config, key_poses, motion)
        self.body = body
        self.num_joints = len(body.pose_joint_names)
        self.joint_names: tuple[str, ...] = tuple(body.joint_names)
        smpl = body.smpl
        with torch.no_grad():
            rest = (smpl.J_regressor.double() @ smpl.v_template.double()).float()  # (J, 3) mean-shape joints
        self.rest_joints = rest
        self.parents = [int(p) for p in smpl.parents]
        self._build_smpl_geometry()
        capsules = smpl_capsules(rest, self.joint_names)
        self.capsules = CapsuleTest(rest, self.parents, self.joint_names, capsules=capsules)

    # ----------------------------------------------------------------------------------------- geometry
    def _j(self, name: str) -> torch.Tensor:
        return self.rest_joints[self.joint_names.index(name)]

    def _pose_index(self, name: str) -> int:
        return self.body.pose_joint_names.index(name)

    def _build_smpl_geometry(self) -> None:
        """Rest-pose axes that turn anatomical angles into SMPL joint rotations (module docstring)."""
        self._arm: dict[str, dict[str, torch.Tensor]] = {}
        self._leg_axis: dict[str, torch.Tensor] = {}
        down = torch.tensor([0.0, -1.0, 0.0])
        for s, side_name, side in SIDES:
            upper = _unit(self._j(f"{side_name}_elbow") - self._j(f"{side_name}_shoulder"))
            fore = _unit(self._j(f"{side_name}_wrist") - self._j(f"{side_name}_elbow"))
            neutral = rotvec_to_matrix(_shortest_rotation(upper, down))  # rest upper arm -> hanging
            # Axes of the hanging, palm-medial, thumb-forward arm, carried back to the rest pose: the elbow
            # flexes the forearm forward (about -x), the palm faces the body's midline (-side * x).
            elbow_axis = neutral.T @ torch.tensor([-1.0, 0.0, 0.0])
            palm = neutral.T @ torch.tensor([-side, 0.0, 0.0])
            self._arm[s] = {"neutral": neutral, "humerus": upper, "forearm": fore, "elbow_axis": elbow_axis,
                            "palm": palm, "wrist_axis": _unit(torch.linalg.cross(fore, palm))}
            self._leg_axis[s] = _unit(self._j(f"{side_name}_knee") - self._j(f"{side_name}_hip"))

    # ---------------------------------------------------------------------------------------- sampling
    def sample_phenotypes(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """SMPL betas (B, S): standard normal, clipped (module docstring)."""
        betas = torch.randn(batch, len(self.body.shape_names), generator=generator) * BETA_SIGMA
        return betas.clamp(-BETA_CLIP, BETA_CLIP)

    def _bulk(self, shape: torch.Tensor) -> torch.Tensor:
        """No build-dependent arm spread: betas have no fixed meaning across SMPL files and genders."""
        return torch.zeros(shape.shape[0])

    # ---------------------------------------------------------------------------------------- conversion
    def angles_to_pose(self, angles: torch.Tensor) -> torch.Tensor:
        """Anatomical angles (B, D) in degrees -> SMPL axis-angles (B, J, 3) in radians."""
        batch = angles.shape[0]
        rad = torch.deg2rad(angles.float())
        col = {n: rad[:, i] for n, i in _IDX.items()}
        pose = torch.zeros(batch, self.num_joints, 3)
        index = self._pose_index
        zero = torch.zeros(batch)
        for s, name, side in SIDES:
            def a(dof: str, s: str = s) -> torch.Tensor:
                return col[f"{dof}_{s}"]

            # Hip: swing (flexion about -x, abduction about side * z) after a twist about the thigh axis.
            swing = torch.stack([-a("hip_flex"), zero, side * a("hip_abd")], -1)
            twist = side * a("hip_rot")[:, None] * self._leg_axis[s]
            pose[:, index(f"{name}_hip")] = _compose(swing, twist)
            pose[:, index(f"{name}_knee")] = torch.stack([a("knee_flex"), zero, zero], -1)
            pose[:, index(f"{name}_ankle")] = torch.stack([-a("ankle_flex"), zero, -side * a("ankle_inv")], -1)
            # Shoulder: swing from the hanging arm, shared with the collar as Anny's shoulder girdle; the
            # humerus twist about its rest axis composed after the neutral.
            arm = self._arm[s]
            swing = torch.stack([-a("shoulder_flex"), zero, side * a("shoulder_abd")], -1)
            k = self.config.scapula_share
            pose[:, index(f"{name}_collar")] = k * swing
            twist = rotvec_to_matrix(side * a("shoulder_rot")[:, None] * arm["humerus"])
            upper = rotvec_to_matrix((1 - k) * swing) @ arm["neutral"] @ twist
            pose[:, index(f"{name}_shoulder")] = matrix_to_rotvec(upper)
            half_pronation = rotvec_to_matrix(0.5 * side * a("forearm_pron")[:, None] * arm["forearm"])
            flexion = rotvec_to_matrix(a("elbow_flex")[:, None] * arm["elbow_axis"])
            pose[:, index(f"{name}_elbow")] = matrix_to_rotvec(flexion @ half_pronation)
            wrist = rotvec_to_matrix(a("wrist_flex")[:, None] * arm["wrist_axis"]
                                     + side * a("wrist_dev")[:, None] * arm["palm"])
            pose[:, index(f"{name}_wrist")] = matrix_to_rotvec(half_pronation @ wrist)
        # Trunk and neck: Anny's (flex, bend, turn) about (x, y, z) in its axes is (flex, turn, -bend) in SMPL's.
        trunk = torch.stack([col["spine_flex"], col["spine_rot"], -col["spine_bend"]], -1)
        for j, name in enumerate(_SPINE):
            weight = torch.tensor([_SPINE_W["flex"][j], _SPINE_W["rot"][j], _SPINE_W["bend"][j]])
            pose[:, index(name)] = trunk * weight
        neck = torch.stack([col["neck_flex"], col["neck_rot"], -col["neck_bend"]], -1)
        for j, name in enumerate(_NECK):
            pose[:, index(name)] = neck * _NECK_W[j]
        return pose


def _shortest_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rotation vector of the shortest rotation taking unit vector ``a`` to unit vector ``b``."""
    axis = torch.linalg.cross(a, b)
    sin, cos = axis.norm(), (a @ b).clamp(-1.0, 1.0)
    if sin < 1e-8:
        if cos > 0:
            return torch.zeros(3)
        helper = torch.tensor([0.0, 0.0, 1.0]) if abs(float(a[2])) < 0.9 else torch.tensor([1.0, 0.0, 0.0])
        return _unit(torch.linalg.cross(a, helper)) * torch.pi
    return axis / sin * torch.atan2(sin, cos)


def smpl_capsules(rest: torch.Tensor, joint_names: tuple[str, ...]) -> dict[str, tuple[tuple, tuple, float]]:
    """Capsules of :class:`CapsuleTest` in SMPL joint names and axes (metres; x left, y up, z front): the same
    names, radii and roles as Anny's, with ends placed on SMPL's joints. The hand runs from the wrist along the
    rest forearm direction, since SMPL-H has no single hand joint."""
    def j(name: str) -> torch.Tensor:
        return rest[joint_names.index(name)]

    capsules: dict[str, tuple[tuple, tuple, float]] = {
        "torso_L": (("spine1", None, 0.0, (0.05, 0.0, 0.03)), ("spine3", None, 0.0, (0.05, 0.02, 0.03)), 0.07),
        "torso_R": (("spine1", None, 0.0, (-0.05, 0.0, 0.03)), ("spine3", None, 0.0, (-0.05, 0.02, 0.03)), 0.07),
        "pelvis": (("pelvis", None, 0.0, (0.07, 0.0, 0.02)), ("pelvis", None, 0.0, (-0.07, 0.0, 0.02)), 0.06),
        "head": (("head", None, 0.0, (0.0, 0.02, 0.015)), ("head", None, 0.0, (0.0, 0.08, 0.015)), 0.06),
    }
    for s, name in (("L", "left"), ("R", "right")):
        hand = tuple((HAND_LENGTH * _unit(j(f"{name}_wrist") - j(f"{name}_elbow"))).tolist())
        capsules.update({
            f"uarm_{s}": ((f"{name}_shoulder", f"{name}_elbow", 0.45, None), (f"{name}_elbow", None, 0.0, None),
                          0.02),
            f"farm_{s}": ((f"{name}_elbow", None, 0.0, None), (f"{name}_wrist", None, 0.0, None), 0.022),
            f"hand_{s}": ((f"{name}_wrist", None, 0.0, None), (f"{name}_wrist", None, 0.0, hand), 0.02),
            f"thigh_{s}": ((f"{name}_hip", f"{name}_knee", 0.45, None), (f"{name}_knee", None, 0.0, None), 0.045),
            f"shank_{s}": ((f"{name}_knee", None, 0.0, None), (f"{name}_ankle", None, 0.0, None), 0.035),
            f"foot_{s}": ((f"{name}_ankle", None, 0.0, None), (f"{name}_foot", None, 0.0, None), 0.025),
        })
    return capsules
