"""Real motion clips: reader, forward kinematics, retargeting onto the prior's angles, and the prior's mix."""

from __future__ import annotations

import json
import math

import pytest
import torch

from megaviewer.body.pose_prior import DOF_NAMES, MotionBank, PosePrior, PosePriorConfig
from training.data import motion_clips as mc

IDENTITY = [1.0, 0.0, 0.0, 0.0]


def _quat(axis: tuple[float, float, float], degrees: float) -> list[float]:
    half = math.radians(degrees) / 2
    return [math.cos(half), *(math.sin(half) * a for a in axis)]


def _frame(root_pos=(0.0, 0.9, 0.0), root=IDENTITY, **joints) -> list[float]:
    """One frame in file order; spherical joints default to identity, knees and elbows to 0."""
    values = [0.0333, *root_pos, *root]
    for joint in ("chest", "neck", "right_hip", "right_knee", "right_ankle", "right_shoulder", "right_elbow",
                  "left_hip", "left_knee", "left_ankle", "left_shoulder", "left_elbow"):
        default = [0.0] if joint in mc.REVOLUTE else IDENTITY
        value = joints.get(joint, default)
        values += value if isinstance(value, list) else [value]
    assert len(values) == mc.FRAME_SIZE
    return values


def _write(tmp_path, frames, name="humanoid3d_test.txt"):
    path = tmp_path / name
    path.write_text(json.dumps({"Loop": "wrap", "Frames": frames}))
    return mc.read_clip(path)


def test_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "humanoid3d_bad.txt"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a DeepMimic motion clip"):
        mc.read_clip(bad)
    bad.write_text(json.dumps({"Frames": [[1.0, 2.0, 3.0]]}))
    with pytest.raises(ValueError, match="expected frames of 44"):
        mc.read_clip(bad)


def test_rest_frame_joint_positions(tmp_path):
    clip = _write(tmp_path, [_frame()])
    assert clip.name == "test" and clip.loops and clip.num_frames == 1
    pos = {k: v[0] for k, v in mc.joint_positions(clip).items()}
    s = 0.25
    assert torch.allclose(pos["root"], torch.tensor([0.0, 0.9, 0.0]))
    assert torch.allclose(pos["neck"], torch.tensor([0.0, 0.9 + (0.944604 + 0.895576) * s, 0.0]), atol=1e-6)
    wrist = torch.tensor([-0.0962 * s, 0.9 + (0.944604 + 0.974 - 1.099152 - 1.035788) * s, 0.73244 * s])
    assert torch.allclose(pos["right_wrist"], wrist, atol=1e-6)
    ankle = torch.tensor([0.0, 0.9 - (1.686184 + 1.639480) * s, -0.339548 * s])
    assert torch.allclose(pos["left_ankle"], ankle, atol=1e-6)


def test_known_frame_joint_positions(tmp_path):
    """Root turned 90 degrees about y, right elbow bent 90 degrees: the forearm points along the body's front,
    which the root turn has moved from +x to -z."""
    clip = _write(tmp_path, [_frame(root=_quat((0, 1, 0), 90.0), right_elbow=math.pi / 2)])
    pos = {k: v[0] for k, v in mc.joint_positions(clip).items()}
    forearm = pos["right_wrist"] - pos["right_elbow"]
    assert torch.allclose(forearm, torch.tensor([0.0, 0.0, -1.035788 * 0.25]), atol=1e-5)
    # The right shoulder sits on the body's right: +z at rest, +x after the turn.
    assert pos["right_shoulder"][0] > 0.15 and abs(float(pos["right_shoulder"][2])) < 0.03


def test_retarget_known_angles(tmp_path):
    frame = _frame(right_knee=-math.radians(90.0), right_hip=_quat((0, 0, 1), 30.0),
                   right_shoulder=_quat((1, 0, 0), -90.0), left_elbow=math.radians(60.0),
                   chest=_quat((0, 0, 1), -20.0), root=_quat((0, 0, 1), -90.0))
    angles, root = mc.retarget(_write(tmp_path, [frame]))
    got = dict(zip(DOF_NAMES, angles[0].tolist(), strict=True))
    assert got["knee_flex_r"] == pytest.approx(90.0, abs=1e-3)
    assert got["hip_flex_r"] == pytest.approx(30.0, abs=1e-3)
    assert got["hip_abd_r"] == pytest.approx(0.0, abs=1e-3)
    assert got["shoulder_abd_r"] == pytest.approx(90.0, abs=1e-3)
    assert got["shoulder_flex_r"] == pytest.approx(0.0, abs=1e-3)
    assert got["elbow_flex_l"] == pytest.approx(60.0, abs=1e-3)
    assert got["spine_flex"] == pytest.approx(20.0, abs=1e-3)  # the chest leaning forward (about -z)
    assert got["knee_flex_l"] == pytest.approx(0.0, abs=1e-6)
    # Root pitched 90 degrees forward (face down): the body's up axis (shared +y) points to its front (+z).
    assert torch.allclose(root[0] @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)


def test_twist_survives_the_split(tmp_path):
    """Internal rotation of the upper arm with the elbow bent swings the forearm across the body; the swing-twist
    split must keep that as shoulder rotation and the round trip must put the forearm where the clip has it."""
    q = _quat((0, 1, 0), 40.0)  # rotation about the hanging arm's axis (y in clip axes)
    angles, _ = mc.retarget(_write(tmp_path, [_frame(right_shoulder=q, right_elbow=math.pi / 2)]))
    got = dict(zip(DOF_NAMES, angles[0].tolist(), strict=True))
    assert abs(got["shoulder_rot_r"]) == pytest.approx(40.0, abs=1e-3)
    assert abs(got["shoulder_flex_r"]) < 1e-3 and abs(got["shoulder_abd_r"]) < 1e-3


@pytest.fixture(scope="module")
def clips():
    return mc.load_clips()


def test_shipped_clips_read(clips):
    assert [c.name for c in clips] == list(mc.CLIP_NAMES)
    assert all(c.num_frames >= 20 for c in clips)
    assert set(mc.HARD_CLIPS) <= set(mc.CLIP_NAMES) and not set(mc.HARD_CLIPS) & set(mc.TRAIN_CLIPS)


def test_retargeting_keeps_limb_directions(clips, prior, anny_body):
    """Every clip's limbs on Anny point where the clip's do: mean angle under 8 degrees for each clip (the rest
    skeletons differ by ~6 degrees at the thighs and shanks); a sign error in any DOF would give tens."""
    for clip in clips:
        error = mc.limb_direction_error(clip, prior, anny_body)
        assert float(error.mean()) < 8.0, clip.name
        assert float(error.median()) < 8.0, clip.name


@pytest.fixture(scope="module")
def prior(anny_body):
    return PosePrior(anny_body)


def _bank(clips, names):
    return mc.build_motion_bank([c for c in clips if c.name in names])


def test_motion_bank_draws_clips_uniformly(clips):
    bank = _bank(clips, ("walk", "getup_faceup"))  # 39 and 227 frames
    frames = bank.sample(4000, torch.Generator().manual_seed(0))
    share = (bank.clip_index[frames] == 0).float().mean()
    assert 0.45 < float(share) < 0.55
    assert int(frames.max()) < bank.angles.shape[0]


def test_prior_with_motion(anny_body, clips):
    bank = _bank(clips, ("roll", "crawl"))
    prior = PosePrior(anny_body, PosePriorConfig(motion_prob=1.0), motion=bank)
    params = prior.sample(256, torch.Generator().manual_seed(1))
    again = prior.sample(256, torch.Generator().manual_seed(1))
    assert torch.equal(params.global_orient, again.global_orient) and torch.equal(params.pose, again.pose)
    up = params.global_orient[:, :, 1]  # where each body's up axis points
    lying = (up[:, 1].abs() < 0.5).float().mean()
    assert float(lying) > 0.3  # rolling and crawling bodies are mostly horizontal
    assert torch.allclose(params.global_orient @ params.global_orient.transpose(1, 2),
                          torch.eye(3).expand(256, 3, 3), atol=1e-5)
    keyposes = PosePrior(anny_body).sample(256, torch.Generator().manual_seed(1)).global_orient[:, :, 1]
    assert float((keyposes[:, 1].abs() < 0.5).float().mean()) < float(lying) / 2


def test_no_motion_means_no_change(anny_body, clips):
    """A prior that may never draw motion samples exactly the key-pose prior: same random stream."""
    bank = _bank(clips, ("walk",))
    plain = PosePrior(anny_body).sample(64, torch.Generator().manual_seed(2))
    off = PosePrior(anny_body, PosePriorConfig(motion_prob=0.0), motion=bank).sample(
        64, torch.Generator().manual_seed(2))
    assert torch.equal(plain.pose, off.pose) and torch.equal(plain.global_orient, off.global_orient)


def test_mirrored_motion_root_is_reflected(anny_body):
    """A single asymmetric frame, always mirrored: the root rotation becomes S R S (S = diag(-1, 1, 1))."""
    turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # lying on the side
    bank = MotionBank(angles=torch.zeros(1, len(DOF_NAMES)), root=turn[None], clip_index=torch.zeros(1).long(),
                      clip_names=("side",))
    cfg = PosePriorConfig(motion_prob=1.0, mirror_prob=1.0, motion_blend_prob=0.0)
    prior = PosePrior(anny_body, cfg, motion=bank)
    _, _, frame_root = prior.sample_angles(anny_body.default_shape(4), torch.Generator().manual_seed(0))
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    assert torch.allclose(frame_root, (flip @ turn @ flip).expand(4, 3, 3))
