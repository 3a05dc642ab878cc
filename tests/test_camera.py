"""Camera maths: projections, crop <-> full-image conversions, weak-perspective fitting, keypoint boxes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from megaviewer.camera import (
    FLIP_X,
    crop_to_full,
    crop_to_pixels,
    default_focal,
    fit_weak_perspective,
    full_to_crop,
    full_to_crop_camera,
    original_demo_focal,
    perspective_project,
    shared_to_camera_rotation,
    square_box_from_keypoints,
    weak_perspective_project,
)

FAST = settings(max_examples=40, deadline=None)
D = torch.float64


def _scene(seed: int, batch: int = 6, depth: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(batch, 17, 3, generator=g, dtype=D) - 0.5) * torch.tensor([0.8, 1.7, 2 * depth], dtype=D)
    points = points - points.mean(dim=1, keepdim=True)
    cam = torch.stack([0.6 + torch.rand(batch, generator=g, dtype=D),
                       torch.randn(batch, generator=g, dtype=D) * 0.2,
                       torch.randn(batch, generator=g, dtype=D) * 0.2], -1)
    wh = torch.stack([400 + 900 * torch.rand(batch, generator=g, dtype=D),
                      400 + 900 * torch.rand(batch, generator=g, dtype=D)], -1).round()
    center = wh * torch.rand(batch, 2, generator=g, dtype=D)
    side = 100 + 300 * torch.rand(batch, generator=g, dtype=D)
    return points, cam, wh, center, side


def _full_projection(points, cam, wh, center, side, focal=None):
    translation, f = crop_to_full(cam, center, side, wh, focal)
    pixels = perspective_project(points + translation[:, None], f, wh / 2)
    return full_to_crop(pixels, center, side)


def test_flip_x_faces_the_camera() -> None:
    up, forward = torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    rot = shared_to_camera_rotation(torch.eye(3))
    assert torch.equal(rot, FLIP_X)
    assert torch.allclose(rot @ up, torch.tensor([0.0, -1.0, 0.0]))  # head up = -y in the image
    assert torch.allclose(rot @ forward, torch.tensor([0.0, 0.0, -1.0]))  # facing the camera
    assert torch.det(FLIP_X) == 1.0


def test_weak_perspective_formula() -> None:
    points = torch.tensor([[[1.0, 2.0, 5.0], [-1.0, 0.0, -3.0]]])
    cam = torch.tensor([[2.0, 0.5, -1.0]])
    expected = torch.tensor([[[3.0, 2.0], [-1.0, -2.0]]])
    assert torch.allclose(weak_perspective_project(points, cam), expected)


def test_perspective_formula() -> None:
    points = torch.tensor([[[1.0, -2.0, 4.0]]])
    out = perspective_project(points, torch.tensor([100.0]), torch.tensor([[320.0, 240.0]]))
    assert torch.allclose(out, torch.tensor([[[345.0, 190.0]]]))


def test_default_focal_is_a_55_degree_diagonal_field_of_view() -> None:
    assert torch.allclose(default_focal((640, 480)), torch.tensor([800 / (2 * math.tan(math.radians(27.5)))]))
    assert torch.allclose(original_demo_focal((640, 480)), torch.tensor([1000 / 224 * 640]))
    points, cam, wh, center, side = _scene(0)
    _, f = crop_to_full(cam, center, side, wh)
    assert torch.allclose(f, wh.norm(dim=-1) / (2 * math.tan(math.radians(27.5))))
    _, f = crop_to_full(cam, center, side, wh, focal=1234.0)
    assert torch.allclose(f, torch.full_like(f, 1234.0))


def test_crop_to_full_matches_original_formula() -> None:
    cam = torch.tensor([[0.8, 0.1, -0.2]])
    center, side, (w, h) = torch.tensor([[400.0, 300.0]]), torch.tensor([250.0]), (1000, 600)
    translation, f = crop_to_full(cam, center, side, (w, h))
    bs = 250.0 * 0.8
    expected = torch.tensor([[0.1 + 2 * (400 - 500) / bs, -0.2 + 2 * (300 - 300) / bs, 2 * f.item() / bs]])
    assert torch.allclose(translation, expected)


def test_round_trip_is_exact_at_the_centroid_depth() -> None:
    points, cam, wh, center, side = _scene(1)
    flat = points.clone()
    flat[..., 2] = 0.0
    assert torch.allclose(_full_projection(flat, cam, wh, center, side), weak_perspective_project(flat, cam),
                          atol=1e-9)


@pytest.mark.parametrize("focal_scale", [20.0, 60.0])
def test_round_trip_far_body_matches_weak_perspective(focal_scale: float) -> None:
    # A long focal puts the body far away (tz = 2F/(b s)), so perspective tends to weak perspective.
    points, cam, wh, center, side = _scene(2)
    focal = focal_scale * wh.amax(-1)
    weak = weak_perspective_project(points, cam)
    full = _full_projection(points, cam, wh, center, side, focal)
    translation, _ = crop_to_full(cam, center, side, wh, focal)
    depth_ratio = (points[..., 2].abs().amax(1) / translation[:, 2]).max()
    err = (full - weak).norm(dim=-1).max()
    assert depth_ratio < 0.05
    assert err < 3 * depth_ratio * weak.norm(dim=-1).max() + 1e-9


@FAST
@given(st.integers(0, 10_000), st.floats(1.0, 5000.0), st.floats(-3000.0, 3000.0), st.floats(-3000.0, 3000.0))
def test_full_to_crop_inverse(seed: int, side: float, cx: float, cy: float) -> None:
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(3, 9, 2, generator=g, dtype=D) * 500
    center = torch.tensor([[cx, cy]] * 3, dtype=D)
    side_t = torch.full((3,), side, dtype=D)
    crop = full_to_crop(points, center, side_t)
    assert torch.allclose(crop_to_pixels(crop, center, side_t), points, rtol=1e-9, atol=1e-6)
    assert torch.allclose(full_to_crop(crop_to_pixels(crop, center, side_t), center, side_t), crop, atol=1e-9)


@FAST
@given(st.integers(0, 10_000))
def test_crop_to_full_inverse(seed: int) -> None:
    points, cam, wh, center, side = _scene(seed)
    focal = torch.rand(cam.shape[0], generator=torch.Generator().manual_seed(seed), dtype=D) * 3000 + 300
    translation, f = crop_to_full(cam, center, side, wh, focal)
    back = full_to_crop_camera(translation, f, center, side, wh)
    assert torch.allclose(back, cam, rtol=1e-9, atol=1e-9)


@FAST
@given(st.integers(0, 10_000), st.integers(2, 30), st.booleans())
def test_fit_recovers_known_camera(seed: int, count: int, weighted: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(4, count, 3, generator=g, dtype=D)
    cam = torch.stack([torch.rand(4, generator=g, dtype=D) * 5 + 0.05,
                       torch.randn(4, generator=g, dtype=D), torch.randn(4, generator=g, dtype=D)], -1)
    weights = torch.rand(4, count, generator=g, dtype=D) + 0.1 if weighted else None
    fitted = fit_weak_perspective(points, weak_perspective_project(points, cam), weights)
    assert torch.allclose(fitted, cam, rtol=1e-7, atol=1e-7)


def test_fit_ignores_zero_weight_outliers_and_degenerate_input() -> None:
    points, cam, *_ = _scene(3)
    target = weak_perspective_project(points, cam)
    target[:, :4] += 5.0
    weights = torch.ones(points.shape[:2], dtype=D)
    weights[:, :4] = 0
    assert torch.allclose(fit_weak_perspective(points, target, weights), cam, atol=1e-9)
    degenerate = fit_weak_perspective(points, target, torch.zeros_like(weights))
    assert torch.isfinite(degenerate).all() and (degenerate[:, 0] > 0).all()


def test_fit_least_squares_beats_perturbations() -> None:
    points, cam, *_ = _scene(4)
    target = weak_perspective_project(points, cam) + 0.05 * torch.randn(points.shape[0], 17, 2, dtype=D)
    fitted = fit_weak_perspective(points, target)

    def loss(c):
        return ((weak_perspective_project(points, c) - target) ** 2).sum(dim=(1, 2))

    base = loss(fitted)
    for delta in torch.eye(3, dtype=D) * 1e-3:
        assert (loss(fitted + delta) >= base).all() and (loss(fitted - delta) >= base).all()


def test_square_box_from_keypoints() -> None:
    kp = torch.tensor([[[10.0, 20.0], [110.0, 60.0], [500.0, 500.0]]])
    conf = torch.tensor([[1.0, 0.5, 0.0]])  # the third keypoint is missing
    center, side = square_box_from_keypoints(kp, conf, scale=1.2)
    assert torch.allclose(center, torch.tensor([[60.0, 40.0]]))
    assert torch.allclose(side, torch.tensor([120.0]))
    center, side = square_box_from_keypoints(kp, conf, scale=torch.tensor([2.0]), threshold=0.6)
    assert torch.allclose(center, torch.tensor([[10.0, 20.0]])) and side.item() == 1.0  # one keypoint: min_side


def test_square_box_fallback_when_nothing_is_confident() -> None:
    kp = torch.rand(2, 17, 2) * 100
    conf = torch.zeros(2, 17)
    conf[0, :3] = 0.9
    center, side = square_box_from_keypoints(kp, conf, image_size=(640, 480))
    assert torch.allclose(center[1], torch.tensor([320.0, 240.0])) and side[1].item() == 640.0
    assert torch.isfinite(center).all() and side[0] > 1.0
    center, side = square_box_from_keypoints(kp, torch.zeros(2, 17))
    assert torch.equal(center, torch.zeros(2, 2)) and torch.equal(side, torch.ones(2))
