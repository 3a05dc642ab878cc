"""The photo panel: the image, every detected person (COCO skeleton + box, click to pick) and the mesh overlay.

A ``QGraphicsView`` keeps the picture, the overlay layer and the skeletons as separate items, so a live
frame replaces one pixmap and a few lines instead of repainting everything, and clicks map to image pixels.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
)

from megaviewer.app.pipeline import Person
from megaviewer.body.keypoints import COCO17_SKELETON

SELECTED = QColor("#4fc3f7")
OTHER = QColor("#b0bac5")
LEFT_LIMB = QColor("#ffb74d")
KEYPOINT_MIN_CONF = 0.2


def bgr_to_qimage(image: np.ndarray) -> QImage:
    """BGR (H, W, 3) or BGRA-free RGBA (H, W, 4) uint8 -> a QImage that owns its pixels."""
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    if image.ndim == 2:
        return QImage(image.data, width, height, width, QImage.Format.Format_Grayscale8).copy()
    if image.shape[2] == 4:
        return QImage(image.data, width, height, 4 * width, QImage.Format.Format_RGBA8888).copy()
    return QImage(image.data, width, height, 3 * width, QImage.Format.Format_BGR888).copy()


class ImageView(QGraphicsView):
    """Shows a BGR image with people and an optional RGBA overlay; ``personClicked(index)`` on a click."""

    personClicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.SmoothPixmapTransform)
        self.setBackgroundBrush(QColor("#10151b"))
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setAcceptDrops(False)  # the main window handles drops
        self.viewport().setAcceptDrops(False)
        self.setMinimumSize(240, 180)
        self._photo = QGraphicsPixmapItem()
        self._photo.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._overlay = QGraphicsPixmapItem()
        self._overlay.setZValue(1)
        self._overlay.setOpacity(0.72)
        self.scene().addItem(self._photo)
        self.scene().addItem(self._overlay)
        self._people_items: list[QGraphicsItem] = []
        self._people: list[Person] = []
        self._message = QGraphicsSimpleTextItem()
        self._message.setBrush(QBrush(QColor("#dfe6ee")))
        self._message.setZValue(3)
        self.scene().addItem(self._message)
        self._size = (0, 0)

    # ---------------------------------------------------------------------------------------- content
    @property
    def image_size(self) -> tuple[int, int]:
        return self._size

    def set_image(self, image: np.ndarray | None) -> None:
        if image is None:
            self._photo.setPixmap(QPixmap())
            self._size = (0, 0)
        else:
            new_size = (int(image.shape[1]), int(image.shape[0]))
            self._photo.setPixmap(QPixmap.fromImage(bgr_to_qimage(image)))
            if new_size != self._size:
                self._size = new_size
                self.scene().setSceneRect(QRectF(0, 0, *new_size))
                self._fit()
        self.set_overlay(None)

    def set_overlay(self, rgba: np.ndarray | None, scale: float = 1.0) -> None:
        """An RGBA layer over the photo; ``scale`` maps its pixels to image pixels (drawn smaller for speed)."""
        self._overlay.setVisible(rgba is not None)
        if rgba is not None:
            self._overlay.setPixmap(QPixmap.fromImage(bgr_to_qimage(rgba)))
            self._overlay.setScale(scale)

    def set_message(self, text: str) -> None:
        """A short note drawn on the picture (e.g. "No person found")."""
        self._message.setText(text)
        font = QFont()
        font.setPointSizeF(max(10.0, self._size[1] / 32 if self._size[1] else 12.0))
        self._message.setFont(font)
        self._message.setPos(12, 8)
        self._message.setVisible(bool(text))

    def set_people(self, people: list[Person], selected: int) -> None:
        for item in self._people_items:
            self.scene().removeItem(item)
        self._people_items = []
        self._people = list(people)
        scale = max(self._size) / 640 if max(self._size) else 1.0
        for index, person in enumerate(people):
            self._draw_person(person, index, index == selected, scale)

    def _draw_person(self, person: Person, index: int, selected: bool, scale: float) -> None:
        colour = SELECTED if selected else OTHER
        x0, y0, x1, y1 = person.box
        box_pen = QPen(colour, (2.5 if selected else 1.5) * scale)
        if not selected:
            box_pen.setStyle(Qt.PenStyle.DashLine)
        box = QGraphicsRectItem(QRectF(x0, y0, x1 - x0, y1 - y0))
        box.setPen(box_pen)
        self._add(box, 2)
        label = QGraphicsSimpleTextItem(f"{index + 1}")
        font = QFont()
        font.setBold(True)
        font.setPointSizeF(11 * scale)
        label.setFont(font)
        label.setBrush(QBrush(colour))
        label.setPos(x0 + 4 * scale, y0 + 2 * scale)
        self._add(label, 2)
        kp = person.keypoints
        for a, b in COCO17_SKELETON:
            if kp[a, 2] < KEYPOINT_MIN_CONF or kp[b, 2] < KEYPOINT_MIN_CONF:
                continue
            left = a in (5, 7, 9, 11, 13, 15) and b in (7, 9, 11, 13, 15)
            pen = QPen(LEFT_LIMB if (left and selected) else colour, (3.0 if selected else 2.0) * scale)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            line = self.scene().addLine(kp[a, 0], kp[a, 1], kp[b, 0], kp[b, 1], pen)
            self._people_items.append(line)
            line.setZValue(2)
        radius = (3.5 if selected else 2.5) * scale
        for x, y, conf in kp:
            if conf >= KEYPOINT_MIN_CONF:
                dot = QGraphicsEllipseItem(x - radius, y - radius, 2 * radius, 2 * radius)
                dot.setBrush(QBrush(QColor("#ffffff") if selected else colour))
                dot.setPen(QPen(Qt.PenStyle.NoPen))
                self._add(dot, 2)

    def _add(self, item: QGraphicsItem, z: float) -> None:
        item.setZValue(z)
        self.scene().addItem(item)
        self._people_items.append(item)

    # ------------------------------------------------------------------------------------ interaction
    def person_at(self, point: QPointF) -> int:
        """Index of the smallest box containing an image point (a person in front of a bigger one wins)."""
        hits = [(abs((p.box[2] - p.box[0]) * (p.box[3] - p.box[1])), i) for i, p in enumerate(self._people)
                if p.box[0] <= point.x() <= p.box[2] and p.box[1] <= point.y() <= p.box[3]]
        return min(hits)[1] if hits else -1

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        index = self.person_at(self.mapToScene(event.position().toPoint()))
        if index >= 0:
            self.personClicked.emit(index)
        super().mousePressEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self._size[0] > 0:
            self.fitInView(self.scene().sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
