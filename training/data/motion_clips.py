"""Real motion for the pose prior: the DeepMimic humanoid clips that the ``pybullet`` wheel ships.

Why: the authored key poses cover everyday postures, but not the transitions real people go through
(rolling, getting up from the floor, crawling, cartwheels). The ``pybullet`` wheel on PyPI (zlib licence,
training-only extra ``pip install -e .[train]``) ships 15 motion-capture clips of the DeepMimic humanoid
(Peng et al., SIGGRAPH 2018) in ``pybullet_data/data/motions/humanoid3d_*.txt``. This module reads them,
runs the humanoid's forward kinematics, and retargets every frame onto the prior's anatomical angles
(:data:`megaviewer.body.pose_prior.DOF_NAMES`) plus a root rotation, giving a
:class:`~megaviewer.body.pose_prior.MotionBank`. Inference never needs pybullet.

Clip format (one JSON object): ``Loop`` and ``Frames``, each frame 44 numbers: duration, root position
(3), root rotation (quaternion w, x, y, z), then chest, neck, right hip (quaternions), right knee (angle),
right ankle, right shoulder (quaternions), right elbow (angle), left hip, left knee, left ankle, left
shoulder, left elbow. Every rotation is local to the parent joint, whose rest frame is the world's:
y up, the humanoid facing +x, its right side +z, arms hanging and legs straight in the rest pose. Knees
and elbows turn about their z axis.

Retargeting is analytic (no optimisation): each rotation is expressed in Anny's axes (x = body left,
y = back, z = up), spherical limb joints are split into a swing of the limb away from hanging straight
down and a twist about it, and those map onto the prior's flexion/abduction/rotation angles exactly as
:meth:`PosePrior.angles_to_pose` builds them; the chest and neck rotations spread over Anny's spine and
neck bones. :func:`limb_direction_error` measures what is lost (twists of the forearm, the five-bone spine
as one joint, different rest proportions).
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from megaviewer.body.pose_prior import DOF_NAMES, MotionBank
from megaviewer.geometry.rotations import matrix_to_rotvec

CLIP_NAMES: tuple[str, ...] = ("backflip", "cartwheel", "crawl", "dance_a", "dance_b", "getup_facedown",
                               "getup_faceup", "jump", "kick", "punch", "roll", "run", "spin", "spinkick",
                               "walk")
# Held out of every training stream: the benchmark's hard-poses split.
HARD_CLIPS: tuple[str, ...] = ("roll", "getup_faceup")
TRAIN_CLIPS: tuple[str, ...] = tuple(n for n in CLIP_NAMES if n not in HARD_CLIPS)

SPHERICAL = ("chest", "neck", "right_hip", "right_ankle", "right_shoulder", "left_hip", "left_ankle",
             "left_shoulder")
REVOLUTE = ("right_knee", "right_elbow", "left_knee", "left_elbow")
# Column of each joint's first value in a frame, in file order.
_COLUMNS = {"root_position": 1, "root": 4, "chest": 8, "neck": 12, "right_hip": 16, "right_knee": 20,
            "right_ankle": 21, "right_shoulder": 25, "right_elbow": 29, "left_hip": 30, "left_knee": 34,
            "left_ankle": 35, "left_shoulder": 39, "left_elbow": 43}
FRAME_SIZE = 44

# The humanoid's skeleton (humanoid.urdf in the same wheel, loaded there at scale 0.25): joint -> (parent,
# offset from the parent joint in the parent's rest frame, metres).
_S = 0.25
SKELETON: dict[str, tuple[str | None, tuple[float, float, float]]] = {
    "root": (None, (0.0, 0.0, 0.0)),
    "chest": ("root", (0.0, 0.944604 * _S, 0.0)),
    "neck": ("chest", (0.0, 0.895576 * _S, 0.0)),
    "right_hip": ("root", (0.0, 0.0, 0.339548 * _S)),
    "right_knee": ("right_hip", (0.0, -1.686184 * _S, 0.0)),
    "right_ankle": ("right_knee", (0.0, -1.639480 * _S, 0.0)),
    "right_shoulder": ("chest", (-0.0962 * _S, 0.974 * _S, 0.73244 * _S)),
    "right_elbow": ("right_shoulder", (0.0, -1.099152 * _S, 0.0)),
    "right_wrist": ("right_elbow", (0.0, -1.035788 * _S, 0.0)),
    "left_hip": ("root", (0.0, 0.0, -0.339548 * _S)),
    "left_knee": ("left_hip", (0.0, -1.686184 * _S, 0.0)),
    "left_ankle": ("left_knee", (0.0, -1.639480 * _S, 0.0)),
    "left_shoulder": ("chest", (-0.0962 * _S, 0.974 * _S, -0.73244 * _S)),
    "left_elbow": ("left_shoulder", (0.0, -1.099152 * _S, 0.0)),
    "left_wrist": ("left_elbow", (0.0, -1.035788 * _S, 0.0)),
}

# Clip axes (x front, y up, z right) -> Anny axes (x left, y back, z up) and -> the shared canonical frame
# (x left, y up, z front). Both are proper rotations.
CLIP_TO_ANNY = torch.tensor([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
CLIP_TO_SHARED = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
# Forearm pronation the clips do not record: the relaxed value of the key poses.
RELAXED_PRONATION_DEG = 10.0


@dataclass(frozen=True)
class MotionClip:
    """One clip: ``root_position`` (F, 3) metres, ``rotations`` joint -> (F, 4) unit quaternions (w, x, y, z)
    for the root and spherical joints, ``angles`` joint -> (F,) radians for knees and elbows."""

    name: str
    frame_duration: float
    loops: bool
    root_position: torch.Tensor
    rotations: dict[str, torch.Tensor]
    angles: dict[str, torch.Tensor]

    @property
    def num_frames(self) -> int:
        return int(self.root_position.shape[0])


def clip_directory() -> Path:
    """The folder of the clips inside the installed ``pybullet`` wheel (found without importing pybullet)."""
    spec = importlib.util.find_spec("pybullet_data")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the motion clips come with the pybullet wheel: pip install -e '.[train]' "
                                "(or pip install pybullet)")
    return Path(spec.origin).parent / "data" / "motions"


def read_clip(path: str | Path) -> MotionClip:
    """Parse one ``humanoid3d_*.txt`` file; quaternions are renormalised (the files round to 6 decimals)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        frames = torch.tensor(data["Frames"], dtype=torch.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a DeepMimic motion clip ({exc})") from exc
    if frames.ndim != 2 or frames.shape[1] != FRAME_SIZE or frames.shape[0] < 1:
        raise ValueError(f"{path}: expected frames of {FRAME_SIZE} numbers, got shape {tuple(frames.shape)}")
    name = path.stem.removeprefix("humanoid3d_")
    rotations = {}
    for joint in ("root", *SPHERICAL):
        q = frames[:, _COLUMNS[joint]:_COLUMNS[joint] + 4]
        rotations[joint] = (q / q.norm(dim=-1, keepdim=True)).float()
    angles = {joint: frames[:, _COLUMNS[joint]].float() for joint in REVOLUTE}
    return MotionClip(name=name, frame_duration=float(frames[0, 0]), loops=data.get("Loop") == "wrap",
                      root_position=frames[:, 1:4].float(), rotations=rotations, angles=angles)


def load_clips(names: tuple[str, ...] = CLIP_NAMES, folder: str | Path | None = None) -> list[MotionClip]:
    folder = Path(folder) if folder is not None else clip_directory()
    return [read_clip(folder / f"humanoid3d_{name}.txt") for name in names]


# ------------------------------------------------------------------------------------------ kinematics
def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) unit quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*q.shape[:-1], 3, 3)


def _axis_angle_z(angle: torch.Tensor) -> torch.Tensor:
    c, s, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], -1).reshape(*angle.shape, 3, 3)


def local_rotations(clip: MotionClip) -> dict[str, torch.Tensor]:
    """Every joint's rotation relative to its parent, (F, 3, 3) in clip axes (identity for the wrists)."""
    rot = {j: quaternion_to_matrix(q) for j, q in clip.rotations.items()}
    rot.update({j: _axis_angle_z(a) for j, a in clip.angles.items()})
    return rot


def joint_positions(clip: MotionClip, with_root: bool = True) -> dict[str, torch.Tensor]:
    """World joint positions (F, 3) in the clip's frame by forward kinematics; ``with_root=False`` leaves the
    root at the origin with the identity rotation (the body's own frame)."""
    local = local_rotations(clip)
    frames = clip.num_frames
    eye = torch.eye(3).expand(frames, 3, 3)
    world_rot: dict[str, torch.Tensor] = {}
    pos: dict[str, torch.Tensor] = {}
    for joint, (parent, offset) in SKELETON.items():
        if parent is None:
            world_rot[joint] = local["root"] if with_root else eye
            pos[joint] = clip.root_position if with_root else torch.zeros(frames, 3)
            continue
        pos[joint] = pos[parent] + (world_rot[parent] @ torch.tensor(offset))
        world_rot[joint] = world_rot[parent] @ local.get(joint, eye)
    return pos


# ----------------------------------------------------------------------------------------- retargeting
def _swing_twist(rot: torch.Tensor, axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split rotations (F, 3, 3) as R = swing @ twist(axis): the swing's axis-angle (F, 3), the twist angle (F,)."""
    from megaviewer.geometry.rotations import rotvec_to_matrix

    rotvec = matrix_to_rotvec(rot)
    angle = rotvec.norm(dim=-1, keepdim=True)
    half = 0.5 * angle
    w = torch.cos(half)[:, 0]
    v = torch.where(angle > 1e-8, rotvec / angle.clamp_min(1e-8), torch.zeros_like(rotvec)) * torch.sin(half)
    twist = 2.0 * torch.atan2(v @ axis, w)
    twist = torch.remainder(twist + math.pi, 2 * math.pi) - math.pi
    swing = rot @ rotvec_to_matrix(twist[:, None] * axis).transpose(-1, -2)
    return matrix_to_rotvec(swing), twist


def retarget(clip: MotionClip) -> tuple[torch.Tensor, torch.Tensor]:
    """Prior angles (F, D) in degrees (``DOF_NAMES`` order, not yet clamped) and root rotations (F, 3, 3) in
    the shared canonical frame (y up, facing +z) of every frame of ``clip``."""
    local = local_rotations(clip)
    to_anny = CLIP_TO_ANNY
    anny = {j: to_anny @ r @ to_anny.T for j, r in local.items()}
    down = torch.tensor([0.0, 0.0, -1.0])
    col = {name: i for i, name in enumerate(DOF_NAMES)}
    angles = torch.zeros(clip.num_frames, len(DOF_NAMES))

    def put(name: str, radians: torch.Tensor) -> None:
        angles[:, col[name]] = torch.rad2deg(radians)

    for prefix, s, side in (("left", "l", 1.0), ("right", "r", -1.0)):
        for joint, dof in (("hip", "hip"), ("shoulder", "shoulder")):
            swing, twist = _swing_twist(anny[f"{prefix}_{joint}"], down)
            put(f"{dof}_flex_{s}", -swing[:, 0])
            put(f"{dof}_abd_{s}", -side * swing[:, 1])
            put(f"{dof}_rot_{s}", side * twist)
        put(f"knee_flex_{s}", -clip.angles[f"{prefix}_knee"])
        put(f"elbow_flex_{s}", clip.angles[f"{prefix}_elbow"])
        ankle = matrix_to_rotvec(anny[f"{prefix}_ankle"])
        put(f"ankle_flex_{s}", -ankle[:, 0])
        put(f"ankle_inv_{s}", side * ankle[:, 1])
        angles[:, col[f"forearm_pron_{s}"]] = RELAXED_PRONATION_DEG
    for joint, names in (("chest", ("spine_flex", "spine_bend", "spine_rot")),
                         ("neck", ("neck_flex", "neck_bend", "neck_rot"))):
        rotvec = matrix_to_rotvec(anny[joint])
        for k, name in enumerate(names):
            put(name, rotvec[:, k])
    root = CLIP_TO_SHARED @ local["root"] @ CLIP_TO_SHARED.T
    return angles, root


def build_motion_bank(clips: list[MotionClip]) -> MotionBank:
    """Every frame of ``clips`` retargeted, with the clip index of each frame."""
    parts = [retarget(c) for c in clips]
    clip_index = torch.cat([torch.full((c.num_frames,), i) for i, c in enumerate(clips)])
    return MotionBank(angles=torch.cat([p[0] for p in parts]), root=torch.cat([p[1] for p in parts]),
                      clip_index=clip_index, clip_names=tuple(c.name for c in clips))


def load_motion_bank(names: tuple[str, ...] = TRAIN_CLIPS, folder: str | Path | None = None) -> MotionBank:
    return build_motion_bank(load_clips(names, folder))


# ------------------------------------------------------------------------------------------ validation
# Limb segments compared between the clip skeleton and Anny's: (clip start, clip end, Anny start, Anny end).
LIMBS: tuple[tuple[str, str, str, str], ...] = tuple(
    item for p, s in (("left", "L"), ("right", "R")) for item in (
        (f"{p}_shoulder", f"{p}_elbow", f"upperarm01.{s}", f"lowerarm01.{s}"),
        (f"{p}_elbow", f"{p}_wrist", f"lowerarm01.{s}", f"wrist.{s}"),
        (f"{p}_hip", f"{p}_knee", f"upperleg01.{s}", f"lowerleg01.{s}"),
        (f"{p}_knee", f"{p}_ankle", f"lowerleg01.{s}", f"foot.{s}"),
    )) + (("root", "neck", "root", "neck01"),)


def limb_direction_error(clip: MotionClip, prior, body) -> torch.Tensor:
    """Angle (F, L) in degrees between each limb's direction in the clip (root frame) and in Anny posed with
    the retargeted, clamped angles: the retargeting's own error, before any augmentation."""
    from megaviewer.body.pose_prior import clamp_angles

    angles, _ = retarget(clip)
    pose = prior.angles_to_pose(clamp_angles(angles))
    with torch.no_grad():
        bones = body.anny_output(pose, body.default_shape(pose.shape[0]))["bone_poses"][..., :3, 3].float()
    pos = joint_positions(clip, with_root=False)
    errors = []
    for a, b, c, d in LIMBS:
        clip_dir = (pos[b] - pos[a]) @ CLIP_TO_ANNY.T
        anny_dir = bones[:, body.bone_names.index(d)] - bones[:, body.bone_names.index(c)]
        cos = torch.nn.functional.cosine_similarity(clip_dir, anny_dir, dim=-1).clamp(-1.0, 1.0)
        errors.append(torch.rad2deg(torch.acos(cos)))
    return torch.stack(errors, -1)
