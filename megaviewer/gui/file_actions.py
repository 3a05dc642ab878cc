"""File actions of the main window: open (dialog, drop, recent, command line), open a model, export, screenshots.

A mixin so ``main_window.py`` stays about layout and wiring; it expects the window's ``session``, ``state``,
``presenter``, ``viewport``, ``live_panel``, ``qsettings``, ``recent_menu`` and ``notify``. Files are named
by :func:`megaviewer.app.exports.output_name` (the rule ``megaviewer infer`` follows) and written by
:mod:`megaviewer.io.export` on the session's export thread, so a slow disk never blocks the window.

File > Open model… takes any MEGA checkpoint folder over the shipped tokenizer (image-, keypoint- or
landmark-conditioned); the session loads it on its loader thread and keeps the old model when it fails. The
folder is remembered (``model/folder``) and tried again at the next start, where a folder that no longer loads
falls back to the shipped default with a status line rather than a dialog: a folder moved since the last session
is not something the user did wrong just now.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from megaviewer.app.exports import output_name
from megaviewer.gui.state import MEAN, REFERENCE

IMAGE_FILTER = ("Images and videos (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.webp *.mp4 *.avi *.mov *.mkv *.webm);;"
                "Images (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.webp);;All files (*)")
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
MESH_FILTER = "Wavefront OBJ (*.obj);;Stanford PLY (*.ply);;glTF binary (*.glb)"
MAX_RECENT = 10
MODEL_KEY = "model/folder"


class FileActionsMixin:
    @property
    def last_folder(self) -> str:
        return str(self.qsettings.value("paths/last_folder", "") or "")

    def _remember(self, path: Path) -> None:
        self.qsettings.setValue("paths/last_folder", str(path.parent))
        recent = [p for p in self.recent_files() if p != str(path)]
        self.qsettings.setValue("paths/recent", json.dumps([str(path), *recent][:MAX_RECENT]))
        self._refresh_recent_menu()

    def recent_files(self) -> list[str]:
        try:
            items = json.loads(str(self.qsettings.value("paths/recent", "[]")))
        except json.JSONDecodeError:
            return []
        return [str(p) for p in items] if isinstance(items, list) else []

    def _refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = self.recent_files()
        for path in files:
            action = QAction(Path(path).name, self.recent_menu)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(lambda _checked=False, p=path: self.open_path(p))
            self.recent_menu.addAction(action)
        if files:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", lambda: (self.qsettings.setValue("paths/recent", "[]"),
                                                              self._refresh_recent_menu()))
        self.recent_menu.setEnabled(bool(files))

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an image or a video", self.last_folder, IMAGE_FILTER)
        if path:
            self.open_path(path)

    def open_video_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Play a video file", self.last_folder,
                                              VIDEO_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> None:
        """A photo is detected and recovered; a video plays live (as a webcam stand-in)."""
        from megaviewer.vision.sources import kind_of

        path = Path(path)
        if not path.exists():
            self.notify("error", f"{path} does not exist.")
            return
        self._remember(path)
        if kind_of(path) == "video":
            self.live_panel.video.setChecked(True)
            self.live_panel.video_path.setText(str(path))
            self.session.start_live(path, loop=self.live_panel.loop.isChecked())
        else:
            self.session.open_image(path)
        self.setWindowTitle(f"{path.name} — megaviewer")

    # ----------------------------------------------------------------------------------------- models
    @property
    def remembered_model(self) -> str:
        """The checkpoint folder last opened with File > Open model… ("" when the shipped default is in use)."""
        return str(self.qsettings.value(MODEL_KEY, "") or "")

    def remember_model(self, folder: str) -> None:
        self.qsettings.setValue(MODEL_KEY, folder)

    def open_model_dialog(self) -> None:
        remembered = self.remembered_model
        start = str(Path(remembered).parent) if remembered else self.last_folder
        folder = QFileDialog.getExistingDirectory(self, "Open a MEGA checkpoint folder (config.json + "
                                                  "model.safetensors)", start)
        if folder:
            self.open_model(folder)

    def open_model(self, folder: str | Path) -> None:
        """Load the checkpoint in ``folder`` off the UI thread; the window follows when it is ready."""
        path = Path(folder)
        if not path.is_dir():
            self.notify("error", f"{path} is not a folder; pick a MEGA checkpoint folder "
                                 "(config.json + model.safetensors).")
            return
        self.session.open_model(path)

    def load_start_model(self, model: str | Path | None = None, device: str | None = None) -> None:
        """Start-up: ``model`` (the command line's ``--model``) if given, else the remembered folder when it still
        loads, else the shipped default; all on the session's loader thread."""
        from megaviewer.engine import Engine

        if model is not None:
            self.session.load_engine(lambda: Engine.from_pretrained(model, device=device))
            return
        remembered = self.remembered_model
        if not remembered:
            self.session.load_engine(lambda: Engine.from_pretrained(device=device))
            return
        self.session.load_engine(lambda: Engine.from_pretrained(remembered, device=device),
                                 fallback=lambda: Engine.from_pretrained(device=device))

    def load_sample(self) -> None:
        image = sample_image()
        if image is None:
            self.notify("info", "The sample photo needs scikit-image; open your own photo instead (Ctrl+O).")
        else:
            self.session.show_image(image)
            self.setWindowTitle("astronaut (sample) — megaviewer")

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            self.open_path(files[0])
            event.acceptProposedAction()

    def default_name(self, ext: str) -> str:
        """A file name that says what is on screen (``photo_person0_sample2_step3.obj``, ``photo_person0_mean.npz``)."""
        state = self.state
        stem = state.image_path.stem if state.image_path is not None else "megaviewer"
        result = state.result
        if result is None:
            return output_name(stem, ext)
        person = state.person if state.person >= 0 and result.mode != "unconditional" else None
        hypothesis: int | str | None = None
        if ext == "npz":  # the archive holds every hypothesis: named as megaviewer infer names it
            return output_name(stem, ext, person=person)
        if state.sample == MEAN:
            hypothesis = "mean"
        elif state.sample == REFERENCE:
            hypothesis = "deterministic"
        elif result.num_samples > 1:
            hypothesis = state.sample
        step = state.step + 1 if state.step is not None and state.sample >= 0 else None
        return output_name(stem, ext, person=person, hypothesis=hypothesis, step=step)

    def _save_dialog(self, title: str, ext: str, filters: str, name: str | None = None) -> Path | None:
        start = str(Path(self.last_folder or ".") / (name or self.default_name(ext)))
        path, chosen = QFileDialog.getSaveFileName(self, title, start, filters)
        return with_suffix_from_filter(path, chosen, f".{ext}") if path else None

    def export_mesh_dialog(self) -> None:
        path = self._save_dialog("Export mesh", "obj", MESH_FILTER)
        if path is not None:
            self.export_mesh(path)

    def export_mesh(self, path: str | Path) -> None:
        """Write the mesh on screen (selected hypothesis / mean / reference, at the shown step)."""
        from megaviewer.io.export import export_mesh

        path = Path(path)
        vertices, faces = self.presenter.shown_mesh()
        self.session.export("mesh", path, lambda: export_mesh(path, vertices, faces))

    def export_npz_dialog(self) -> None:
        path = self._save_dialog("Export result", "npz", "NumPy archive (*.npz)")
        if path is not None:
            self.export_npz(path)

    def export_npz(self, path: str | Path) -> None:
        """Tokens, every hypothesis, SD, joints and camera of the result (schema in :mod:`megaviewer.io.export`)."""
        from megaviewer.io.export import export_npz

        path, state = Path(path), self.state
        result, person = state.result, state.current_person
        size = (state.image.shape[1], state.image.shape[0]) if state.image is not None else None
        detection = person.detection if person is not None else None
        index = max(state.person, 0)
        self.session.export("npz", path, lambda: export_npz(path, result, index, detection, size))

    def export_scene_dialog(self) -> None:
        stem = self.state.image_path.stem if self.state.image_path is not None else "megaviewer"
        path = self._save_dialog("Export scene", "glb", "glTF binary (*.glb)", output_name(stem, "glb", view="scene"))
        if path is not None:
            self.export_scene(path)

    def export_scene(self, path: str | Path) -> None:
        """Every person of the photo, in its camera frame, in one GLB (as ``megaviewer infer --formats scene``)."""
        self.session.export_scene(Path(path))

    def screenshot_dialog(self) -> None:
        path = self._save_dialog("Save screenshot", "png", "PNG image (*.png)")
        if path is not None:
            self.save_screenshot(path)

    def save_screenshot(self, path: str | Path) -> bool:
        """Save the 3D view; on an unwritable path say so (GL pixels must be read on the UI thread)."""
        from megaviewer.io.export import export_png

        try:
            export_png(path, self.viewport.screenshot(), rgb=True)
        except OSError as exc:
            self.notify("error", f"Could not save {path}.\n\n{exc}")
            return False
        self.statusBar().showMessage(f"Saved {path}", 8000)
        return True


def sample_image() -> np.ndarray | None:
    """scikit-image's public-domain astronaut photo as BGR, or ``None`` when scikit-image is absent."""
    try:
        from skimage.data import astronaut
    except ImportError:
        return None
    return np.ascontiguousarray(astronaut()[:, :, ::-1])


def with_suffix_from_filter(path: str, chosen_filter: str, default: str) -> Path:
    """Add the suffix of the chosen dialog filter when the user typed a bare name (``(*.ply)`` -> ``.ply``)."""
    out = Path(path)
    if out.suffix:
        return out
    start = chosen_filter.find("(*.")
    suffix = chosen_filter[start + 2: chosen_filter.find(")", start)].split()[0] if start >= 0 else default
    return out.with_suffix(suffix)
