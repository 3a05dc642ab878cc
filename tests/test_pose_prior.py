"""The procedural pose/shape prior: reproducible, within ranges of motion, varied, self-intersection free."""

from __future__ import annotations

import math

import pytest
import torch

from megaviewer.body.anny_body import AnnyBody
from megaviewer.body.key_poses import KEY_POSES
from megaviewer.body.pose_prior import (
    DOF_LIMITS,
    DOF_NAMES,
    PosePrior,
    _segment_distance,
    average_pairwise_distance,
    canonical_batch,
    mirror_angles,
    standing_angles,
)


@pytest.fixture(scope="module")
def body() -> AnnyBody:
    return AnnyBody()


@pytest.fixture(scope="module")
def prior(body: AnnyBody) -> PosePrior:
    return PosePrior(body)


@pytest.fixture(scope="module")
def drawn(prior: PosePrior):
    """One large draw shared by the distribution tests."""
    return prior.sample_with_angles(1024, torch.Generator().manual_seed(7))


def _angle(name: str, angles: torch.Tensor) -> torch.Tensor:
    return angles[:, DOF_NAMES.index(name)]


def test_same_seed_same_samples(prior: PosePrior):
    a = prior.sample(32, torch.Generator().manual_seed(3))
    b = prior.sample(32, torch.Generator().manual_seed(3))
    assert torch.equal(a.pose, b.pose) and torch.equal(a.shape, b.shape)
    assert torch.equal(a.global_orient, b.global_orient)


def test_different_seeds_differ(prior: PosePrior):
    a = prior.sample(32, torch.Generator().manual_seed(3))
    b = prior.sample(32, torch.Generator().manual_seed(4))
    assert not torch.allclose(a.pose, b.pose)
    assert not torch.allclose(a.shape, b.shape)


def test_shapes_and_dtypes(prior: PosePrior, body: AnnyBody):
    params = prior.sample(5, torch.Generator().manual_seed(0))
    assert params.pose.shape == (5, len(body.pose_joint_names), 3) == (5, 103, 3)
    assert params.shape.shape == (5, 6)
    assert params.global_orient.shape == (5, 3, 3)
    for t in (params.pose, params.shape, params.global_orient):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()


def test_angles_within_ranges(drawn):
    _, angles = drawn
    assert angles.shape == (1024, len(DOF_NAMES))
    assert (angles >= DOF_LIMITS[:, 0] - 1e-4).all() and (angles <= DOF_LIMITS[:, 1] + 1e-4).all()
    for s in "lr":
        flex, abd = _angle(f"shoulder_flex_{s}", angles), _angle(f"shoulder_abd_{s}", angles)
        assert (torch.stack([flex, abd], -1).norm(dim=-1) <= 180.0 + 1e-3).all()


def test_pose_realises_the_angles(prior: PosePrior, body: AnnyBody):
    """Measured on the posed skeleton: the elbow angle equals elbow_flex, the knee angle follows knee_flex."""
    params, angles = prior.sample_with_angles(64, torch.Generator().manual_seed(11))
    with torch.no_grad():
        heads = body.anny_output(params.pose, body.default_shape(64))["bone_poses"][..., :3, 3]

    def bend(a: str, b: str, c: str) -> torch.Tensor:
        i, j, k = (body.bone_names.index(n) for n in (a, b, c))
        u = torch.nn.functional.normalize(heads[:, j] - heads[:, i], dim=-1)
        v = torch.nn.functional.normalize(heads[:, k] - heads[:, j], dim=-1)
        return torch.rad2deg(torch.acos((u * v).sum(-1).clamp(-1, 1)))

    for s in "LR":
        elbow = bend(f"upperarm01.{s}", f"lowerarm01.{s}", f"wrist.{s}")
        assert (elbow - _angle(f"elbow_flex_{s.lower()}", angles)).abs().max() < 3.0
        knee = bend(f"upperleg01.{s}", f"lowerleg01.{s}", f"foot.{s}")  # rest knee is ~9 degrees off straight
        assert (knee - _angle(f"knee_flex_{s.lower()}", angles)).abs().max() < 12.0


def test_mirroring_reflects_the_anny_pose(prior: PosePrior, body: AnnyBody):
    """Mirrored angles give reflected axis-angles (x, -y, -z) on swapped bones: a symmetric conversion."""
    _, angles = prior.sample_with_angles(16, torch.Generator().manual_seed(5))
    pose, mirrored = prior.angles_to_pose(angles), prior.angles_to_pose(mirror_angles(angles))
    names = body.pose_joint_names
    swap = [names.index(n[:-1] + {"L": "R", "R": "L"}[n[-1]]) if n[-2:] in (".L", ".R") else i
            for i, n in enumerate(names)]
    expected = pose[:, swap] * torch.tensor([1.0, -1.0, -1.0])
    assert torch.allclose(mirrored, expected, atol=1e-4)


def test_phenotypes_in_unit_range_and_mostly_adult(drawn):
    params, _ = drawn
    assert (params.shape >= 0).all() and (params.shape <= 1).all()
    gender, age = params.shape[:, 0], params.shape[:, 1]
    assert 0.4 < gender.mean() < 0.6 and gender.std() > 0.2  # ~U[0, 1]
    assert 0.8 < (age >= 0.6).float().mean() < 0.99  # adults, with a few children
    assert (params.shape[:, 2:].std(0) > 0.05).all()  # muscle, weight, height, proportions vary


def test_global_orient_is_rotation_mostly_upright_all_yaws(drawn):
    params, _ = drawn
    rot = params.global_orient.double()
    eye = torch.eye(3, dtype=rot.dtype).expand_as(rot)
    assert torch.allclose(rot @ rot.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(len(rot), dtype=rot.dtype), atol=1e-5)
    up = rot[:, :, 1]  # the body's up axis in the world (y up)
    assert (up[:, 1] > math.cos(math.radians(35))).float().mean() > 0.8
    lying = (up[:, 1].abs() < 0.5).float().mean()
    assert 0.005 < lying < 0.1
    front = rot[:, :, 2]
    yaw = torch.atan2(front[:, 0], front[:, 2])
    assert torch.histc(yaw, bins=4, min=-math.pi, max=math.pi).min() > 150  # all round


def test_variety_of_bent_limbs(drawn, body: AnnyBody):
    params, angles = drawn
    for s in "lr":
        assert 0.2 < (_angle(f"knee_flex_{s}", angles) > 30).float().mean() < 0.9
        assert 0.2 < (_angle(f"elbow_flex_{s}", angles) > 45).float().mean() < 0.95
        assert (_angle(f"shoulder_flex_{s}", angles) > 120).float().mean() > 0.03  # arms raised
        assert (_angle(f"hip_flex_{s}", angles) > 70).float().mean() > 0.1  # sitting, crouching
    for bone in ("upperleg01.L", "lowerleg01.R", "upperarm01.L", "lowerarm01.R", "spine03", "neck02"):
        assert params.pose[:, body.bone_index(bone)].std(0).norm() > 0.05  # radians: not one pose


def test_no_sample_fails_the_capsule_test(prior: PosePrior, drawn):
    params, _ = drawn
    assert not prior.capsules.intersects(params.pose).any()
    assert not prior.capsules.intersects(prior.angles_to_pose(standing_angles(2))).any()


def test_capsule_test_catches_limbs_through_the_body(prior: PosePrior):
    angles = standing_angles(3)
    angles[0, DOF_NAMES.index("shoulder_abd_l")] = -40.0  # arm swung through the chest
    angles[1, DOF_NAMES.index("hip_abd_l")] = -30.0  # legs crossing through each other
    angles[1, DOF_NAMES.index("hip_abd_r")] = -30.0
    angles[2, DOF_NAMES.index("hip_flex_l")] = 120.0  # thigh through the folded trunk
    angles[2, DOF_NAMES.index("spine_flex")] = 80.0
    assert prior.capsules.intersects(prior.angles_to_pose(angles)).all()


def test_key_poses_are_valid(prior: PosePrior):
    """Every authored key pose (no noise) is within ranges and passes the capsule test."""
    keys = prior._key_angles
    assert (keys >= DOF_LIMITS[:, 0]).all() and (keys <= DOF_LIMITS[:, 1]).all()
    clearance = prior.capsules.clearance(prior.angles_to_pose(keys))
    bad = [k.name for k, c in zip(KEY_POSES, clearance, strict=True) if c < 0]
    assert not bad, bad


def test_segment_distance_matches_dense_sampling():
    gen = torch.Generator().manual_seed(0)
    p1, q1, p2, q2 = torch.randn(4, 200, 3, generator=gen)
    q2[:50] = p2[:50] + 0.3 * (q1[:50] - p1[:50])  # parallel pairs
    t = torch.linspace(0, 1, 401)
    a = p1[:, None] + t[None, :, None] * (q1 - p1)[:, None]
    b = p2[:, None] + t[None, :, None] * (q2 - p2)[:, None]
    dense = torch.cdist(a, b).amin((1, 2))
    exact = _segment_distance(p1, q1, p2, q2)
    assert (exact <= dense + 1e-5).all() and (dense - exact).max() < 0.02


def test_average_pairwise_distance():
    joints = torch.zeros(3, 2, 3)
    joints[1, :, 0] = 1.0  # sample 1 is 1 away from samples 0 and 2 at both joints
    assert average_pairwise_distance(joints) == pytest.approx((1 + 1 + 0) * 2 / 6)
    assert average_pairwise_distance(torch.ones(4, 5, 3)) == 0.0


def test_canonical_batch(body: AnnyBody, prior: PosePrior):
    vertices, params = canonical_batch(body, 4, torch.Generator().manual_seed(2), prior)
    assert vertices.shape == (4, body.num_vertices, 3) and params.batch_size == 4
    assert vertices.mean(1).abs().max() < 1e-4  # centroid-centred
    assert torch.isfinite(vertices).all()
