"""The "Fit camera to keypoints" checkbox, driven for real under Xvfb: what the engine receives and what persists.

A spy around the tiny engine's ``recover`` records the ``fit_camera`` argument of every call (photo recovery
and live video); the Result box must say whether the fit ran. pytest-xvfb provides the display; never run
these with ``QT_QPA_PLATFORM=offscreen`` (the GL viewport cannot exist there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests._gui_helpers import WAIT_MS, gui_marks, open_window, spy_on_recover, stub_factory, tiny_engine, write_video

pytestmark = gui_marks()


@pytest.fixture
def spied_engine(monkeypatch):
    """A tiny engine whose ``recover`` records each call's ``fit_camera``."""
    engine = tiny_engine(seed=0)
    return engine, spy_on_recover(monkeypatch, engine, "fit_camera")


@pytest.fixture
def make_window(qtbot, tmp_path):
    def make(engine, settings_path: Path | None = None):
        return open_window(qtbot, engine, settings_path or tmp_path / "settings.ini", stub_factory(1))

    return make


def photo() -> np.ndarray:
    yy, xx = np.mgrid[0:240, 0:320]
    return np.stack([xx % 256, yy % 256, np.full_like(xx, 128)], -1).astype(np.uint8)


def _image_view_pixels(window, qtbot) -> np.ndarray:
    """What the image panel shows now (photo + mesh overlay), as an (H, W, 3) uint8 array."""
    from PySide6.QtGui import QImage

    qtbot.wait(200)  # let the overlay repaint
    image = window.image_view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    data = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    return data.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].reshape(
        image.height(), image.width(), 3).copy()


def test_fit_camera_checkbox_reaches_the_engine_and_persists(make_window, spied_engine, tmp_path, qtbot):
    engine, calls = spied_engine
    ini = tmp_path / "persist.ini"
    window = make_window(engine, settings_path=ini)
    box = window.controls.fit_camera
    assert box.isChecked() and window.session.settings.fit_camera  # on by default
    assert "keypoints" in box.toolTip() and "network's own camera" in box.toolTip()

    # Photo recovery: checked -> fit_camera=True, and the Result box reports the fit.
    window.session.show_image(photo())
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=WAIT_MS)
    assert calls and calls[-1] is True
    assert window.state.result.camera_fit is not None
    assert "camera fit: 1/1 hypotheses" in window.controls.summary.text()
    assert "of the box" in window.controls.summary.text()

    fitted_pixels = _image_view_pixels(window, qtbot)

    # Unchecked -> a debounced re-run with fit_camera=False; the Result box says the fit did not run.
    first, seen = window.state.result, len(calls)
    box.setChecked(False)
    assert window.controls.settings().fit_camera is False and window.session.settings.fit_camera is False
    qtbot.waitUntil(lambda: window.state.result is not first, timeout=WAIT_MS)
    assert calls[seen:] and all(c is False for c in calls[seen:])
    assert window.state.result.camera_fit is None and window.state.result.network_cam is None
    assert "camera fit: not run" in window.controls.summary.text()
    # ... and the mesh drawn over the photo moves: the overlay's pixels change.
    raw_pixels = _image_view_pixels(window, qtbot)
    assert raw_pixels.shape == fitted_pixels.shape
    assert (np.abs(raw_pixels.astype(int) - fitted_pixels.astype(int)).max(axis=-1) > 30).mean() > 0.002

    # Stochastic runs (result and deterministic reference) follow the checkbox too.
    seen = len(calls)
    window.controls.stochastic.setChecked(True)
    qtbot.waitUntil(lambda: window.state.result.mode == "stochastic", timeout=WAIT_MS)
    assert len(calls) - seen >= 2 and all(c is False for c in calls[seen:])

    # Live video: read per frame, so toggling applies to the running stream.
    window.open_path(write_video(tmp_path / "clip.avi", frames=40, fps=25.0))
    qtbot.waitUntil(lambda: window.session.live is not None and window.session.live.processed >= 2,
                    timeout=WAIT_MS)
    live_start = len(calls)
    qtbot.waitUntil(lambda: len(calls) > live_start, timeout=WAIT_MS)
    assert calls[-1] is False
    box.setChecked(True)
    qtbot.waitUntil(lambda: calls[-1] is True, timeout=WAIT_MS)
    box.setChecked(False)
    window.actions_by_name["live_stop"].trigger()
    assert window.session.live is None
    window.close()

    # The (non-default) setting survives a restart and reaches the engine of the new window.
    again = make_window(engine, settings_path=ini)
    assert not again.controls.fit_camera.isChecked() and again.session.settings.fit_camera is False
    seen = len(calls)
    again.session.show_image(photo())
    qtbot.waitUntil(lambda: again.state.result is not None, timeout=WAIT_MS)
    assert calls[seen:] and all(c is False for c in calls[seen:])


def test_refine_checkbox_reaches_photo_recovery_and_live_skips_it(make_window, monkeypatch, tmp_path, qtbot):
    engine = tiny_engine(seed=0)
    calls = spy_on_recover(monkeypatch, engine, "refine")
    window = make_window(engine, settings_path=tmp_path / "refine.ini")
    box = window.controls.refine
    assert box.isChecked() and box.isEnabled() and window.session.settings.refine  # on by default
    window.session.show_image(photo())
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=WAIT_MS)
    assert calls[-1] is True and window.state.result.refinement is not None

    first, seen = window.state.result, len(calls)
    box.setChecked(False)
    qtbot.waitUntil(lambda: window.state.result is not first, timeout=WAIT_MS)
    assert calls[seen:] and all(c is False for c in calls[seen:]) and window.state.result.refinement is None
    second = window.state.result
    box.setChecked(True)
    qtbot.waitUntil(lambda: window.state.result is not second and window.state.result.refinement is not None,
                    timeout=WAIT_MS)

    window.open_path(write_video(tmp_path / "clip.avi", frames=40, fps=25.0))
    qtbot.waitUntil(lambda: window.session.live is not None and window.session.live.processed >= 2,
                    timeout=WAIT_MS)
    live_start = len(calls)
    qtbot.waitUntil(lambda: len(calls) > live_start + 1, timeout=WAIT_MS)
    assert all(c is False for c in calls[live_start:])  # the stream keeps its frame rate
    window.actions_by_name["live_stop"].trigger()
    window.controls.fit_camera.setChecked(False)
    assert not box.isEnabled()  # the body fit starts from the camera fit
    window.close()


def test_before_fit_view_shows_the_network_body_in_3d_and_on_the_photo(make_window, qtbot):
    """View > Show body before the fit: a ghost of the unrefined body in the viewport, that body on the photo."""
    from tests._engines import trained_engine

    window = make_window(trained_engine())  # a random-weight body lands kilometres away and the fit leaves it
    action = window.actions_by_name["before_fit"]
    assert not action.isEnabled()  # nothing recovered yet
    window.session.show_image(photo())
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=WAIT_MS)
    result = window.state.result
    assert result.refinement is not None and result.before_fit is not None and action.isEnabled()
    assert not np.allclose(result.before_fit.camera_vertices(0).numpy(), result.camera_vertices[0].numpy())
    after_view = window.viewport.screenshot().astype(int)
    after_photo = _image_view_pixels(window, qtbot)

    action.trigger()
    assert window.state.before_fit and "before the fit" in window.presenter.caption()
    qtbot.wait(200)
    before_view = window.viewport.screenshot().astype(int)
    assert (np.abs(before_view - after_view).max(axis=-1) > 8).mean() > 0.002  # the ghost is drawn
    before_photo = _image_view_pixels(window, qtbot)
    assert (np.abs(before_photo.astype(int) - after_photo.astype(int)).max(axis=-1) > 30).mean() > 0.001

    action.trigger()  # off again: the fitted body is back on the photo
    back = _image_view_pixels(window, qtbot)
    assert (np.abs(back.astype(int) - after_photo.astype(int)).max(axis=-1) > 30).mean() < 0.0005


def test_expected_codes_checkbox_reaches_recovery_and_changes_the_drawn_body(make_window, monkeypatch, qtbot):
    """Mode > Expected codes (on by default): unchecked, the engine decodes the argmax codes and the viewport
    draws another body; the tokens stay the same."""
    from tests._engines import trained_engine

    engine = trained_engine()
    calls = spy_on_recover(monkeypatch, engine, "expected_codes")
    window = make_window(engine)
    box = window.controls.expected_codes
    assert box.isChecked() and window.session.settings.expected_codes
    window.session.show_image(photo())
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=WAIT_MS)
    assert calls[-1] is True
    first = window.state.result
    qtbot.wait(200)
    expected_view = window.viewport.screenshot().astype(int)

    seen = len(calls)
    box.setChecked(False)
    qtbot.waitUntil(lambda: window.state.result is not first, timeout=WAIT_MS)
    assert calls[seen:] and all(c is False for c in calls[seen:]) and not window.session.settings.expected_codes
    second = window.state.result
    assert torch.equal(second.tokens, first.tokens)
    assert not np.allclose(second.canonical_vertices.numpy(), first.canonical_vertices.numpy(), atol=1e-3)
    qtbot.wait(200)
    argmax_view = window.viewport.screenshot().astype(int)
    assert (np.abs(argmax_view - expected_view).max(axis=-1) > 8).mean() > 0.002  # another body is drawn
    window.close()
