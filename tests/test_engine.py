"""Engine plumbing with random weights (fast); accuracy of the shipped default is in test_default_model.py."""

from __future__ import annotations

import pytest
import torch

from megaviewer.engine import CropBox, Engine
from megaviewer.model.mega import Mega
from megaviewer.tokenizer.model import TokenizerConfig


@pytest.fixture(scope="module")
def engine(body_assets):
    from training.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer(TokenizerConfig(channels=[4, 4, 4]))
    return Engine(Mega.from_preset("test_tiny"), tokenizer, body_assets.coco_regressor, device="cpu")


@pytest.fixture()
def keypoints() -> torch.Tensor:
    kp = torch.rand(17, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kp[:, 2] = 0.9
    return kp


def test_deterministic_result(engine, keypoints):
    res = engine.recover(keypoints, mode="deterministic")
    assert res.tokens.shape == (1, 54)
    assert res.canonical_vertices.shape == (1, 1229, 3)
    assert torch.allclose(res.canonical_vertices.mean(1), torch.zeros(1, 3), atol=1e-5)
    assert res.joints.shape == (1, 17, 3)
    # camera frame = R · canonical when no crop is given
    expected = res.canonical_vertices @ res.rotation.transpose(-1, -2)
    assert torch.allclose(res.camera_vertices, expected, atol=1e-5)
    assert torch.all(res.vertex_sd_mm == 0)
    assert res.trace is not None and res.trace.tokens.shape == (1, 1, 54)


def test_stochastic_samples_seeds_and_sd(engine, keypoints):
    a = engine.recover(keypoints, mode="stochastic", num_samples=4, steps=3, seed=7)
    b = engine.recover(keypoints, mode="stochastic", num_samples=4, steps=3, seed=7)
    c = engine.recover(keypoints, mode="stochastic", num_samples=4, steps=3, seed=8)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)
    assert a.tokens.shape == (4, 54) and a.trace.tokens.shape == (3, 4, 54)
    assert a.trace.visible[-1].all()
    sd = a.vertex_sd_mm
    assert sd.shape == (1229,) and sd.max() > 0
    manual = (a.canonical_vertices - a.canonical_vertices.mean(0)).norm(dim=-1).pow(2).mean(0).sqrt() * 1000
    assert torch.allclose(sd, manual, atol=1e-3)
    # the spread is the body's, not its placement: the camera fit moves hypotheses apart in depth
    nofit = engine.recover(keypoints, mode="stochastic", num_samples=4, steps=3, seed=7, fit_camera=False)
    torch.testing.assert_close(nofit.vertex_sd_mm, sd)


def test_crop_places_mesh_in_front_of_camera(engine, keypoints):
    crop = CropBox(center=(400.0, 300.0), side=300.0, image_size=(800, 600))
    res = engine.recover(keypoints, crop=crop)
    assert res.focal is not None and res.translation[0, 2] > 0
    assert torch.allclose(res.camera_vertices.mean(1), res.translation, atol=1e-4)


def test_bad_inputs_are_named(engine, keypoints):
    with pytest.raises(ValueError, match="mode"):
        engine.recover(keypoints, mode="fast")
    with pytest.raises(ValueError, match="keypoints"):
        engine.recover(None)
    nan = keypoints.clone()
    nan[3] = float("nan")
    res = engine.recover(nan)
    assert torch.isfinite(res.camera_vertices).all()
