"""Rendering without a window: overlays (software rasteriser) land where the mesh projects, VTK heatmaps (EGL,
no X) use both ends of the map."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from megaviewer.camera import FLIP_X, perspective_project
from megaviewer.render.offscreen import display_mesh, display_scalars, render_sd_heatmap, render_side_view
from megaviewer.render.raster import blend, overlay_layer

GREY = np.array([200, 200, 200], np.uint8)


def render_overlay(photo: np.ndarray, meshes: list, faces: np.ndarray, focal: float,
                   max_side: int | None = None) -> np.ndarray:
    h, w = photo.shape[:2]
    return blend(photo, overlay_layer(meshes, faces, focal, (w, h), GREY, max_side))


@pytest.fixture(scope="module")
def scene(body_assets):
    """The template body standing 3 m in front of a 320x240 camera, shifted right, in the OpenCV frame."""
    verts = body_assets.template.float() @ FLIP_X.T + torch.tensor([0.3, 0.1, 3.0])
    display, faces = display_mesh(verts, body_assets)
    focal = 300.0
    px = perspective_project(torch.as_tensor(display)[None], focal, torch.tensor([[160.0, 120.0]]))[0].numpy()
    return display, faces, focal, px


def test_overlay_draws_where_the_mesh_projects(scene):
    display, faces, focal, px = scene
    photo = np.full((240, 320, 3), 90, np.uint8)
    out = render_overlay(photo, [display], faces, focal)
    assert out.shape == photo.shape and out.dtype == np.uint8
    changed = np.abs(out.astype(int) - photo).sum(-1) > 0
    ys, xs = np.nonzero(changed)
    lo, hi = px.min(0), px.max(0)
    # the drawn silhouette's box matches the projected vertices' box to a couple of pixels ...
    assert abs(xs.min() - lo[0]) <= 2 and abs(xs.max() - hi[0]) <= 2
    assert abs(ys.min() - lo[1]) <= 2 and abs(ys.max() - min(hi[1], 239)) <= 2
    # ... every projected vertex lies on a changed pixel, nothing is drawn far outside
    inside = (px[:, 0] >= 0) & (px[:, 0] < 320) & (px[:, 1] >= 0) & (px[:, 1] < 240)
    cols, rows = np.clip(np.round(px[inside]).astype(int), 0, [319, 239]).T
    near = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # fingers are sub-pixel here
    assert near[rows, cols].mean() > 0.99 and changed[rows, cols].mean() > 0.9
    far = np.ones_like(changed)
    far[max(0, int(lo[1]) - 3): int(hi[1]) + 4, max(0, int(lo[0]) - 3): int(hi[0]) + 4] = False
    assert not changed[far].any()


def test_overlay_edge_cases(scene):
    display, faces, focal, _ = scene
    photo = np.full((240, 320, 3), 90, np.uint8)
    assert np.array_equal(render_overlay(photo, [], faces, focal), photo)
    behind = display * np.array([1.0, 1.0, -1.0], np.float32)  # behind the camera: invisible
    assert np.array_equal(render_overlay(photo, [behind], faces, focal), photo)
    big = np.zeros((2000, 3000, 3), np.uint8)
    assert render_overlay(big, [display], faces, focal, max_side=1920).shape == (1280, 1920, 3)  # capped long side


def test_overlay_sorts_depth_across_people(scene):
    """Two people, one behind the other: the nearer one covers the farther one where they overlap."""
    display, faces, focal, _ = scene
    far = display + np.array([0.0, 0.0, 2.0], np.float32)
    near_only = overlay_layer([display], faces, focal, (320, 240), GREY)
    red, blue = np.array([255, 0, 0], np.uint8), np.array([0, 0, 255], np.uint8)
    for order in ([display, far], [far, display]):
        colours = [red if m is display else blue for m in order]
        both = overlay_layer(order, faces, focal, (320, 240), colours)
        covered = near_only[..., 3] == 255
        assert (both[covered][:, 0] > both[covered][:, 2]).mean() > 0.95  # the near (red) body wins


def test_heatmap_has_blue_and_red_and_a_colour_bar(scene):
    display, faces, _, _ = scene
    height = display[:, 1]
    sd = 40.0 * (height - height.min()) / np.ptp(height)  # 0 mm at the head ... 40 mm at the feet
    img = render_sd_heatmap(display, faces, sd, vmax=30.0, size=(400, 400)).astype(int)
    b, r = img[..., 0], img[..., 2]
    blue = (b > r + 60).mean()
    red = (r > b + 60).mean()
    assert blue > 0.005 and red > 0.005
    assert (img[:, 330:] < 100).all(-1).any()  # the bar's dark labels on the right


def test_heatmap_from_working_mesh_values(body_assets, scene):
    display, faces, _, _ = scene
    sd = display_scalars(np.linspace(0, 30, body_assets.num_vertices), body_assets)
    assert sd.shape == (display.shape[0],) and 0 <= sd.min() and sd.max() <= 30 + 1e-4
    with pytest.raises(ValueError, match="values for"):
        render_sd_heatmap(display, faces, np.zeros(5))


def test_side_view_shows_the_people(scene):
    display, faces, _, _ = scene
    img = render_side_view([display, display + np.array([0.0, 0.0, 1.5], np.float32)], faces, size=(300, 200))
    assert img.shape == (200, 300, 3)
    body = (img < 240).any(-1)
    assert 0.02 < body.mean() < 0.6
    cols = np.nonzero(body.any(0))[0]
    assert cols.max() - cols.min() > 60  # the two bodies, 1.5 m apart in depth, side by side
