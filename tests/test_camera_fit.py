"""The camera fit (:mod:`megaviewer.camera_fit`): exact recovery, robustness, missing keypoints, fallbacks,
vectorisation, and its wiring into the engine and ``megaviewer infer`` (tiny random engine, fast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from megaviewer.camera import fit_weak_perspective, weak_perspective_project
from megaviewer.camera_fit import fit_camera
from megaviewer.geometry.rotations import random_rotation, rotvec_to_matrix
from tests._engines import tiny_engine

EXACT = {"rotation_prior": 0.0, "roll_prior": 0.0, "iterations": 20}  # no prior: the data alone decide


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cos = ((a @ b.transpose(-1, -2)).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def _scene(q: int = 4, seed: int = 0, offset_deg: float = 15.0):
    """Body-sized 3D joints, true rotations and cameras, exact keypoints, and a perturbed 'network' guess."""
    g = torch.Generator().manual_seed(seed)
    joints = torch.randn(q, 17, 3, generator=g) * torch.tensor([0.25, 0.5, 0.15])
    joints -= joints.mean(dim=1, keepdim=True)
    rot_true = random_rotation(q, g)
    cam_true = torch.stack([0.8 + 0.4 * torch.rand(q, generator=g), 0.2 * torch.randn(q, generator=g),
                            0.2 * torch.randn(q, generator=g)], dim=-1)
    xy = weak_perspective_project(joints @ rot_true.transpose(-1, -2), cam_true)
    keypoints = torch.cat([xy, torch.ones(q, 17, 1)], dim=-1)
    axis = torch.nn.functional.normalize(torch.randn(q, 3, generator=g), dim=-1)
    rot_net = rotvec_to_matrix(axis * np.radians(offset_deg)) @ rot_true
    cam_net = cam_true * torch.tensor([1.3, 1.0, 1.0]) + torch.tensor([0.0, 0.15, -0.1])
    return joints, keypoints, rot_true, cam_true, rot_net, cam_net


def test_recovers_known_rotation_scale_and_translation():
    joints, kp, rot_true, cam_true, rot_net, cam_net = _scene()
    fit = fit_camera(joints, kp, rot_net, cam_net, **EXACT)
    assert fit.fitted.all()
    assert (_angle_deg(fit.rotation, rot_true) < 0.1).all()
    torch.testing.assert_close(fit.cam, cam_true, atol=1e-4, rtol=1e-4)
    assert (fit.error_after < 1e-4).all() and (fit.error_before > 0.05).all()
    assert torch.allclose(fit.rotation_change_deg, torch.full((4,), 15.0), atol=0.1)


def test_scale_and_translation_alone_are_exact_given_the_rotation():
    joints, kp, rot_true, cam_true, _, cam_net = _scene()
    fit = fit_camera(joints, kp, rot_true, cam_net, fit_rotation=False)
    torch.testing.assert_close(fit.cam, cam_true, atol=1e-5, rtol=1e-5)
    assert torch.equal(fit.rotation, rot_true)


def test_robust_to_an_outlier_keypoint():
    joints, kp, rot_true, cam_true, _, cam_net = _scene(seed=1)
    bad = kp.clone()
    bad[:, 9, :2] += torch.tensor([0.8, -0.6])  # one wrist a whole box-half away
    fit = fit_camera(joints, bad, rot_true, cam_net)
    assert (_angle_deg(fit.rotation, rot_true) < 1.0).all()
    torch.testing.assert_close(fit.cam, cam_true, atol=5e-3, rtol=5e-3)
    # plain least squares (no robust weights) is pulled visibly further by the same outlier
    camera_joints = joints @ rot_true.transpose(-1, -2)
    plain = fit_weak_perspective(camera_joints, bad[..., :2])
    assert ((plain - cam_true).abs().amax(-1) > 5 * (fit.cam - cam_true).abs().amax(-1)).all()
    inliers = torch.arange(17) != 9
    proj = weak_perspective_project(joints @ fit.rotation.transpose(-1, -2), fit.cam)
    assert (proj - kp[..., :2]).norm(dim=-1)[:, inliers].mean() < 0.01


def test_missing_keypoints_are_ignored():
    joints, kp, rot_true, _, rot_net, cam_net = _scene(seed=2)
    missing = torch.tensor([0, 3, 4, 10, 15])
    garbage = kp.clone()
    garbage[:, missing, 0] = torch.tensor([1e3, float("nan"), -50.0, float("inf"), 7.0])
    garbage[:, missing, 2] = 0.0
    garbage[:, 4, 2] = float("nan")  # a NaN confidence is missing too
    keep = torch.ones(17, dtype=torch.bool)
    keep[missing] = False
    full = fit_camera(joints, garbage, rot_net, cam_net)
    subset = fit_camera(joints[:, keep], kp[:, keep], rot_net, cam_net)
    assert (full.num_keypoints == 12).all() and full.fitted.all()
    torch.testing.assert_close(full.rotation, subset.rotation)
    torch.testing.assert_close(full.cam, subset.cam)
    assert torch.isfinite(full.error_after).all()


def test_too_few_keypoints_keep_the_network_camera():
    joints, kp, _, _, rot_net, cam_net = _scene(q=2, seed=3)
    kp[0, 3:, 2] = 0.0  # first hypothesis: three keypoints left
    fit = fit_camera(joints, kp, rot_net, cam_net)
    assert fit.fitted.tolist() == [False, True]
    assert torch.equal(fit.rotation[0], rot_net[0]) and torch.equal(fit.cam[0], cam_net[0])
    assert fit.error_after[0] == fit.error_before[0] and fit.rotation_change_deg[0] == 0
    nothing = fit_camera(joints, torch.zeros(17, 3), rot_net, cam_net)
    assert not nothing.fitted.any() and torch.equal(nothing.cam, cam_net)


def test_vectorised_over_hypotheses_matches_one_by_one():
    joints, kp, _, _, rot_net, cam_net = _scene(q=6, seed=4, offset_deg=25.0)
    kp[..., :2] += 0.03 * torch.randn(kp[..., :2].shape, generator=torch.Generator().manual_seed(5))
    kp[2, :12, 2] = 0.0
    kp[4, :, 2] = torch.linspace(0.1, 1.0, 17)
    batch = fit_camera(joints, kp, rot_net, cam_net)
    for i in range(6):
        one = fit_camera(joints[i:i + 1], kp[i:i + 1], rot_net[i:i + 1], cam_net[i:i + 1])
        assert bool(one.fitted[0]) == bool(batch.fitted[i])
        torch.testing.assert_close(one.rotation[0], batch.rotation[i], atol=1e-6, rtol=0)
        torch.testing.assert_close(one.cam[0], batch.cam[i], atol=1e-6, rtol=0)
    again = fit_camera(joints, kp, rot_net, cam_net)
    assert torch.equal(again.rotation, batch.rotation) and torch.equal(again.cam, batch.cam)  # deterministic


def test_rotation_prior_keeps_the_network_orientation():
    joints, kp, _, _, rot_net, cam_net = _scene(q=4, seed=6, offset_deg=30.0)
    changes = [fit_camera(joints, kp, rot_net, cam_net, rotation_prior=lam, roll_prior=lam).rotation_change_deg
               for lam in (0.0, 0.5, 5.0, 500.0)]
    means = [float(c.mean()) for c in changes]
    assert means == sorted(means, reverse=True) and means[0] == pytest.approx(30.0, abs=0.1) and means[-1] < 1.0


def test_shared_keypoints_and_bad_shapes():
    joints, kp, _, _, rot_net, cam_net = _scene(q=3, seed=7)
    shared = fit_camera(joints, kp[0], rot_net, cam_net)
    assert shared.rotation.shape == (3, 3, 3) and shared.cam.shape == (3, 3)
    with pytest.raises(ValueError, match="keypoints"):
        fit_camera(joints, kp[:, :10], rot_net, cam_net)


# ---------------------------------------------------------------------------------------- in the engine
def _keypoints() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(17, 3, generator=g)
    kp[:, :2] = kp[:, :2] * 1.6 - 0.8
    kp[:, 2] = 0.9
    return kp


def test_engine_fits_by_default_and_keeps_the_network_values():
    from megaviewer.engine import CropBox

    engine = tiny_engine()
    kp = _keypoints()
    crop = CropBox(center=(300.0, 200.0), side=250.0, image_size=(640, 480))
    raw = engine.recover(kp, mode="stochastic", num_samples=3, steps=2, crop=crop, fit_camera=False)
    # the camera fit alone (the body refinement that follows it by default changes the bodies: test_engine)
    res = engine.recover(kp, mode="stochastic", num_samples=3, steps=2, crop=crop, refine=False)
    assert raw.camera_fit is None and raw.network_rotation is None
    assert res.camera_fit is not None and res.camera_fit.fitted.all() and "camera_fit_ms" in res.timings_ms
    torch.testing.assert_close(res.network_rotation, raw.rotation)
    torch.testing.assert_close(res.network_cam, raw.cam_weak)
    assert torch.equal(res.canonical_vertices, raw.canonical_vertices)
    # the result's fields stay consistent with each other after the fit
    torch.testing.assert_close(res.camera_vertices, res.canonical_vertices @ res.rotation.transpose(-1, -2)
                               + res.translation[:, None], atol=1e-4, rtol=0)
    torch.testing.assert_close(res.camera_vertices.mean(1), res.translation, atol=1e-4, rtol=0)

    def crop_error(r):
        joints = torch.einsum("jv,qvc->qjc", engine.coco_regressor, r.canonical_vertices)
        proj = weak_perspective_project(joints @ r.rotation.transpose(-1, -2), r.cam_weak)
        return (proj - kp[:, :2]).norm(dim=-1).mean(-1)

    assert (crop_error(res) < crop_error(raw)).all()
    torch.testing.assert_close(crop_error(res), res.camera_fit.error_after, atol=1e-4, rtol=1e-4)


def test_engine_default_can_be_switched_off():
    from megaviewer.engine import Engine

    base = tiny_engine()
    off = Engine(base.model, base.tokenizer, base.coco_regressor, device="cpu", faces=base.faces, fit_camera=False)
    assert off.recover(_keypoints()).camera_fit is None
    assert off.recover(_keypoints(), fit_camera=True).camera_fit is not None
    assert off.describe()["camera_fit"] is False


def test_infer_no_camera_fit_flag(tmp_path, capsys):
    from megaviewer.cli import main
    from tests._gui_helpers import blank_photo_with_keypoints

    _, kp_file = blank_photo_with_keypoints(tmp_path, confidence=2)
    outputs = {}
    for name, extra in (("fit", []), ("raw", ["--no-camera-fit"])):
        code = main(["infer", str(tmp_path / "blank.png"), "--out", str(tmp_path / name), "--keypoints",
                     str(kp_file), "--formats", "npz", "--quiet", *extra], engine=tiny_engine())
        assert code == 0, capsys.readouterr()
        outputs[name] = np.load(tmp_path / name / "blank_person0.npz")
    assert not np.allclose(outputs["fit"]["cam_weak"], outputs["raw"]["cam_weak"])
    np.testing.assert_array_equal(outputs["fit"]["canonical_vertices"], outputs["raw"]["canonical_vertices"])
