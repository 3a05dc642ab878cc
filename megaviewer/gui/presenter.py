"""Turns the :class:`ViewerState` into pixels: viewport mesh and colours, photo overlay, gallery, timeline.

The presenter is the one place that knows how a (result, sample, step, flags) selection looks; widgets stay
dumb and the state stays Qt-free. It keeps the :class:`ResultMeshes` of the current result, so per-step meshes
are decoded once and reused while scrubbing.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import numpy as np
import torch
from PySide6.QtWidgets import QLabel, QListWidget

from megaviewer.gui.gallery import HypothesisGallery
from megaviewer.gui.image_view import ImageView
from megaviewer.gui.scene import BODY_RGB, REFERENCE_RGB, BodyScene, ResultMeshes
from megaviewer.gui.state import MEAN, REFERENCE, ViewerState
from megaviewer.gui.timeline import StepTimeline
from megaviewer.gui.viewport import MeshViewport
from megaviewer.render.raster import overlay_layer
from megaviewer.result import RecoveryResult

OVERLAY_MAX_SIDE = 1600  # px; the overlay is a translucent layer, more resolution than this is not visible


def coolwarm_rgb(values: np.ndarray, clim: tuple[float, float]) -> np.ndarray:
    """Scalars -> RGB uint8 with the same colormap as the viewport heatmap (blue low, red high)."""
    from matplotlib import colormaps

    lo, hi = clim
    t = np.clip((np.asarray(values, np.float64) - lo) / max(hi - lo, 1e-9), 0, 1)
    return (colormaps["coolwarm"](t)[:, :3] * 255).astype(np.uint8)


def camera_text(result: RecoveryResult) -> str:
    """The result line about the camera: focal in px and as a 35 mm equivalent, where it came from, and how far
    away the body stands (its centroid, mean of the hypotheses)."""
    from megaviewer.intrinsics import PhotoCamera

    text = f"camera: focal {result.focal:.0f} px"
    if result.focal_35mm is not None:
        text += f" ({result.focal_35mm:.0f} mm equiv."
        if result.focal_source:
            text += ", " + PhotoCamera(result.focal, result.image_size, result.focal_source).describe()
        text += ")"
    return text + f" · body {result.distance_m:.2f} m from the camera"


class Presenter:
    def __init__(self, state: ViewerState, viewport: MeshViewport, image_view: ImageView,
                 gallery: HypothesisGallery, timeline: StepTimeline, people_list: QListWidget,
                 summary: QLabel | None = None):
        self.state, self.viewport, self.image_view = state, viewport, image_view
        self.gallery, self.timeline, self.people_list = gallery, timeline, people_list
        self.summary = summary
        self.scene: BodyScene | None = None
        self.decode: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.meshes: ResultMeshes | None = None
        self.reference_meshes: ResultMeshes | None = None
        self.live = False
        self.model_error = False
        state.subscribe(self.on_state)

    def set_engine(self, scene: BodyScene, decode: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.scene, self.decode = scene, decode

    # ------------------------------------------------------------------------------------ dispatch
    def on_state(self, changed: set[str]) -> None:
        state = self.state
        if "image" in changed:
            self.image_view.set_image(state.image)
            self.image_view.set_message("")
        if changed & {"image", "people", "person"}:
            self.image_view.set_people(state.people, state.person)
            self._fill_people_list()
        if "result" in changed:
            self._new_result()
        if changed & {"result", "sample", "step", "heatmap", "compare", "overlay", "before_fit"}:
            # A new still result is framed afresh; a live stream keeps the user's camera.
            self.refresh(reset_camera="result" in changed and not self.live)

    def _fill_people_list(self) -> None:
        self.people_list.blockSignals(True)
        self.people_list.clear()
        for i, person in enumerate(self.state.people):
            seen = int((person.keypoints[:, 2] > 0).sum())
            self.people_list.addItem(f"Person {i + 1} · {seen}/17 keypoints · score {person.score:.2f}")
            self.people_list.item(i).setToolTip(person.describe())
        if self.state.person >= 0:
            self.people_list.setCurrentRow(self.state.person)
        self.people_list.blockSignals(False)

    def _new_result(self) -> None:
        result, state = self.state.result, self.state
        if result is None or self.scene is None or self.decode is None:
            self.meshes = self.reference_meshes = None
            self.viewport.clear(self.waiting_text())
            self.gallery.clear()
            self.timeline.set_steps(0)
            self.timeline.describe("no generation yet")
            if self.summary is not None:
                self.summary.setText("nothing recovered yet")
            return
        self.meshes = ResultMeshes(result, self.decode)
        if self.summary is not None:
            self.summary.setText(self.summary_text())
        ref = state.reference
        self.reference_meshes = ResultMeshes(ref, self.decode) if ref is not None else None
        self.timeline.set_steps(self.meshes.num_steps, state.step)
        if not self.live or self.gallery.count() == 0:  # while streaming: once, then again on pause/stop
            self._fill_gallery()

    def set_live(self, live: bool) -> None:
        """Streaming trades detail for speed: working-mesh overlay, gallery filled when the stream stops."""
        self.live = live
        if not live and self.meshes is not None:
            self._fill_gallery()
            self.refresh()

    def _fill_gallery(self) -> None:
        meshes, scene = self.meshes, self.scene
        q = meshes.result.num_samples
        samples = [meshes.display(i) for i in range(q)]
        mean = meshes.display(MEAN) if q > 1 else None
        ref = self.reference_meshes.display(0) if self.reference_meshes is not None else None
        self.gallery.set_meshes(samples, scene.faces, mean=mean, reference=ref, selected=self.state.sample)

    # ---------------------------------------------------------------------------------- rendering
    def shown(self) -> tuple[ResultMeshes, int]:
        """The ResultMeshes and sample index that the current selection points at."""
        if self.state.sample == REFERENCE and self.reference_meshes is not None:
            return self.reference_meshes, 0
        return self.meshes, self.state.sample

    def shown_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """The smooth display mesh on screen, in the viewport frame (y up, facing +z: what 3D tools expect),
        so an export is exactly the mesh the user looked at."""
        meshes, sample = self.shown()
        step = self.state.step if sample >= 0 else None
        vertices = self.scene.upsample(meshes.display(sample, step))
        return vertices.astype(np.float32), self.scene.display_faces

    def sd_clim(self) -> tuple[float, float]:
        sd = self.state.result.vertex_sd_mm.numpy()
        return 0.0, max(float(np.percentile(sd, 99.5)), 1e-3)

    def colours(self, display: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(rgb, scalars) per vertex for the current selection; exactly one is not ``None``."""
        state, scene = self.state, self.scene
        meshes, sample = self.shown()
        if state.step is not None and sample >= 0:
            visible, revealed = meshes.masks(sample, state.step)
            return scene.token_colours(visible, revealed, display=display), None
        if state.heatmap and state.has_spread:
            sd = state.result.vertex_sd_mm.numpy()
            return None, (scene.upsample_scalars(sd) if display else sd)
        count = len(scene.display_token if display else scene.vertex_token)
        colour = REFERENCE_RGB if state.sample == REFERENCE else BODY_RGB
        return np.tile(colour, (count, 1)), None

    def refresh(self, reset_camera: bool = False) -> None:
        """Redraw the viewport mesh, ghost, caption, gallery selection, timeline label and photo overlay."""
        state, scene = self.state, self.scene
        if state.result is None or self.meshes is None or scene is None:
            self.image_view.set_overlay(None)
            return
        meshes, sample = self.shown()
        step = state.step if sample >= 0 else None
        vertices, faces = self.shown_mesh()
        rgb, scalars = self.colours(display=True)
        clim = self.sd_clim() if scalars is not None else None
        self.viewport.show_mesh(vertices, faces, rgb=rgb, scalars=scalars, clim=clim,
                                reset_camera=reset_camera)
        self.viewport.show_ghost(self._ghost(), scene.display_faces)
        self.viewport.set_caption(self.caption())
        self.gallery.select(state.sample)
        self.timeline.set_step(step)
        self.timeline.describe(self.step_text())
        self.timeline.legend.setVisible(step is not None)  # the colour key only matters while scrubbing
        self._refresh_overlay(meshes, sample, step)

    def _shows_before_fit(self) -> bool:
        """Whether the body before the fit is drawn: the view is on and the shown hypothesis was refined."""
        state = self.state
        if not state.before_fit or self.meshes is None or state.step is not None:
            return False
        meshes, sample = self.shown()
        return meshes.result.before_fit is not None and sample >= 0

    def _before_fit(self, frame: str = "display") -> np.ndarray | None:
        """The shown hypothesis's body before the fit to the keypoints, when :meth:`_shows_before_fit`."""
        if not self._shows_before_fit():
            return None
        meshes, sample = self.shown()
        return meshes.before_fit(sample, frame)

    def _ghost(self) -> np.ndarray | None:
        state = self.state
        before = self._before_fit()
        if before is not None:
            return self.scene.upsample(before)
        if not state.compare or state.result is None:
            return None
        if state.sample == REFERENCE:
            return self.scene.upsample(self.meshes.display(MEAN)) if state.result.num_samples > 1 else None
        if self.reference_meshes is None:
            return None
        return self.scene.upsample(self.reference_meshes.display(0))

    def _refresh_overlay(self, meshes: ResultMeshes, sample: int, step: int | None) -> None:
        state = self.state
        result = meshes.result
        if not state.overlay or state.image is None or result.focal is None:
            self.image_view.set_overlay(None)
            return
        smooth = not self.live  # the smooth display mesh costs ~10x the working mesh to rasterise
        rgb, scalars = self.colours(display=smooth)
        if scalars is not None:
            rgb = coolwarm_rgb(scalars, self.sd_clim())
        before = self._before_fit("camera")
        vertices = meshes.camera(sample, step) if before is None else before
        if smooth:
            vertices = self.scene.upsample(vertices)
        faces = self.scene.display_faces if smooth else self.scene.faces
        width, height = state.image.shape[1], state.image.shape[0]
        # big photos: draw smaller, show scaled up
        rgba = overlay_layer([vertices], faces, result.focal, (width, height), rgb, OVERLAY_MAX_SIDE)
        self.image_view.set_overlay(rgba, scale=width / rgba.shape[1])

    # -------------------------------------------------------------------------------------- texts
    def caption(self) -> str:
        state, result = self.state, self.state.result
        q = result.num_samples
        if state.sample == REFERENCE:
            text = "Deterministic reference"
        elif state.sample == MEAN:
            text = f"Mean of {q} hypotheses"
        elif result.mode == "deterministic":
            text = "Deterministic"
        else:
            kind = "Random human" if result.mode == "unconditional" else "Hypothesis"
            text = f"{kind} {state.sample + 1} of {q}"
        if state.step is not None and state.sample >= 0:
            text += f" · step {state.step + 1}/{state.num_steps}"
        elif state.heatmap and state.has_spread:
            text += f" · per-vertex SD over {q} samples"
        if self._shows_before_fit():
            text += " · ghost and photo: the body before the fit to the keypoints"
        elif state.compare and self._ghost() is not None:
            text += " · ghost: " + ("mean" if state.sample == REFERENCE else "deterministic")
        return text

    def step_text(self) -> str:
        state = self.state
        meshes, sample = self.shown()
        if state.step is None or sample < 0 or meshes.result.trace is None:
            return f"final mesh ({state.num_steps} step{'s' if state.num_steps != 1 else ''})"
        visible, revealed = meshes.masks(sample, state.step)
        temps = meshes.result.trace.temperatures
        temp = f" · temp {temps[state.step]:.2f}" if state.step < len(temps) else ""
        return (f"step {state.step + 1}/{state.num_steps} · {int(visible.sum())}/{len(visible)} tokens visible · "
                f"+{int(revealed.sum())} new{temp}")

    def waiting_text(self) -> str:
        """What the empty viewport says while there is no mesh."""
        state = self.state
        if self.model_error:
            return "No model could be loaded (the message says why).\nPhotos still open and people are still detected."
        if self.decode is None:
            return "Loading the model…" if state.image is None else "Waiting for the model…"
        if state.image is None:
            return "Open a photo (Ctrl+O), drop one here, or start the webcam (F5)"
        if not state.people:
            return "No person found in this image"
        return "Recovering…"

    def summary_text(self) -> str:
        """A few lines about the current result: mode, spread of the hypotheses, camera and timings."""
        result = self.state.result
        lines = [f"<b>{result.mode}</b>"]
        trace = result.trace
        if result.num_samples > 1:
            steps = f", T = {trace.tokens.shape[0]} steps" if trace is not None else ""
            lines[0] += f" · Q = {result.num_samples}{steps}"
            sd = result.vertex_sd_mm.numpy()
            lines.append(f"per-vertex SD: median {np.median(sd):.0f} mm, max {sd.max():.0f} mm")
        if result.focal is not None:
            lines.append(camera_text(result))
        costs = [f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in result.timings_ms.items()]
        if result.camera_fit is not None:
            fit = result.camera_fit.summary()  # errors in crop units: the box side is 2, so percent = error * 50
            costs.append(f"camera fit: {fit['fitted']}/{fit['hypotheses']} hypotheses, "
                         f"{fit['error_before'] * 50:.0f} % → {fit['error_after'] * 50:.0f} % of the box")
        elif result.mode != "unconditional":
            costs.append("camera fit: not run (the network's own camera)")
        if costs:
            lines.append(" · ".join(costs))
        if result.model:
            lines.append(f"model: {html.escape(result.model)}")
        return "<br>".join(lines)
