"""File actions of the main window: open (dialog, drop, recent, command line), export and screenshots.

A mixin so ``main_window.py`` stays about layout and wiring; it expects the window's ``session``, ``state``,
``presenter``, ``viewport``, ``live_panel``, ``qsettings``, ``recent_menu`` and ``notify``.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from megaviewer.gui import exporting

IMAGE_FILTER = ("Images and videos (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.webp *.mp4 *.avi *.mov *.mkv *.webm);;"
                "Images (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.webp);;All files (*)")
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
MESH_FILTER = "Wavefront OBJ (*.obj);;Stanford PLY (*.ply);;glTF binary (*.glb)"
MAX_RECENT = 10


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

    def load_sample(self) -> None:
        image = exporting.sample_image()
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

    def export_mesh_dialog(self) -> None:
        start = str(Path(self.last_folder or ".") / f"{exporting.default_stem(self.state)}.obj")
        path, chosen = QFileDialog.getSaveFileName(self, "Export mesh", start,
                                                   MESH_FILTER)
        if path:
            self.export_mesh(exporting.with_suffix_from_filter(path, chosen, ".obj"))

    def export_mesh(self, path: str | Path) -> None:
        """Write the mesh on screen (selected hypothesis / mean / reference, at the shown step)."""
        path = Path(path)
        vertices, faces = exporting.shown_mesh(self.presenter)
        self.session.export("mesh", path, lambda: exporting.write_mesh(path, vertices, faces))

    def export_npz_dialog(self) -> None:
        start = str(Path(self.last_folder or ".") / f"{exporting.default_stem(self.state)}.npz")
        path, chosen = QFileDialog.getSaveFileName(self, "Export result", start, "NumPy archive (*.npz)")
        if path:
            self.export_npz(exporting.with_suffix_from_filter(path, chosen, ".npz"))

    def export_npz(self, path: str | Path) -> None:
        path, state = Path(path), self.state
        result, person = state.result, state.current_person
        size = (state.image.shape[1], state.image.shape[0]) if state.image is not None else None
        detection = person.source if person is not None and hasattr(person.source, "box_center") else None
        self.session.export("npz", path, lambda: exporting.write_npz(path, result, state.person, detection, size))

    def screenshot_dialog(self) -> None:
        start = str(Path(self.last_folder or ".") / f"{exporting.default_stem(self.state)}.png")
        path, chosen = QFileDialog.getSaveFileName(self, "Save screenshot", start, "PNG image (*.png)")
        if path:
            self.save_screenshot(exporting.with_suffix_from_filter(path, chosen, ".png"))

    def save_screenshot(self, path: str | Path) -> bool:
        """Save the 3D view; on an unwritable path say so (GL pixels must be read on the UI thread)."""
        try:
            exporting.write_png(Path(path), self.viewport.screenshot())
        except OSError as exc:
            self.notify("error", f"Could not save {path}.\n\n{exc}")
            return False
        self.statusBar().showMessage(f"Saved {path}", 8000)
        return True
