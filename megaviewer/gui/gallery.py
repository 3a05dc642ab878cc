"""The hypothesis gallery: one thumbnail per sampled mesh, plus the mean and the deterministic reference.

Thumbnails come from the software rasteriser (:mod:`megaviewer.render.raster`): Q small images cost a few
milliseconds each and need no second GL context. Each hypothesis is labelled with its mean distance to the
mean mesh, so the outliers among the samples are visible at a glance.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem

from megaviewer.gui.image_view import bgr_to_qimage
from megaviewer.gui.scene import BODY_RGB, REFERENCE_RGB
from megaviewer.gui.state import MEAN, REFERENCE
from megaviewer.render.raster import thumbnail_rgba

THUMB = (72, 112)
MEAN_RGB = np.array([150, 220, 170], np.uint8)


class HypothesisGallery(QListWidget):
    """Icon list of hypotheses; ``sampleSelected(index)`` with ``MEAN``/``REFERENCE`` for the extra entries."""

    sampleSelected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(*THUMB))
        self.setGridSize(QSize(THUMB[0] + 34, THUMB[1] + 34))  # room for "#12 · 105 mm"
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWrapping(True)
        self.setUniformItemSizes(True)
        self.setSpacing(2)
        self.setMinimumHeight(THUMB[1] + 44)
        self.setToolTip("Sampled hypotheses: click one to show it, with its spread in the heatmap")
        self._indices: list[int] = []
        self.currentRowChanged.connect(self._row_changed)

    def _row_changed(self, row: int) -> None:
        if 0 <= row < len(self._indices):
            self.sampleSelected.emit(self._indices[row])

    def set_meshes(self, samples: list[np.ndarray], faces: np.ndarray, mean: np.ndarray | None = None,
                   reference: np.ndarray | None = None, selected: int = 0) -> None:
        """Fill from display-frame working meshes; ``mean``/``reference`` add their own entries first."""
        self.blockSignals(True)
        self.clear()
        self._indices = []
        entries: list[tuple[int, str, np.ndarray, np.ndarray, str]] = []
        if reference is not None:
            entries.append((REFERENCE, "Determ.", reference, REFERENCE_RGB, "The deterministic (one-pass) mesh"))
        if mean is not None and len(samples) > 1:
            entries.append((MEAN, "Mean", mean, MEAN_RGB, "The mean of the Q hypotheses"))
        for q, verts in enumerate(samples):
            if mean is not None and len(samples) > 1:
                spread = float(np.linalg.norm(verts - mean, axis=1).mean() * 1000)
                label, tip = f"#{q + 1} · {spread:.0f} mm", f"Hypothesis {q + 1}: {spread:.1f} mm from the mean"
            else:
                label, tip = f"#{q + 1}", f"Hypothesis {q + 1}"
            entries.append((q, label, verts, BODY_RGB, tip))
        for index, label, verts, colour, tip in entries:
            rgba = thumbnail_rgba(verts, faces, THUMB, colour)
            item = QListWidgetItem(QIcon(QPixmap.fromImage(bgr_to_qimage(rgba))), label)
            item.setToolTip(tip)
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.addItem(item)
            self._indices.append(index)
        self.blockSignals(False)
        self.select(selected)

    def select(self, index: int) -> None:
        """Highlight an entry without emitting ``sampleSelected`` (the state already knows)."""
        if index in self._indices:
            self.blockSignals(True)
            self.setCurrentRow(self._indices.index(index))
            self.blockSignals(False)

    @property
    def indices(self) -> list[int]:
        return list(self._indices)
