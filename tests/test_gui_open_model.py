"""File > Open model…, driven for real under Xvfb: another checkpoint replaces the window's engine off the UI thread,
the photo is recovered again with it, the status bar and the Result box say which model and body, the folder is
remembered for the next start, and folders that are no model leave the old one with a message.

The checkpoints are tiny random-weight ones (``tests._engines.save_tiny_checkpoint``); the folder dialog is
patched to answer with a folder. pytest-xvfb provides the display; never run these with
``QT_QPA_PLATFORM=offscreen`` (the GL viewport cannot exist there).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from megaviewer.paths import tokenizer_dir
from tests._engines import save_tiny_checkpoint, trained_model_available
from tests._gui_helpers import WAIT_MS, gui_marks, open_window, stub_factory, tiny_engine

pytestmark = gui_marks()


@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("models") / "photo_reader", ("image", "keypoints"), seed=2)


@pytest.fixture(scope="module")
def body() -> str:
    return json.loads((tokenizer_dir() / "config.json").read_text())["body"]


@pytest.fixture
def make_window(qtbot, tmp_path):
    def make(engine, settings_path: Path | None = None):
        return open_window(qtbot, engine, settings_path or tmp_path / "settings.ini", stub_factory(1))

    return make


@pytest.fixture
def choose_folder(monkeypatch):
    """Patch the folder dialog: ``choose_folder(path)`` makes it answer ``path`` and records its calls."""
    from PySide6.QtWidgets import QFileDialog

    asked: list[tuple] = []

    def choose(folder: Path | str) -> list[tuple]:
        monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                            lambda *args, **kwargs: asked.append(args) or str(folder))
        return asked

    return choose


def photo() -> np.ndarray:
    yy, xx = np.mgrid[0:240, 0:320]
    return np.stack([xx % 256, yy % 256, np.full_like(xx, 128)], -1).astype(np.uint8)


def test_open_model_replaces_the_engine_and_recovers_again(make_window, choose_folder, image_model, body, qtbot,
                                                           tmp_path, monkeypatch):
    import threading

    from PySide6.QtCore import QSettings

    from megaviewer.engine import Engine

    crops: list[tuple[str, tuple | None]] = []  # (model, shape of the image crop it got), from worker threads
    lock, real = threading.Lock(), Engine.recover

    def spy(self, *args, **kwargs):
        with lock:
            crops.append((self.name, tuple(kwargs["image"].shape) if "image" in kwargs else None))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "recover", spy)
    old = tiny_engine(seed=0)
    ini = tmp_path / "open.ini"
    window = make_window(old, settings_path=ini)
    action = window.actions_by_name["open_model"]
    file_menu = window.menuBar().actions()[0].menu()
    assert action in file_menu.actions() and "Ctrl+Shift+M" in action.toolTip()
    assert window.model_label.text().startswith(f"model: test_tiny (keypoints, {body}) · cpu")
    window.session.show_image(photo())
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=WAIT_MS)
    assert f"model: test_tiny (keypoints, {body})" in window.controls.summary.text()
    first = window.state.result

    asked = choose_folder(image_model)
    action.trigger()
    assert len(asked) == 1
    qtbot.waitUntil(lambda: window.session.engine is not old, timeout=WAIT_MS)
    new = window.session.engine
    label = f"photo_reader (image+keypoints, {body})"
    assert new.label() == label and new.device == old.device
    assert window.model_label.text().startswith(f"model: {label} · cpu")
    # the photo on screen is recovered again, by the new model, which read the person's crop of it
    qtbot.waitUntil(lambda: window.state.result is not first and window.state.result.model == label, timeout=WAIT_MS)
    assert f"model: {label}" in window.controls.summary.text()
    assert ("test_tiny", None) in crops and ("photo_reader", (3, 64, 64)) in crops
    assert all(shape == (3, 64, 64) for name, shape in crops if name == "photo_reader")
    assert window.last_message[0] == "info" and "photo_reader" in window.last_message[1]
    window.close()
    assert QSettings(str(ini), QSettings.Format.IniFormat).value("model/folder") == str(image_model)


def _empty_folder(folder: Path) -> Path:
    folder.mkdir()
    return folder


def _pickle_folder(folder: Path) -> Path:
    """A valid config beside a PyTorch pickle under the trusted weights name."""
    save_tiny_checkpoint(folder, ("keypoints",))
    torch.save({"weights": torch.zeros(2)}, folder / "model.safetensors")
    return folder


@pytest.mark.parametrize("bad", ["empty", "other_tokenizer", "pickle"])
def test_a_folder_that_is_no_model_keeps_the_old_one(make_window, choose_folder, image_model, bad, qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    folder = {"empty": _empty_folder,
              "other_tokenizer": lambda p: save_tiny_checkpoint(p, ("keypoints",), vocab=37),
              "pickle": _pickle_folder}[bad](tmp_path / bad)
    expected = {"empty": "no config.json", "other_tokenizer": "37 codes", "pickle": "pickle"}[bad]
    ini = tmp_path / "bad.ini"
    QSettings(str(ini), QSettings.Format.IniFormat).setValue("model/folder", str(image_model))
    old = tiny_engine(seed=0)
    window = make_window(old, settings_path=ini)
    label = window.model_label.text()
    window.session.show_image(photo())
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=WAIT_MS)
    shown = window.state.result

    choose_folder(folder)
    window.actions_by_name["open_model"].trigger()
    qtbot.waitUntil(lambda: window.last_message is not None and window.last_message[0] == "error", timeout=WAIT_MS)
    text = window.last_message[1]
    assert expected in text and "Still using test_tiny (keypoints" in text
    assert window.session.engine is old and window.model_label.text() == label
    assert window.state.result is shown  # nothing was recovered again
    assert window.remembered_model == str(image_model)  # the remembered folder is not the bad one


def _start_remembering(make_window, qtbot, ini, folder):
    """A window started with ``folder`` as the remembered model, once its start-up model has loaded."""
    from PySide6.QtCore import QSettings

    QSettings(str(ini), QSettings.Format.IniFormat).setValue("model/folder", str(folder))
    window = make_window(None, settings_path=ini)
    window.load_start_model()
    qtbot.waitUntil(lambda: window.session.engine is not None, timeout=WAIT_MS)
    return window


def test_start_up_restores_the_remembered_model_only_if_it_loads(make_window, image_model, body, qtbot, tmp_path):
    ini = tmp_path / "start.ini"
    window = _start_remembering(make_window, qtbot, ini, image_model)
    assert window.session.engine.name == "photo_reader" and "image+keypoints" in window.model_label.text()
    window.close()

    if not trained_model_available():
        pytest.skip("the shipped default model (resources/default) has not landed")
    again = _start_remembering(make_window, qtbot, ini, tmp_path / "moved_away")
    assert again.session.engine.name == "default" and "model: default (" in again.model_label.text()
    level, text = again.last_message
    assert level == "info" and "could not be loaded" in text and "moved_away" in text  # a status line, no dialog
    assert again.statusBar().currentMessage().startswith("The last model could not be loaded")
    assert again.remembered_model == ""  # the next start goes straight to the default


@pytest.fixture(scope="module")
def dataset_model(tmp_path_factory) -> Path:
    """A model trained (two steps) on a dataset folder of rendered people by ``megaviewer-train train --data``."""
    from training.cli import main
    from training.data.demo_dataset import write_demo_dataset

    root = tmp_path_factory.mktemp("dataset_model")
    data = write_demo_dataset(root / "data", 6, seed=5).parent
    assert main(["train", "--data", str(data), "--out", str(root / "my_photos"), "--preset", "test_tiny",
                 "--backbone", "resnet18", "--image-size", "64", "--steps", "2", "--batch-size", "2", "--warmup", "1",
                 "--workers", "0", "--no-progress"]) == 0
    return root / "my_photos" / "final"


def test_open_a_model_trained_on_a_dataset(make_window, choose_folder, dataset_model, qtbot):
    window = make_window(tiny_engine(seed=0))
    window.session.show_image(photo())
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=WAIT_MS)
    choose_folder(dataset_model)
    window.actions_by_name["open_model"].trigger()
    label = "my_photos (image, anny)"
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.result.model == label, timeout=WAIT_MS)
    assert window.session.engine.label() == label and window.model_label.text().startswith(f"model: {label}")
    assert f"model: {label}" in window.controls.summary.text()
    image = window.viewport.screenshot()  # the new body is drawn: far more than the background's colours
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50
