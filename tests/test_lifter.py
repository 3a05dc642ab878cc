"""The keypoint lifter: its output format, the conditioning stack that hands its joints to the landmark
conditioner for people without landmarks, its checkpoint, and its training."""

from __future__ import annotations

import pytest
import torch

from megaviewer.io.checkpoint import CheckpointError
from megaviewer.model.config import ConditioningConfig, MegaConfig
from megaviewer.model.lifter import (
    LIFTED_VISIBILITY,
    KeypointLifter,
    LifterConfig,
    hip_centred,
    load_lifter,
    save_lifter,
)
from megaviewer.model.mega import Mega, load_mega, save_mega
from tests.test_landmark_conditioning import _people


def _keypoints(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.rand(batch, 17, 2, generator=g) * 2 - 1, torch.rand(batch, 17, 1, generator=g)], -1)


def _lifter_model(seed: int = 0) -> Mega:
    torch.manual_seed(seed)
    return Mega.from_preset("test_tiny", conditioning={"kinds": ("keypoints", "landmarks"), "keypoint_hidden": 32,
                                                        "landmark_lifter_hidden": 16, "landmark_lifter_depth": 2})


def test_lifted_joints_are_hip_centred_and_missing_keypoints_enter_as_zeros():
    torch.manual_seed(0)
    lifter = KeypointLifter(LifterConfig(hidden=32, depth=2))
    kp = _keypoints(4)
    joints = lifter(kp)
    assert joints.shape == (4, 17, 3)
    assert torch.allclose(joints[:, (11, 12)].mean(1), torch.zeros(4, 3), atol=1e-6)
    garbage = kp.clone()
    garbage[:, 3, 2] = 0.0  # a missing keypoint: its coordinates must not matter
    zeros = garbage.clone()
    garbage[:, 3, :2] = float("nan")
    zeros[:, 3, :2] = 0.0
    assert torch.equal(lifter(garbage), lifter(zeros))
    landmarks = lifter.landmarks(kp)
    assert landmarks.shape == (4, 17, 4) and (landmarks[..., 3] == LIFTED_VISIBILITY).all()
    assert LIFTED_VISIBILITY > 0  # zero visibility would read as "no landmarks"
    with pytest.raises(ValueError, match="keypoints must be"):
        lifter(kp[:, :16])


def test_the_stack_lifts_landmarks_only_for_people_without_them():
    model = _lifter_model()
    stack = model.conditioning
    assert stack.lifter is not None and not any(p.requires_grad for p in stack.lifter.parameters())
    kp = _keypoints(3, seed=1)
    given = torch.cat([torch.randn(3, 17, 3) * 0.3, torch.full((3, 17, 1), 0.8)], -1)
    given[1] = 0.0  # the second person has no landmarks
    given[2, :5, 3] = 0.0  # the third has some: they stay as given
    filled = stack.with_lifted_landmarks({"keypoints": kp, "landmarks": given})["landmarks"]
    assert torch.equal(filled[0], given[0]) and torch.equal(filled[2], given[2])
    assert torch.allclose(filled[1], stack.lifter.landmarks(kp[1:2])[0])
    # The encoding is the conditioners' on the filled landmarks: the lifter changed what the model reads.
    encoded = model.encode_conditioning({"keypoints": kp, "landmarks": given})
    manual = [stack.conditioners[k]({"keypoints": kp, "landmarks": filled}[k]) for k in stack.kinds]
    assert torch.allclose(encoded.tokens, torch.cat([t for t, _ in manual], 1))
    stack.lifter = None  # without it, the absent landmarks read as absent: a different encoding
    assert not torch.allclose(model.encode_conditioning({"keypoints": kp, "landmarks": given}).tokens[1],
                              encoded.tokens[1])


def test_config_without_a_lifter_keeps_its_keys_and_a_lifter_survives_a_checkpoint(tmp_path):
    assert "landmark_lifter_hidden" not in ConditioningConfig(kinds=("keypoints", "landmarks")).to_dict()
    with pytest.raises(ValueError, match="needs both"):
        ConditioningConfig(kinds=("keypoints",), landmark_lifter_hidden=16)
    model = _lifter_model(seed=3)
    assert MegaConfig.from_dict(model.config.to_dict()) == model.config
    save_mega(tmp_path / "m", model)
    loaded = load_mega(tmp_path / "m")
    for a, b in zip(model.conditioning.lifter.state_dict().values(), loaded.conditioning.lifter.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in loaded.conditioning.lifter.parameters())


def test_lifter_checkpoint_round_trip_and_wrong_kind(tmp_path):
    torch.manual_seed(0)
    lifter = KeypointLifter(LifterConfig(hidden=8, depth=1))
    save_lifter(tmp_path / "lifter", lifter)
    loaded = load_lifter(tmp_path / "lifter")
    kp = _keypoints(2)
    assert torch.equal(loaded(kp), lifter(kp)) and not loaded.training
    save_mega(tmp_path / "mega", _lifter_model())
    with pytest.raises(CheckpointError, match="expected 'keypoint-lifter'"):
        load_lifter(tmp_path / "mega")


def test_training_the_lifter_lowers_its_error(tmp_path):
    from training.data.observations import ObservationConfig, synthesize
    from training.data.pool import MeshPool
    from training.lifter import LifterTrainConfig, lifting_error, train_lifter

    joints, rot = _people(256, seed=7)
    centred = joints - joints.mean(1, keepdim=True)
    pool = MeshPool(torch.zeros(256, 4, dtype=torch.long), centred, torch.eye(3).repeat(256, 1, 1))
    held = synthesize(pool, ObservationConfig(), torch.Generator().manual_seed(99))
    cfg = LifterTrainConfig(out_dir=str(tmp_path / "run"), steps=150, batch_size=64, lr=3e-3,
                            lifter=LifterConfig(hidden=64, depth=2), ckpt_every=150, progress=False)
    torch.manual_seed(cfg.seed)
    before = lifting_error(KeypointLifter(cfg.lifter), held.keypoints, held.joints3d).mean()
    final = train_lifter(cfg, pool=pool)
    after = lifting_error(load_lifter(final), held.keypoints, held.joints3d).mean()
    assert after < 0.5 * before, (float(before), float(after))
    assert torch.allclose(hip_centred(held.joints3d)[:, (11, 12)].mean(1), torch.zeros(256, 3), atol=1e-5)


def test_attaching_a_lifter_changes_only_people_without_landmarks():
    from training.lifter import attach_lifter

    torch.manual_seed(4)
    plain = Mega.from_preset("test_tiny", conditioning={"kinds": ("keypoints", "landmarks"), "keypoint_hidden": 32})
    carrier = attach_lifter(plain.eval(), KeypointLifter(LifterConfig(hidden=8, depth=1)))
    assert carrier.config.conditioning.landmark_lifter_hidden == 8 and plain.conditioning.lifter is None
    kp = _keypoints(2, seed=5)
    given = torch.cat([torch.randn(2, 17, 3) * 0.3, torch.full((2, 17, 1), 0.9)], -1)
    given[1] = 0.0
    with torch.no_grad():
        before = plain.encode_conditioning({"keypoints": kp, "landmarks": given})
        after = carrier.encode_conditioning({"keypoints": kp, "landmarks": given})
    assert torch.allclose(before.tokens[0], after.tokens[0]) and torch.allclose(before.pooled[0], after.pooled[0])
    assert not torch.allclose(before.tokens[1], after.tokens[1])


def test_cli_trains_a_lifter_from_a_pool_and_says_when_there_is_none(tmp_path, capsys):
    from training.cli import main
    from training.data.pool import MeshPool

    joints, _ = _people(64, seed=8)
    pool = MeshPool(torch.zeros(64, 4, dtype=torch.long), joints - joints.mean(1, keepdim=True),
                    torch.eye(3).repeat(64, 1, 1))
    pool.save(tmp_path / "pool.safetensors")
    args = ["lifter", "--out", str(tmp_path / "run"), "--steps", "3", "--batch-size", "8", "--hidden", "8",
            "--depth", "1", "--gross-2d-errors", "--no-progress"]
    assert main([*args, "--pool", str(tmp_path / "pool.safetensors")]) == 0
    assert load_lifter(tmp_path / "run" / "final").config.hidden == 8
    assert main([*args, "--pool", str(tmp_path / "missing.safetensors")]) == 2
    assert "no mesh pool" in capsys.readouterr().err


def test_cli_train_options_for_a_landmark_model_with_a_lifter():
    from training.cli import _mega_config, build_parser
    from training.mega_conditioned import ConditionedConfig

    args = build_parser().parse_args(["train", "--condition", "keypoints,landmarks", "--lifter", "runs/lifter/final",
                                      "--landmark-prob", "0.5", "--gross-2d-errors"])
    cfg = _mega_config(args, ConditionedConfig)
    assert cfg.kinds == ("keypoints", "landmarks") and cfg.lifter == "runs/lifter/final"
    assert cfg.observation.landmarks is not None and cfg.observation.landmark_prob == 0.5
    plain = _mega_config(build_parser().parse_args(["train"]), ConditionedConfig)
    assert cfg.observation.outlier_prob > plain.observation.outlier_prob  # the real detector's gross errors
    assert plain.observation.landmarks is None and plain.lifter is None
