"""The 3D viewport: a pyvistaqt ``QtInteractor`` that shows one body mesh (plus an optional ghost).

Why a wrapper: the rest of the app speaks in numpy arrays (vertices, faces, RGB or SD per vertex) and never
touches VTK. Points and colours are updated in place, so a live stream or the step scrubber re-renders in a
few milliseconds without rebuilding actors and without moving the user's camera.
"""

from __future__ import annotations

import numpy as np
import pyvista as pv
import scipy.sparse as sp
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget
from pyvistaqt import QtInteractor

BACKGROUND_BOTTOM = "#2a3441"
BACKGROUND_TOP = "#10151b"
TEXT_COLOUR = "#dfe6ee"


def vertex_normals(vertices: np.ndarray, faces: np.ndarray, incidence: sp.csr_matrix | None = None) -> np.ndarray:
    """Area-weighted vertex normals (V, 3); computed here so in-place point updates keep smooth shading.

    ``incidence`` (V, F) from :func:`face_incidence` makes repeated calls on one topology a sparse product.
    """
    tri = vertices[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if incidence is None:
        incidence = face_incidence(faces, len(vertices))
    normals = incidence @ face_n
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    return normals.astype(np.float32)


def face_incidence(faces: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """Sparse (V, F) matrix with a 1 where a vertex belongs to a face."""
    rows = np.asarray(faces).reshape(-1)
    cols = np.repeat(np.arange(len(faces)), 3)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(num_vertices, len(faces)))


class MeshViewport(QWidget):
    """A QtInteractor showing a mesh coloured by RGB or by a scalar field with a scalar bar."""

    def __init__(self, parent: QWidget | None = None, auto_update: bool | float = False):
        super().__init__(parent)
        self.plotter = QtInteractor(self, auto_update=auto_update)
        # pyvistaqt would pyvista.read() a dropped file into the scene; photos dropped here belong to the window.
        self.plotter.setAcceptDrops(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plotter.interactor)
        self.plotter.set_background(BACKGROUND_BOTTOM, top=BACKGROUND_TOP)
        # FXAA: cheap (SSAA/MSAA are slow on software GL). Set on the renderer directly: pyvista's
        # enable_anti_aliasing probes the GL platform by creating a throw-away render window, which can hang
        # under Xvfb.
        self.plotter.render_window.SetMultiSamples(0)  # as pyvista does for FXAA; with MSAA on, Xvfb shots were black
        self.plotter.renderer.SetUseFXAA(True)
        self._mesh: pv.PolyData | None = None
        self._actor = None
        self._kind: tuple | None = None  # (n_points, n_faces, "rgb" | "scalars", clim)
        self._ghost: pv.PolyData | None = None
        self._ghost_actor = None
        self._caption = ""
        self._caption_actor = self.plotter.add_text("", position="upper_left", font_size=10, color=TEXT_COLOUR,
                                                    name="caption")
        self.placeholder = QLabel(self)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet("QLabel { color: #dfe6ee; background: rgba(16, 21, 27, 170); "
                                       "border-radius: 8px; padding: 14px; font-size: 15px; }")
        self.set_placeholder("Loading the model…")

    def request_render(self) -> None:
        """Schedule one repaint: Qt merges requests, and paintGL renders once (``render()`` would draw twice:
        once now and once more when Qt repaints the widget)."""
        self.plotter.update()

    # --------------------------------------------------------------------------------------- content
    @property
    def has_mesh(self) -> bool:
        return self._mesh is not None

    def set_placeholder(self, text: str) -> None:
        """A centred note while there is nothing to show (model loading, no person found...).

        A Qt label over the GL widget, so it never appears in viewport screenshots or exports.
        """
        self.placeholder.setText(text)
        self.placeholder.setVisible(bool(text))
        self._place_placeholder()

    def _place_placeholder(self) -> None:
        width = min(self.width() - 40, 460)
        self.placeholder.setFixedWidth(max(width, 120))
        self.placeholder.adjustSize()
        self.placeholder.move((self.width() - self.placeholder.width()) // 2,
                              (self.height() - self.placeholder.height()) // 2)
        self.placeholder.raise_()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._place_placeholder()

    def show_mesh(self, vertices: np.ndarray, faces: np.ndarray, rgb: np.ndarray | None = None,
                  scalars: np.ndarray | None = None, clim: tuple[float, float] | None = None,
                  scalar_title: str = "SD (mm)", reset_camera: bool = False) -> None:
        """Show or update the mesh; ``scalars`` (V,) switch to a coolwarm heatmap with a scalar bar."""
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        kind = (len(vertices), len(faces), "scalars" if scalars is not None else "rgb")
        first = self._mesh is None
        if self._mesh is None or self._kind != kind:
            self._rebuild(vertices, faces, rgb, scalars, clim, scalar_title)
            self._kind = kind
        else:
            self._mesh.points = vertices
            self._mesh.point_data["Normals"] = vertex_normals(vertices, self._faces, self._incidence)
            if scalars is not None:
                self._mesh.point_data["sd"] = np.asarray(scalars, np.float32)
                self._actor.mapper.scalar_range = clim or (float(scalars.min()), float(scalars.max()) + 1e-6)
            else:
                self._mesh.point_data["rgb"] = self._rgb(rgb, len(vertices))
            self._mesh.Modified()
        self.set_placeholder("")
        if first or reset_camera:
            self.reset_view(render=False)
        self.request_render()

    def _rgb(self, rgb: np.ndarray | None, count: int) -> np.ndarray:
        if rgb is None:
            return np.full((count, 3), 200, np.uint8)
        return np.ascontiguousarray(np.broadcast_to(np.asarray(rgb, np.uint8), (count, 3)))

    def _rebuild(self, vertices, faces, rgb, scalars, clim, scalar_title) -> None:
        if self._actor is not None:
            self.plotter.remove_actor(self._actor, render=False)
        if self.plotter.scalar_bars:
            self.plotter.remove_scalar_bar()
        self._faces = np.asarray(faces, np.int64)
        self._incidence = face_incidence(self._faces, len(vertices))
        mesh = pv.PolyData.from_regular_faces(vertices, self._faces)
        mesh.point_data["Normals"] = vertex_normals(vertices, self._faces, self._incidence)
        mesh.point_data.active_normals_name = "Normals"
        common = dict(smooth_shading=False, specular=0.25, specular_power=20, diffuse=0.85, ambient=0.12,
                      reset_camera=False, name="body", render=False)
        if scalars is not None:
            mesh.point_data["sd"] = np.asarray(scalars, np.float32)
            clim = clim or (float(np.min(scalars)), float(np.max(scalars)) + 1e-6)
            bar = dict(title=scalar_title, vertical=True, position_x=0.87, position_y=0.12, height=0.7,
                       width=0.06, color=TEXT_COLOUR, fmt="%.0f", title_font_size=14, label_font_size=12,
                       n_labels=5)
            self._actor = self.plotter.add_mesh(mesh, scalars="sd", cmap="coolwarm", clim=clim,
                                                scalar_bar_args=bar, **common)
        else:
            mesh.point_data["rgb"] = self._rgb(rgb, len(vertices))
            self._actor = self.plotter.add_mesh(mesh, scalars="rgb", rgb=True, show_scalar_bar=False, **common)
        self._mesh = mesh

    def show_ghost(self, vertices: np.ndarray | None, faces: np.ndarray | None = None,
                   colour: tuple[int, int, int] = (236, 200, 120), opacity: float = 0.35) -> None:
        """A translucent second mesh (the deterministic reference) at the same place; ``None`` removes it."""
        if vertices is None:
            if self._ghost_actor is not None:
                self.plotter.remove_actor(self._ghost_actor, render=False)
                self._ghost, self._ghost_actor = None, None
                self.request_render()
            return
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        if self._ghost is not None and self._ghost.n_points == len(vertices):
            self._ghost.points = vertices
            self._ghost.Modified()
        else:
            if self._ghost_actor is not None:
                self.plotter.remove_actor(self._ghost_actor, render=False)
            self._ghost = pv.PolyData.from_regular_faces(vertices, np.asarray(faces, np.int64))
            self._ghost_actor = self.plotter.add_mesh(self._ghost, color=np.asarray(colour) / 255.0,
                                                      opacity=opacity, smooth_shading=True, reset_camera=False,
                                                      name="ghost", render=False)
        self.request_render()

    def set_caption(self, text: str) -> None:
        """A small label in the top-left corner saying what is shown (hypothesis, step...)."""
        if text == self._caption:
            return
        self._caption = text
        self._caption_actor.set_text("upper_left", text)
        self.request_render()

    def clear(self, placeholder: str = "") -> None:
        for actor in (self._actor, self._ghost_actor):
            if actor is not None:
                self.plotter.remove_actor(actor, render=False)
        if self.plotter.scalar_bars:
            self.plotter.remove_scalar_bar()
        self._mesh = self._actor = self._ghost = self._ghost_actor = None
        self._kind = None
        self.set_caption("")
        self.set_placeholder(placeholder)

    # ---------------------------------------------------------------------------------------- camera
    def reset_view(self, render: bool = True) -> None:
        """Look from the model's camera side (+z in the display frame, y up) at the whole body."""
        self.plotter.view_xy(render=False)
        self.plotter.reset_camera(render=False)
        self.plotter.camera.zoom(1.05)
        if render:
            self.request_render()

    def screenshot(self, path: str | None = None) -> np.ndarray:
        """The rendered view as an (H, W, 3) uint8 array, optionally saved as PNG."""
        self.plotter.render()
        return self.plotter.screenshot(path, return_img=True)

    def close_plotter(self) -> None:
        """Close the VTK plotter and drop pyvistaqt's handles on the widget's Qt GL context and surface.

        Why the second step: the plotter's Python object can outlive the window (signal connections keep it),
        and with it pyvistaqt's wrappers of the C++-owned context and offscreen surface. When Qt deletes the
        window those wrappers dangle, and shiboken may hand one back for a new Qt object built at the same
        address: a test once got a ``QOffscreenSurface`` from ``QScrollArea.verticalScrollBar()``. After
        ``close`` the render window is gone, so forgetting the context skips no GL clean-up.
        """
        self.plotter.close()
        forget = getattr(self.plotter, "_forget_context", None)  # pyvistaqt >= 0.12; absent elsewhere
        if callable(forget):
            forget()
