"""The mesh pool (build, persistence, tokenizer check) and the synthetic keypoint observations."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch

from megaviewer.camera import (
    crop_to_full,
    crop_to_pixels,
    full_to_crop,
    perspective_project,
    weak_perspective_project,
)
from training.data.observations import ObservationBatch, ObservationConfig, synthesize
from training.data.pool import MeshPool, PoolMismatchError, tokenizer_fingerprint

POOL_SIZE = 48
BIG = 4096


def _tiny_tokenizer(seed: int):
    from megaviewer.tokenizer.model import TokenizerConfig
    from training.tokenizer import build_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_tokenizer(TokenizerConfig(channels=[8, 8, 8]))


@pytest.fixture(scope="module")
def tokenizer():
    return _tiny_tokenizer(0)


@pytest.fixture(scope="module")
def pool(tokenizer, synthetic_meshes) -> MeshPool:
    return MeshPool.build(tokenizer, synthetic_meshes, POOL_SIZE, seed=3, chunk=32, progress=False)


def _draw(pool: MeshPool, count: int, seed: int) -> MeshPool:
    return pool.batch(torch.randint(0, len(pool), (count,), generator=torch.Generator().manual_seed(seed)))


def _observe(pool: MeshPool, seed: int = 0, count: int = BIG, **overrides) -> tuple[MeshPool, ObservationBatch]:
    batch = _draw(pool, count, seed)
    return batch, synthesize(batch, ObservationConfig(**overrides), torch.Generator().manual_seed(seed + 100))


def _camera_joints(batch: MeshPool, obs: ObservationBatch) -> torch.Tensor:
    return batch.joints @ obs.rot_cam.transpose(-1, -2)


# ---- pool ------------------------------------------------------------------------------------------------
def test_pool_contents(pool: MeshPool, tokenizer, synthetic_meshes) -> None:
    assert len(pool) == POOL_SIZE
    assert pool.tokens.shape == (POOL_SIZE, 54) and pool.tokens.dtype == torch.long
    assert pool.joints.shape == (POOL_SIZE, 17, 3) and pool.joints.dtype == torch.float32
    assert pool.orient.shape == (POOL_SIZE, 3, 3)
    assert 0 <= int(pool.tokens.min()) and int(pool.tokens.max()) < tokenizer.config.num_codes
    assert pool.tokenizer_id == tokenizer_fingerprint(tokenizer) and pool.seed == 3
    # Same seed, size and chunking -> the same meshes; joints are canonical and centred near the origin.
    a, b = (MeshPool.build(tokenizer, synthetic_meshes, 6, seed=9, chunk=4, progress=False) for _ in range(2))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.joints, b.joints) and torch.equal(a.orient, b.orient)
    assert pool.joints.mean(dim=1).norm(dim=-1).max() < 0.5
    sub = pool.batch(torch.tensor([5, 5, 0]))
    assert torch.equal(sub.tokens[0], pool.tokens[5]) and len(sub) == 3


def test_pool_save_load_and_tokenizer_check(pool: MeshPool, tokenizer, tmp_path) -> None:
    path = pool.save(tmp_path / "pool.safetensors")
    meta = json.loads((tmp_path / "pool.safetensors.json").read_text())
    assert meta["size"] == POOL_SIZE and meta["seed"] == 3 and meta["tokenizer"] == pool.tokenizer_id
    for loaded in (MeshPool.load(path), MeshPool.load(path, tokenizer=tokenizer)):
        assert torch.equal(loaded.tokens, pool.tokens) and loaded.tokens.dtype == torch.long
        assert torch.equal(loaded.joints, pool.joints) and torch.equal(loaded.orient, pool.orient)
    other = _tiny_tokenizer(1)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)
    with pytest.raises(PoolMismatchError, match="Rebuild the pool"):
        MeshPool.load(path, tokenizer=other)
    (tmp_path / "pool.safetensors.json").unlink()
    with pytest.raises(PoolMismatchError, match="missing"):
        MeshPool.load(path)


# ---- observations ---------------------------------------------------------------------------------------
def test_shapes_dtypes_and_ranges(pool: MeshPool) -> None:
    batch, obs = _observe(pool, count=64)
    expected = {"keypoints": (64, 17, 3), "rot_cam": (64, 3, 3), "cam_weak": (64, 3), "joints2d": (64, 17, 2),
                "joints2d_conf": (64, 17), "tokens": (64, 54), "box_center": (64, 2), "box_side": (64,),
                "image_size": (64, 2), "focal": (64,), "translation": (64, 3), "joints3d": (64, 17, 3),
                "landmarks": (64, 17, 4)}
    for f in fields(ObservationBatch):
        value = getattr(obs, f.name)
        assert value.shape == expected[f.name], f.name
        assert value.dtype == (torch.long if f.name == "tokens" else torch.float32), f.name
        assert torch.isfinite(value.float()).all(), f.name
    cfg = ObservationConfig()
    assert torch.equal(obs.tokens, batch.tokens)
    long_side = obs.image_size.amax(-1)
    assert (long_side >= cfg.long_side[0] - 1).all() and (long_side <= cfg.long_side[1] + 1).all()
    ratio = obs.focal / long_side
    assert (ratio >= cfg.focal_factor[0] - 1e-4).all() and (ratio <= cfg.focal_factor[1] + 1e-4).all()
    assert (obs.box_side > 0).all() and (obs.translation[:, 2] >= cfg.min_distance).all()
    assert (obs.cam_weak[:, 0] > 0).all()
    # The lifting target: the pool's joints turned into the camera frame (same distances between joints).
    bones = lambda j: (j[:, 5:] - j[:, :-5]).norm(dim=-1)  # noqa: E731
    assert torch.allclose(bones(obs.joints3d), bones(batch.joints.float()), atol=1e-5)


def test_deterministic_given_generator(pool: MeshPool) -> None:
    _, a = _observe(pool, seed=5, count=32)
    _, b = _observe(pool, seed=5, count=32)
    for f in fields(ObservationBatch):
        assert torch.equal(getattr(a, f.name), getattr(b, f.name)), f.name
    c = synthesize(_draw(pool, 32, 5), ObservationConfig(), torch.Generator().manual_seed(999))
    assert not torch.equal(a.keypoints, c.keypoints)


def test_rotations_are_proper(pool: MeshPool) -> None:
    _, obs = _observe(pool, count=256)
    eye = torch.eye(3).expand(256, 3, 3)
    assert torch.allclose(obs.rot_cam @ obs.rot_cam.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(obs.rot_cam), torch.ones(256), atol=1e-5)


def test_missing_keypoints_are_exact_zeros(pool: MeshPool) -> None:
    _, obs = _observe(pool)
    conf = obs.keypoints[..., 2]
    missing = conf == 0
    assert missing.any() and (~missing).any()
    assert (obs.keypoints[missing] == 0).all()
    assert (conf[~missing] >= 0.3).all() and (conf <= 1.0).all()
    visible_xy = obs.keypoints[..., :2][~missing]
    assert (visible_xy.abs() <= 1.5).float().mean() > 0.98
    assert torch.equal(obs.joints2d_conf, (obs.joints2d.abs() <= 1).all(-1).float())


def test_ground_truth_is_self_consistent(pool: MeshPool) -> None:
    batch, obs = _observe(pool)
    joints = _camera_joints(batch, obs)
    pixels = perspective_project(joints + obs.translation[:, None], obs.focal, obs.image_size / 2)
    assert torch.allclose(full_to_crop(pixels, obs.box_center, obs.box_side), obs.joints2d, atol=1e-3)
    # The fitted weak-perspective camera differs from the true one only by perspective effects.
    err = (weak_perspective_project(joints, obs.cam_weak) - obs.joints2d).norm(dim=-1).mean(dim=1)
    size = (obs.joints2d.amax(dim=1) - obs.joints2d.amin(dim=1)).amax(dim=-1)
    assert err.mean() < 0.06  # < 3% of the crop side (2 units)
    assert (err / size).median() < 0.03
    translation, _ = crop_to_full(obs.cam_weak, obs.box_center, obs.box_side, obs.image_size, obs.focal)
    rel = (translation - obs.translation).norm(dim=-1) / obs.translation.norm(dim=-1)
    assert rel.median() < 0.03


def test_far_cameras_make_weak_perspective_exact(pool: MeshPool) -> None:
    batch, obs = _observe(pool, count=512, focal_factor=(40.0, 50.0))
    err = (weak_perspective_project(_camera_joints(batch, obs), obs.cam_weak) - obs.joints2d).norm(dim=-1)
    assert err.mean() < 2e-3


def _missing_fraction(obs: ObservationBatch) -> float:
    return (obs.keypoints[..., 2] == 0).any(dim=1).float().mean().item()


def test_part_occlusion_rate(pool: MeshPool) -> None:
    _, obs = _observe(pool, single_drop_prob=0.0, truncation_prob=0.0, part_occlusion_prob=0.3)
    assert abs(_missing_fraction(obs) - 0.3) < 0.04
    parts = {frozenset(p) for p in ObservationConfig().occlusion_parts}
    for row in (obs.keypoints[..., 2] == 0)[:300]:
        dropped = frozenset(row.nonzero().flatten().tolist())
        assert not dropped or dropped in parts


def test_single_drop_rate(pool: MeshPool) -> None:
    _, obs = _observe(pool, single_drop_prob=0.2, truncation_prob=0.0, part_occlusion_prob=0.0)
    assert abs(_missing_fraction(obs) - 0.2) < 0.04
    counts = (obs.keypoints[..., 2] == 0).sum(dim=1)
    assert counts.max() <= 3


def test_truncation_rate_and_cause(pool: MeshPool) -> None:
    _, obs = _observe(pool, single_drop_prob=0.0, truncation_prob=0.25, part_occlusion_prob=0.0)
    assert abs(_missing_fraction(obs) - 0.25) < 0.04
    pixels = crop_to_pixels(obs.joints2d, obs.box_center, obs.box_side)
    outside = ((pixels < 0) | (pixels > obs.image_size[:, None] - 1)).any(dim=-1)
    assert torch.equal(outside, obs.keypoints[..., 2] == 0)
    _, none = _observe(pool, count=1024, single_drop_prob=0.0, truncation_prob=0.0, part_occlusion_prob=0.0)
    assert _missing_fraction(none) == 0.0
