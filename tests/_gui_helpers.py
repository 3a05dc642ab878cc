"""Small things the GUI tests (and ``scripts/make_screenshots.py``) build in code.

- :func:`tiny_engine` (:func:`tests._engines.build_tiny_engine`): a random-weight ``test_tiny`` MEGA +
  tokenizer + the shipped body assets. Random weights still give different meshes per step and per sample,
  which is what pixel tests need.
- :class:`StubDetector`: people at fixed places, so tests of picking and live video do not depend on
  MediaPipe's judgement of synthetic frames (one real-detector test covers the real path).
- :func:`write_video`: an MJPG ``.avi`` (decodable by every OpenCV build) standing in for a webcam.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests._engines import build_tiny_engine as tiny_engine

__all__ = ["StubDetector", "person_keypoints", "stub_factory", "tiny_engine", "write_video"]

# A standing person facing the camera, COCO-17 order, in units of the person's height (x right, y down).
_STANDING = np.array([
    [0.00, 0.05], [-0.02, 0.03], [0.02, 0.03], [-0.05, 0.04], [0.05, 0.04],  # nose, eyes, ears
    [-0.12, 0.18], [0.12, 0.18], [-0.16, 0.34], [0.16, 0.34], [-0.17, 0.48], [0.17, 0.48],  # arms
    [-0.08, 0.52], [0.08, 0.52], [-0.09, 0.74], [0.09, 0.74], [-0.09, 0.96], [0.09, 0.96],  # legs
])


def person_keypoints(centre_x: float, top: float, height: float) -> np.ndarray:
    """(17, 3) pixel keypoints of a standing person, all confident."""
    xy = _STANDING * height + np.array([centre_x, top])
    return np.concatenate([xy, np.full((17, 1), 0.95)], axis=1)


def blank_photo_with_keypoints(folder: Path, confidence: float = 1.0) -> tuple[Path, Path]:
    """A grey ``blank.png`` and a ``keypoints.json`` (the ``infer --keypoints`` format) holding one diagonal
    person on it: for ``megaviewer infer`` runs that need no detector."""
    import json

    import cv2

    photo = folder / "blank.png"
    cv2.imwrite(str(photo), np.full((240, 320, 3), 210, np.uint8))
    person = np.zeros((17, 3))
    person[:, 0] = np.linspace(120, 200, 17)
    person[:, 1] = np.linspace(40, 220, 17)
    person[:, 2] = confidence
    keypoints = folder / "keypoints.json"
    keypoints.write_text(json.dumps([{"file_name": photo.name, "keypoints": person.ravel().tolist()}]))
    return photo, keypoints


class StubDetector:
    """Returns the same people (as the vision package's ``PersonDetection``) for any image."""

    def __init__(self, people: int = 1):
        self.people = people
        self.calls = 0

    def detect(self, image: np.ndarray) -> list:
        from megaviewer.vision.detector import PersonDetection

        self.calls += 1
        h, w = image.shape[:2]
        out = []
        for i in range(self.people):
            x = w * (i + 1) / (self.people + 1)
            height = h * (0.8 - 0.15 * i)
            kp = person_keypoints(x, h * 0.1, height)
            out.append(PersonDetection.from_keypoints(kp, (w, h), source="stub"))
        return out


def stub_factory(people: int = 1):
    """A ``detector_factory`` for ``MainWindow``: ``factory(tracking) -> StubDetector``."""
    return lambda tracking=False: StubDetector(people)


def write_video(path: Path, frames: int = 30, size: tuple[int, int] = (320, 240), fps: float = 15.0,
                image: np.ndarray | None = None) -> Path:
    """An MJPG .avi of a slowly panning picture (or a moving gradient)."""
    import cv2

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "OpenCV could not open an MJPG writer"
    base = cv2.resize(image, (w + frames * 2, h)) if image is not None else None
    for i in range(frames):
        if base is not None:
            frame = np.ascontiguousarray(base[:, 2 * i: 2 * i + w])
        else:
            yy, xx = np.mgrid[0:h, 0:w]
            frame = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, 128)], -1).astype(np.uint8)
        writer.write(frame)
    writer.release()
    return path


WAIT_MS = 30_000  # generous: CI machines share their CPUs with other jobs


def gui_marks() -> list:
    """The marks of a module of GUI tests: ``gui``, and skipped without an X display (the OpenGL viewport)."""
    import os

    import pytest

    return [pytest.mark.gui,
            pytest.mark.skipif(not os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") == "offscreen",
                               reason="needs an X display (pytest-xvfb or xvfb-run) for the OpenGL viewport")]


def open_window(qtbot, engine, settings_file: Path, detector_factory):
    """The app's main window on ``engine`` with its own settings file, shown and exposed (closed at teardown)."""
    from PySide6.QtCore import QSettings

    from megaviewer.gui.app import application, apply_theme, create_window

    apply_theme(application())
    settings = QSettings(str(settings_file), QSettings.Format.IniFormat)
    window = create_window(engine=engine, settings=settings, detector_factory=detector_factory, sample=False)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    return window


def spy_on_recover(monkeypatch, engine, key: str) -> list:
    """Record the ``key`` keyword of every ``engine.recover`` call (calls come from worker threads)."""
    import threading

    calls: list = []
    lock = threading.Lock()
    real = engine.recover

    def spy(*args, **kwargs):
        with lock:
            calls.append(kwargs.get(key))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "recover", spy)
    return calls
