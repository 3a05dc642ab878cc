"""Off-screen VTK pictures of recovered meshes for ``megaviewer infer``: side views and uncertainty heatmaps.

``pyvista.Plotter(off_screen=True)`` renders through EGL (Mesa llvmpipe) with no X server. Every function
returns a BGR uint8 image (the project's image format) and closes its plotter. Overlays on the photo are
drawn by the software rasteriser (:mod:`megaviewer.render.raster`), the same one the app uses.

Meshes are in the OpenCV camera frame (x right, y down, z forward, metres) of
:class:`~megaviewer.result.RecoveryResult`; views keep the head up (VTK view-up -y). Meshes should be the
smooth display mesh (:func:`display_mesh`): the 1,229-vertex working mesh looks faceted at these sizes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

import numpy as np

LIGHT_BLUE = (0.651, 0.741, 0.859)
"""The mesh colour of the original's ``demo.py``."""

ArrayLike = np.ndarray


def display_mesh(vertices, assets=None) -> tuple[np.ndarray, np.ndarray]:
    """Working-topology vertices (V, 3) -> the smooth display mesh: vertices (Vd, 3), faces (Fd, 3)."""
    import torch

    assets = assets if assets is not None else _default_assets()
    verts = torch.as_tensor(np.asarray(vertices), dtype=torch.float32)
    return assets.upsample(verts).numpy(), assets.display_faces.numpy()


def display_scalars(values, assets=None) -> np.ndarray:
    """Per-working-vertex values (V,) (e.g. the SD in mm) -> per-display-vertex values (Vd,).

    The display upsampling is affine (some weights are negative), which is right for positions but can
    overshoot for a scalar field; values are clipped to the input's range so an SD is never negative.
    """
    import torch

    assets = assets if assets is not None else _default_assets()
    vals = torch.as_tensor(np.asarray(values), dtype=torch.float32)
    gathered = vals[assets.display_idx]
    out = (gathered * assets.display_weights.to(torch.float32)).sum(dim=-1)
    return out.clamp(float(vals.min()), float(vals.max())).numpy()


def render_side_view(meshes: Sequence[ArrayLike] | ArrayLike, faces: ArrayLike, size: tuple[int, int] = (512, 512),
                     colors: Sequence[tuple[float, float, float]] | None = None,
                     background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The scene seen from the people's right (camera x axis), head up: shows depth and body lean."""
    mesh_list = _as_mesh_list(meshes)
    with _plotter(size, background) as plotter:
        for i, verts in enumerate(mesh_list):
            plotter.add_mesh(_polydata(verts, faces), color=_color(colors, i), smooth_shading=True, specular=0.2)
        _look_at(plotter, mesh_list, direction=(-1.0, 0.0, 0.0))
        rgb = plotter.screenshot(return_img=True)
    return np.ascontiguousarray(_fit(rgb, *size)[..., 2::-1])


def render_sd_heatmap(mesh: ArrayLike, faces: ArrayLike, sd_mm: ArrayLike, vmax: float = 30.0,
                      size: tuple[int, int] = (512, 512), title: str = "SD (mm)",
                      direction: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``mesh`` coloured by per-vertex ``sd_mm`` (coolwarm: blue 0 mm, red >= ``vmax``) with a colour bar.

    Seen along ``direction`` (default: from the photo's camera), head up, framed to fit.
    """
    verts = np.asarray(mesh, dtype=np.float32)
    sd = np.asarray(sd_mm, dtype=np.float32).reshape(-1)
    if sd.shape[0] != verts.shape[0]:
        raise ValueError(f"sd_mm has {sd.shape[0]} values for {verts.shape[0]} vertices")
    with _plotter(size, (1.0, 1.0, 1.0)) as plotter:
        poly = _polydata(verts, faces)
        poly.point_data["sd_mm"] = np.nan_to_num(sd, nan=0.0)
        plotter.add_mesh(poly, scalars="sd_mm", cmap="coolwarm", clim=(0.0, float(vmax)), smooth_shading=True,
                         show_scalar_bar=True,
                         scalar_bar_args={"title": title, "color": "black", "vertical": True,
                                          "position_x": 0.82, "position_y": 0.1, "height": 0.8, "width": 0.12,
                                          "n_labels": 4, "fmt": "%.0f"})
        _look_at(plotter, [verts], direction=direction)
        rgb = plotter.screenshot(return_img=True)
    return np.ascontiguousarray(_fit(rgb, *size)[..., 2::-1])


# ----------------------------------------------------------------------------------------------- helpers
def _default_assets():
    from megaviewer.body.assets import BodyAssets

    return BodyAssets.load()


def _as_mesh_list(meshes) -> list[np.ndarray]:
    if isinstance(meshes, np.ndarray) or hasattr(meshes, "numpy"):
        arr = np.asarray(meshes, dtype=np.float32)
        return [arr] if arr.ndim == 2 else [m for m in arr]
    return [np.asarray(m, dtype=np.float32) for m in meshes]


def _color(colors, i: int) -> tuple[float, float, float]:
    return tuple(colors[i % len(colors)]) if colors else LIGHT_BLUE


def _polydata(vertices: np.ndarray, faces: ArrayLike):
    import pyvista as pv

    verts = np.nan_to_num(np.asarray(vertices, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return pv.PolyData.from_regular_faces(verts, np.asarray(faces, dtype=np.int64))


def _look_at(plotter, meshes: list[np.ndarray], direction: tuple[float, float, float]) -> None:
    """Camera looking along ``direction`` at the meshes' centre, head up (-y), distance fitted."""
    if meshes:
        pts = np.concatenate([np.asarray(m).reshape(-1, 3) for m in meshes])
        center = pts[np.isfinite(pts).all(axis=1)].mean(axis=0) if np.isfinite(pts).any() else np.zeros(3)
    else:
        center = np.zeros(3)
    d = np.asarray(direction, dtype=np.float64)
    cam = plotter.camera
    cam.focal_point = tuple(center)
    cam.position = tuple(center - 3.0 * d / np.linalg.norm(d))
    cam.up = (0.0, -1.0, 0.0)
    if meshes:
        plotter.reset_camera()
        plotter.camera.zoom(1.1)
    plotter.renderer.ResetCameraClippingRange()


def _fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Guard against a screenshot a pixel off the requested size (some drivers round odd sizes)."""
    if img.shape[0] == h and img.shape[1] == w:
        return img
    import cv2

    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def _prefer_egl() -> None:
    """With no display, ask VTK for EGL directly: it would try X first and log "bad X server connection"."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


@contextlib.contextmanager
def _plotter(size: tuple[int, int], background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Iterator:
    _prefer_egl()
    import pyvista as pv

    plotter = pv.Plotter(off_screen=True, window_size=(int(size[0]), int(size[1])))
    try:
        plotter.set_background(background)
        plotter.enable_anti_aliasing("msaa", multi_samples=8)
        yield plotter
    finally:
        plotter.close()
