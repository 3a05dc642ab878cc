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
    # the spread is the body's, not its placement: the camera fit moves hypotheses apart in depth (the body
    # refinement, which does change the bodies, is left out of this comparison)
    nofit = engine.recover(keypoints, mode="stochastic", num_samples=4, steps=3, seed=7, fit_camera=False)
    fitted = engine.recover(keypoints, mode="stochastic", num_samples=4, steps=3, seed=7, refine=False)
    torch.testing.assert_close(nofit.vertex_sd_mm, fitted.vertex_sd_mm)


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


@pytest.mark.parametrize("items, q", [(1, 1), (1, 3), (2, 1), (2, 3), (3, 2)])
def test_camera_fit_covers_every_hypothesis(engine, body_assets, items, q):
    """Whatever the batch of keypoint sets and Q, every hypothesis is fitted to its own item's keypoints."""
    from megaviewer.camera import weak_perspective_project

    # A body's joints seen upright, then turned by 90 degrees per item: each item's own set fits best.
    joints = engine.coco_regressor @ body_assets.template.float()
    xy = joints[:, :2] * torch.tensor([1.0, -1.0]) / joints[:, :2].abs().max() * 0.8
    turn = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    kp = torch.stack([torch.cat([xy @ torch.linalg.matrix_power(turn, i).T, torch.full((17, 1), 0.9)], 1)
                      for i in range(items)])
    res = engine.recover(kp, mode="stochastic", num_samples=q, steps=2, seed=0, refine=False)
    fit = res.camera_fit
    assert fit is not None and fit.fitted.shape == (items * q,) and fit.fitted.all()
    joints = torch.einsum("jv,qvc->qjc", engine.coco_regressor, res.canonical_vertices)
    projected = weak_perspective_project(joints @ res.rotation.transpose(-1, -2), res.cam_weak)
    errors = (projected[:, None] - kp[None, :, :, :2]).norm(dim=-1).mean(-1)  # (hypothesis, keypoint set)
    own = torch.arange(items).repeat_interleave(q)
    torch.testing.assert_close(errors[torch.arange(items * q), own], fit.error_after, atol=1e-4, rtol=1e-4)
    if items > 1:  # and it is the nearest set: rows are not fitted to another item's keypoints
        assert torch.equal(errors.argmin(dim=1), own)


def test_keypoints_per_row_never_skips_a_hypothesis():
    from megaviewer.engine import _keypoints_per_row

    kp = torch.arange(2 * 17 * 3, dtype=torch.float32).reshape(2, 17, 3)
    rows = _keypoints_per_row(kp, 6, 3)
    assert torch.equal(rows[:3], kp[:1].expand(3, -1, -1)) and torch.equal(rows[3:], kp[1:].expand(3, -1, -1))
    assert _keypoints_per_row(kp[:1], 5, 1).shape == (5, 17, 3)  # one set serves rows that are not Q x B
    with pytest.raises(ValueError, match="cannot fit the camera of 5 hypotheses to 2 keypoint sets"):
        _keypoints_per_row(kp, 5, 2)


def test_timings_are_one_entry_per_stage(engine, keypoints, monkeypatch):
    """Each stage on its own clock: a slow camera fit shows as camera_fit_ms, not in or out of decode_ms."""
    import time

    import megaviewer.keypoint_fit as fit_module

    real_fit = fit_module.fit_camera

    def slow_fit(*args, **kwargs):
        time.sleep(0.05)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(fit_module, "fit_camera", slow_fit)
    res = engine.recover(keypoints, mode="stochastic", num_samples=2, steps=2)
    t = res.timings_ms
    assert set(t) == {"generate_ms", "decode_ms", "camera_fit_ms", "refine_ms", "place_ms"}
    assert t["camera_fit_ms"] >= 50 and 0 < t["decode_ms"] < 50 and all(v >= 0 for v in t.values())
    assert set(engine.recover(keypoints, fit_camera=False).timings_ms) == {"generate_ms", "decode_ms", "place_ms"}


def test_recover_defaults_come_from_the_settings(engine, keypoints):
    from megaviewer.settings import DEFAULTS

    res = engine.recover(keypoints, mode="stochastic")
    assert res.num_samples == DEFAULTS.num_samples and res.trace.tokens.shape[0] == DEFAULTS.steps
    assert engine.recover(keypoints).num_samples == 1


def test_refinement_runs_after_the_camera_fit(engine, keypoints):
    """On by default where the camera fit runs: the bodies move toward the keypoints; off leaves them decoded."""
    refined = engine.recover(keypoints, mode="stochastic", num_samples=3, steps=2, seed=1)
    plain = engine.recover(keypoints, mode="stochastic", num_samples=3, steps=2, seed=1, refine=False)
    assert plain.refinement is None and refined.refinement is not None
    assert torch.equal(refined.tokens, plain.tokens)
    moved = refined.refinement.refined
    assert moved.any()
    assert not torch.allclose(refined.canonical_vertices[moved], plain.canonical_vertices[moved])
    # (each row keeps its refinement when its whole objective fell; the 2D error falls on average)
    assert refined.refinement.error_after[moved].mean() < refined.refinement.error_before[moved].mean()
    assert engine.recover(keypoints, fit_camera=False).refinement is None  # needs the camera fit


def test_benchmark_engine_placement_is_what_recover_returns(engine, keypoints):
    """The benchmark's ``placement="engine"`` runs the engine's own fit: the same meshes as ``recover``, for one
    deterministic person and for stochastic hypotheses, with argmax codes (whose random-weight bodies the fit
    changes) and with expected codes."""
    from training.evaluate import EngineFit, deterministic_mesh, stochastic_meshes

    fit = EngineFit(engine.coco_regressor, keypoints[None])
    for expected in (False, True):
        with torch.inference_mode():
            cond = engine.model.encode_conditioning(engine._conditioning(keypoints, None))
            det = deterministic_mesh(engine.model, engine.tokenizer, cond, fit, expected_codes=expected)[0]
            sto = stochastic_meshes(engine.model, engine.tokenizer, cond, 3, 2, 1.0,
                                    torch.Generator().manual_seed(5), fit, expected_codes=expected)[0]
        res = engine.recover(keypoints, mode="deterministic", expected_codes=expected)
        if not expected:
            assert res.refinement is not None and bool(res.refinement.refined.any())  # the body fit changed it
        assert torch.allclose(det, (res.canonical_vertices @ res.rotation.transpose(-1, -2))[0], atol=1e-5)
        res = engine.recover(keypoints, mode="stochastic", num_samples=3, steps=2, seed=5, expected_codes=expected)
        assert torch.allclose(sto, res.canonical_vertices @ res.rotation.transpose(-1, -2), atol=1e-5)


def test_fit_to_keypoints_in_chunks_equals_one_call(engine, keypoints):
    """Rows are independent: fitting them a few at a time (the benchmark's memory bound) changes nothing."""
    from megaviewer import generate
    from megaviewer.geometry.rotations import rot6d_to_matrix
    from megaviewer.keypoint_fit import fit_to_keypoints

    with torch.inference_mode():
        cond = engine.model.encode_conditioning(engine._conditioning(keypoints, None))
        out = generate.stochastic(engine.model, cond, num_samples=5, steps=2,
                                  generator=torch.Generator().manual_seed(2))
        canonical = engine.tokenizer.decode(out.tokens)
        rows = keypoints.expand(5, -1, -1).clone()
        rows[1, 3:8, 2] = 0.0  # rows differ in what they see
        args = (engine.tokenizer, engine.coco_regressor, out.tokens, canonical, rot6d_to_matrix(out.rot6d), out.cam,
                rows)
        whole = fit_to_keypoints(*args, refine=True)
        chunked = fit_to_keypoints(*args, refine=True, chunk_rows=2)
    assert torch.allclose(whole.canonical, chunked.canonical, atol=1e-5)
    assert torch.allclose(whole.rotation, chunked.rotation, atol=1e-6)
    assert torch.equal(whole.refinement.refined, chunked.refinement.refined)
    assert chunked.refinement.latents.shape[0] == 5


def test_expected_codes_change_the_body_and_not_the_tokens(engine, keypoints):
    """``expected_codes`` (on by default) decodes the mean code of the deterministic pass; off, the argmax codes
    of the paper. The token ids are the argmax either way."""
    from megaviewer import generate

    on = engine.recover(keypoints, fit_camera=False)
    off = engine.recover(keypoints, fit_camera=False, expected_codes=False)
    assert torch.equal(on.tokens, off.tokens)
    with torch.inference_mode():
        cond = engine.model.encode_conditioning(engine._conditioning(keypoints, None))
        out = generate.deterministic(engine.model, cond, codebook=engine.tokenizer.quantizer.codebook)
        torch.testing.assert_close(off.canonical_vertices, engine.tokenizer.decode(off.tokens))
        torch.testing.assert_close(on.canonical_vertices, engine.tokenizer.decode_latents(out.latents))
    assert (on.canonical_vertices - off.canonical_vertices).abs().max() > 1e-4
    stochastic = engine.recover(keypoints, mode="stochastic", num_samples=3, steps=3, seed=1, fit_camera=False)
    argmax = engine.recover(keypoints, mode="stochastic", num_samples=3, steps=3, seed=1, fit_camera=False,
                            expected_codes=False)
    assert torch.equal(stochastic.tokens, argmax.tokens)
    assert not torch.allclose(stochastic.canonical_vertices, argmax.canonical_vertices)
