"""The detector's 3D landmarks as a second observation: the error model, the conditioner, training, the engine."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from megaviewer.geometry.rotations import rotvec_to_matrix
from megaviewer.model.mega import Mega, load_mega, save_mega
from training.data.landmark_noise import LandmarkNoise, best_rotation, hip_centred, rotation_vector

REPO = Path(__file__).resolve().parents[1]
SHIPPED_NOISE = REPO / "resources" / "body" / "landmark_noise.json"

# A standing COCO-17 skeleton (metres; x right, y down, z away) reaching forward with its left arm and lifting its
# right knee, so that swapped left/right labels are not a half turn of the same body.
STANDING = np.array([
    [0.0, -0.75, -0.08], [-0.03, -0.78, -0.06], [0.03, -0.78, -0.06], [-0.07, -0.76, 0.0], [0.07, -0.76, 0.0],
    [-0.18, -0.55, 0.0], [0.18, -0.55, 0.0], [-0.22, -0.3, -0.12], [0.22, -0.28, 0.02], [-0.15, -0.3, -0.4],
    [0.24, -0.03, -0.05], [-0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [-0.11, 0.42, -0.02], [0.11, 0.35, -0.25],
    [-0.12, 0.83, 0.04], [0.12, 0.83, 0.04]])


def _people(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-frame joints (B, 17, 3) of the standing skeleton turned about the vertical, and the turns."""
    g = torch.Generator().manual_seed(seed)
    rotvec = torch.zeros(count, 3)
    rotvec[:, 1] = (torch.rand(count, generator=g) - 0.5) * 2.0  # +-57 deg
    rot = rotvec_to_matrix(rotvec)
    limbs = torch.as_tensor(STANDING, dtype=torch.float32) * (1 + 0.05 * torch.randn(count, 1, 1, generator=g))
    return limbs @ rot.transpose(-1, -2) + torch.tensor([0.0, 0.0, 3.0]), rot


def test_fit_recovers_the_error_model_it_is_given():
    truth = LandmarkNoise(swap_prob=0.1, log_scale_mean=np.log(0.9), log_scale_sd=0.05,
                          rotation_mean=[0.12, 0.0, 0.0], rotation_sd=[0.05, 0.05, 0.02],
                          offset_body=[[0.0, 0.0, 0.0]] * 11 + [[0.0, -0.04, 0.0]] * 2 + [[0.0, 0.0, 0.0]] * 4,
                          noise_sd=[[0.02, 0.02, 0.05]] * 17, visibility_mean=[0.9] * 17, visibility_sd=[0.05] * 17)
    joints, rot = _people(600, seed=0)
    simulated = truth.simulate(joints, rot, torch.Generator().manual_seed(1))
    assert simulated.shape == (600, 17, 4)
    assert torch.allclose(simulated[:, (11, 12), :3].mean(1), torch.zeros(600, 3), atol=1e-5)  # around the hips
    fitted = LandmarkNoise.fit(joints.numpy(), rot.numpy(), simulated.numpy())
    assert fitted.swap_prob == pytest.approx(0.1, abs=0.04)
    assert np.exp(fitted.log_scale_mean) == pytest.approx(0.9, abs=0.02)
    assert fitted.rotation_mean[0] == pytest.approx(0.12, abs=0.03)  # the lean about the camera's x axis
    depth, across = np.array(fitted.noise_sd)[5:, 2].mean(), np.array(fitted.noise_sd)[5:, 0].mean()
    assert depth > 1.8 * across  # the depth noise is the worst, as given
    assert np.mean(fitted.visibility_mean) == pytest.approx(0.9, abs=0.02)
    # Without noise nothing is found: no swaps, unit scale, no rotation.
    exact = LandmarkNoise().simulate(joints, rot, torch.Generator().manual_seed(2))
    clean = LandmarkNoise.fit(joints.numpy(), rot.numpy(), exact.numpy())
    assert clean.swap_prob == 0 and abs(clean.log_scale_mean) < 1e-6 and np.abs(clean.rotation_mean).max() < 1e-6


def test_rotation_helpers_invert_each_other():
    rot = rotvec_to_matrix(torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64))[0].numpy()
    assert np.allclose(rotation_vector(rot), [0.3, -0.2, 0.5])
    points = hip_centred(STANDING)
    assert np.allclose(best_rotation(points, points @ rot.T), rot)


def test_the_shipped_error_model_was_measured_and_makes_plausible_landmarks():
    noise = LandmarkNoise.from_json(SHIPPED_NOISE)
    measured = noise.measured_on
    assert measured["with_landmarks"] >= 200 and "command" in measured
    joints, rot = _people(200, seed=3)
    lm = noise.simulate(joints, rot, torch.Generator().manual_seed(0))
    error = (lm[..., :3] - torch.as_tensor(hip_centred(joints.numpy()))).norm(dim=-1).mean()
    assert 0.03 < float(error) < 0.4  # metres: noisy, but landmarks of this body
    assert ((lm[..., 3] >= 0) & (lm[..., 3] <= 1)).all()


def test_observations_carry_landmarks_only_when_asked_and_keep_the_keypoints(generator):
    from training.data.observations import ObservationConfig, synthesize
    from training.data.pool import MeshPool

    joints, _ = _people(32, seed=4)
    centred = joints - joints.mean(1, keepdim=True)
    pool = MeshPool(torch.zeros(32, 4, dtype=torch.long), centred, torch.eye(3).repeat(32, 1, 1))
    plain = synthesize(pool, ObservationConfig(), torch.Generator().manual_seed(5))
    noise = LandmarkNoise(noise_sd=[[0.02] * 3] * 17)
    with_lm = synthesize(pool, ObservationConfig(landmarks=noise, landmark_prob=0.5), torch.Generator().manual_seed(5))
    assert (plain.landmarks == 0).all()
    assert torch.equal(plain.keypoints, with_lm.keypoints)  # landmarks are drawn last: the rest is unchanged
    present = with_lm.landmarks[..., 3].sum(-1) > 0
    assert 0 < int(present.sum()) < 32  # some people have them, some do not
    assert (with_lm.landmarks[~present] == 0).all()


def _landmark_model(seed: int = 0) -> Mega:
    torch.manual_seed(seed)
    return Mega.from_preset("test_tiny", conditioning={"kinds": ("keypoints", "landmarks"), "keypoint_hidden": 32})


def test_conditioner_reads_landmarks_and_works_without_them():
    model = _landmark_model().eval()
    kp = torch.rand(2, 17, 3)
    joints, rot = _people(2, seed=6)
    lm = LandmarkNoise().simulate(joints, rot, torch.Generator().manual_seed(0))
    none = model.encode_conditioning({"keypoints": kp, "landmarks": torch.zeros(2, 17, 4)})
    some = model.encode_conditioning({"keypoints": kp, "landmarks": lm})
    assert none.tokens.shape == (2, 34, model.config.dim)
    assert not torch.allclose(none.tokens[:, 17:], some.tokens[:, 17:])
    assert torch.equal(none.tokens[:, :17], some.tokens[:, :17])  # the keypoint tokens do not depend on them
    # "No landmarks" is the learned missing token at every point, whatever garbage the coordinates hold.
    garbage = torch.zeros(2, 17, 4)
    garbage[..., :3] = float("nan")
    nan_in = model.encode_conditioning({"keypoints": kp, "landmarks": garbage})
    assert torch.equal(nan_in.tokens, none.tokens)
    with pytest.raises(ValueError, match="17, 4"):
        model.encode_conditioning({"keypoints": kp, "landmarks": torch.zeros(2, 17, 3)})


def test_merged_landmark_tokens_ride_on_the_keypoint_tokens(tmp_path):
    """``merge_landmark_tokens``: one token per joint, the keypoint's plus the landmark's embedding, from the same
    conditioners a model with separate tokens has; the config keeps the field only when it is set."""
    from megaviewer.model.config import ConditioningConfig, get_preset

    separate = _landmark_model(seed=4).eval()
    torch.manual_seed(4)
    merged = Mega.from_preset("test_tiny", conditioning={"kinds": ("keypoints", "landmarks"), "keypoint_hidden": 32,
                                                          "merge_landmark_tokens": True}).eval()
    merged.load_state_dict(separate.state_dict())  # the same tensors: only the token layout differs
    joints, rot = _people(2, seed=7)
    cond = {"keypoints": torch.rand(2, 17, 3),
            "landmarks": LandmarkNoise().simulate(joints, rot, torch.Generator().manual_seed(1))}
    apart, joined = separate.encode_conditioning(cond), merged.encode_conditioning(cond)
    assert joined.tokens.shape == (2, 17, merged.config.dim)
    assert torch.allclose(joined.tokens, apart.tokens[:, :17] + apart.tokens[:, 17:], atol=1e-6)
    assert torch.equal(joined.pooled, apart.pooled)
    tokens, visible = torch.zeros(2, merged.config.seq_len, dtype=torch.long), torch.zeros(2, merged.config.seq_len,
                                                                                           dtype=torch.bool)
    assert not torch.allclose(merged(tokens, visible, cond).logits, separate(tokens, visible, cond).logits)
    save_mega(tmp_path / "merged", merged)
    assert torch.equal(load_mega(tmp_path / "merged").encode_conditioning(cond).tokens, joined.tokens)
    assert "merge_landmark_tokens" not in separate.config.conditioning.to_dict()
    # A keypoint model of the merged preset is the plain one: nothing to merge, the same transformer.
    preset = get_preset("cpu_fast_merged")
    assert preset.conditioning.merge_landmark_tokens
    assert replace(preset, conditioning=get_preset("cpu_fast").conditioning) == get_preset("cpu_fast")
    with pytest.raises(ValueError, match="one landmark per keypoint"):
        ConditioningConfig(kinds=("keypoints", "landmarks"), num_landmarks=33, merge_landmark_tokens=True)


def test_warm_start_widens_the_rotation_head_and_keeps_its_weights(tmp_path):
    from training.mega_conditioned import load_pretrained

    torch.manual_seed(1)
    keypoints_only = Mega.from_preset("test_tiny", conditioning={"kinds": ("keypoints",), "keypoint_hidden": 32})
    save_mega(tmp_path / "kp", keypoints_only)
    model = _landmark_model(seed=2)
    report = load_pretrained(model, tmp_path / "kp")
    old = keypoints_only.rotcam.fc1.weight
    grown = model.rotcam.fc1.weight
    assert grown.shape[1] == old.shape[1] + 32
    assert torch.equal(grown[:, :old.shape[1]], old) and (grown[:, old.shape[1]:] == 0).all()
    assert "rotcam.fc1.weight" in report.loaded
    assert any(k.startswith("conditioning.conditioners.landmarks.") for k in report.fresh)
    # With no landmarks the widened head gives the checkpoint's rotation for the same keypoint feature.
    pooled = torch.randn(3, old.shape[1])
    keypoints_only.eval(), model.eval()
    assert torch.allclose(model.rotcam(torch.cat([pooled, torch.randn(3, 32)], 1))[0],
                          keypoints_only.rotcam(pooled)[0], atol=1e-6)


@pytest.mark.parametrize("merged", [False, True], ids=["own_tokens", "merged_tokens"])
def test_engine_feeds_landmarks_to_a_model_that_reads_them(tmp_path, merged):
    from megaviewer.engine import Engine
    from tests._engines import tiny_engine

    tiny = tiny_engine()
    sizes = {"vocab": tiny.model.config.vocab, "seq_len": tiny.model.config.seq_len}
    torch.manual_seed(3)
    model = Mega.from_preset("test_tiny", conditioning={"kinds": ("keypoints", "landmarks"),
                                                         "merge_landmark_tokens": merged}, **sizes)
    save_mega(tmp_path / "lm", model)
    engine = Engine(load_mega(tmp_path / "lm"), tiny.tokenizer, tiny.coco_regressor, device="cpu")
    kp = np.concatenate([np.random.default_rng(0).uniform(-0.8, 0.8, (17, 2)), np.full((17, 1), 0.9)], 1)
    landmarks = np.zeros((33, 4))
    landmarks[:, :3] = np.random.default_rng(1).normal(0, 0.3, (33, 3))
    landmarks[:, 3] = 0.9
    without = engine.recover(kp, mode="deterministic", fit_camera=False, refine=False)
    with_lm = engine.recover(kp, mode="deterministic", fit_camera=False, refine=False, landmarks_3d=landmarks)
    assert not torch.allclose(without.rotation, with_lm.rotation)
    assert json.loads((tmp_path / "lm" / "config.json").read_text())["conditioning"]["kinds"] == ["keypoints",
                                                                                                    "landmarks"]
    # The speed benchmark feeds such a model landmarks of a person facing the camera.
    from benchmarks.bench import engine_inputs
    from megaviewer.vision.landmarks import coco_landmarks, parse_landmarks_3d

    bench_lm = coco_landmarks(parse_landmarks_3d(engine_inputs(engine)["landmarks_3d"]))
    assert float(bench_lm[0, 2]) < float(bench_lm[11:13, 2].mean())  # the nose is nearer than the hips
    assert float(bench_lm[15, 1]) > 0.5 and float(bench_lm[5, 0]) > 0  # ankles below, left shoulder on the right
    engine.recover(**engine_inputs(engine), mode="deterministic")
