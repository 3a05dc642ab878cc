"""The desktop app, driven for real: the main window with a tiny random-weight engine under Xvfb.

What is checked is what a user sees: real photos and videos go in, the viewport's rendered PIXELS change
between steps, hypotheses and the heatmap, exports re-read correctly, failures become messages, and the
event loop keeps ticking while recovery runs. pytest-xvfb provides the display; never run these with
``QT_QPA_PLATFORM=offscreen`` (the GL viewport cannot exist there).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent

from tests._gui_helpers import StubDetector, stub_factory, tiny_engine, write_video

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(not os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") == "offscreen",
                       reason="needs an X display (pytest-xvfb or xvfb-run) for the OpenGL viewport"),
]

WAIT_MS = 30_000  # generous: CI machines share their CPUs with other jobs


@pytest.fixture(scope="module")
def engine():
    return tiny_engine(seed=0, unconditional=True)


@pytest.fixture(scope="module")
def astronaut_bgr() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut()[:, :, ::-1])


@pytest.fixture
def make_window(qtbot, tmp_path):
    from megaviewer.gui.app import application, apply_theme, create_window

    apply_theme(application())

    def make(engine, detector_factory="stub", settings_path: Path | None = None, size=(1280, 800)):
        """``detector_factory``: "stub" (one fixed person), ``None`` (the real MediaPipe detector) or a factory."""
        detector_factory = stub_factory(1) if detector_factory == "stub" else detector_factory
        settings = QSettings(str(settings_path or tmp_path / "settings.ini"), QSettings.Format.IniFormat)
        window = create_window(engine=engine, settings=settings, detector_factory=detector_factory, sample=False)
        qtbot.addWidget(window)  # closed (settings saved, threads stopped) at teardown
        window.resize(*size)
        window.show()
        qtbot.waitExposed(window)
        return window

    return make


def shot(window) -> np.ndarray:
    img = window.viewport.screenshot()
    assert img[..., :3].std() > 10 and len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 50, "blank view"
    return img.astype(np.int16)


def differ(a: np.ndarray, b: np.ndarray, min_fraction: float = 0.002) -> bool:
    assert a.shape == b.shape, f"the viewport changed size between screenshots: {a.shape} vs {b.shape}"
    return float((np.abs(a - b).max(axis=-1) > 8).mean()) > min_fraction


def wait_result(qtbot, window, **expected) -> None:
    def ok() -> bool:
        r = window.state.result
        return r is not None and all(getattr(r, k) == v for k, v in expected.items())

    qtbot.waitUntil(ok, timeout=WAIT_MS)


def go_stochastic(qtbot, window, q: int = 4, steps: int = 3) -> None:
    """Through the real controls: Q, T, then the mode switch (a debounced recover follows)."""
    window.controls.samples.setValue(q)
    window.controls.steps.setValue(steps)
    window.controls.stochastic.setChecked(True)
    wait_result(qtbot, window, mode="stochastic", num_samples=q)
    assert window.state.num_steps == steps


def test_photo_modes_steps_hypotheses_heatmap(make_window, engine, astronaut_bgr, tmp_path, qtbot):
    """Real photo + real detector; every view the paper shows must change the rendered pixels."""
    from megaviewer.gui.state import MEAN, REFERENCE

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut_bgr)
    window = make_window(engine, detector_factory=None)  # the shipped MediaPipe detector
    window.open_path(photo)
    wait_result(qtbot, window, mode="deterministic")
    assert window.state.image_path == photo and window.image_view.image_size == (512, 512)
    assert len(window.state.people) >= 1 and window.people_list.count() == len(window.state.people)
    assert window.image_view._overlay.isVisible()  # the mesh projected on the photo
    deterministic = shot(window)

    go_stochastic(qtbot, window, q=4, steps=3)
    assert window.gallery.count() == 6  # deterministic reference + mean + 4 hypotheses
    final = shot(window)
    assert differ(final, deterministic)

    window.timeline.slider.setValue(0)
    assert window.state.step == 0
    step0 = shot(window)
    window.timeline.slider.setValue(1)
    step1 = shot(window)
    window.timeline.slider.setValue(3)
    assert window.state.step is None and "final" in window.timeline.position.text()
    assert differ(step0, step1) and differ(step1, final)
    orange = (step0[..., 0] > 200) & (step0[..., 1] > 100) & (step0[..., 1] < 190) & (step0[..., 2] < 110)
    assert orange.sum() > 0  # regions revealed at step 1 are highlighted; the rest are still grey

    window.gallery.setCurrentRow(window.gallery.indices.index(1))
    assert window.state.sample == 1
    hyp1 = shot(window)
    window.actions_by_name["sample_next"].trigger()
    assert window.state.sample == 2
    assert differ(hyp1, shot(window))
    window.actions_by_name["show_mean"].trigger()
    assert window.state.sample == MEAN and "Mean" in window.presenter.caption()
    window.actions_by_name["show_reference"].trigger()
    assert window.state.sample == REFERENCE
    window.actions_by_name["sample_next"].trigger()

    plain = shot(window)
    window.actions_by_name["heatmap"].trigger()
    assert window.state.heatmap and window.viewport.plotter.scalar_bars
    heat = shot(window)
    assert differ(plain, heat, 0.01)
    window.actions_by_name["heatmap"].trigger()
    assert not window.state.heatmap and not window.viewport.plotter.scalar_bars
    window.actions_by_name["compare"].trigger()
    assert window.state.compare and "ghost: deterministic" in window.presenter.caption()
    assert differ(plain, shot(window))  # the deterministic mesh drawn as a translucent ghost
    window.actions_by_name["compare"].trigger()

    window.actions_by_name["overlay"].trigger()
    assert not window.image_view._overlay.isVisible()
    window.timeline.set_playing(True)
    qtbot.waitUntil(lambda: window.state.step is not None, timeout=5000)
    window.timeline.set_playing(False)


def test_export_files_and_unwritable_destination(make_window, engine, tmp_path, qtbot):
    window = make_window(engine)
    window.load_sample()
    wait_result(qtbot, window, mode="deterministic")
    go_stochastic(qtbot, window, q=4, steps=3)
    window.state.select_sample(2)
    result = window.state.result
    expected, faces = window.presenter.shown_mesh()
    for name in ("h3.obj", "h3.ply", "h3.glb", "all.npz"):
        path = tmp_path / name
        (window.export_npz if name.endswith(".npz") else window.export_mesh)(path)
        qtbot.waitUntil(path.exists, timeout=WAIT_MS)
    lines = (tmp_path / "h3.obj").read_text().splitlines()
    vertices = np.array([[float(x) for x in ln.split()[1:4]] for ln in lines if ln.startswith("v ")])
    tris = [ln for ln in lines if ln.startswith("f ")]
    assert vertices.shape == expected.shape and len(tris) == len(faces)
    assert np.allclose(vertices, expected, atol=1e-5)  # exactly the mesh on screen
    import trimesh

    assert len(trimesh.load(tmp_path / "h3.ply").vertices) == len(expected)
    assert len(trimesh.load(tmp_path / "h3.glb", force="mesh").faces) == len(faces)
    with np.load(tmp_path / "all.npz") as data:
        assert data["tokens"].shape == (4, engine.tokenizer.num_tokens) and data["camera_vertices"].shape[0] == 4

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file, so nothing can be written below it (even as root)")
    window.export_mesh(blocker / "mesh.obj")
    qtbot.waitUntil(lambda: window.last_message is not None, timeout=WAIT_MS)
    level, text = window.last_message
    assert level == "error" and "mesh.obj" in text and "kept" in text
    assert window.state.result is result and window.viewport.has_mesh  # nothing lost

    assert window.save_screenshot(tmp_path / "view.png")
    assert cv2.imread(str(tmp_path / "view.png")).std() > 10
    window.last_message = None
    assert not window.save_screenshot(blocker / "view.png")
    assert window.last_message[0] == "error"


def test_cli_and_app_recover_the_same_meshes(make_window, engine, astronaut_bgr, tmp_path, qtbot, monkeypatch,
                                            capsys):
    """One photo through ``megaviewer infer`` and through the app (both with the real detector): both call the
    one recovery function, and the app's NPZ export has the CLI's name and the CLI's meshes."""
    from megaviewer.app import pipeline
    from megaviewer.cli import main

    calls: list[str] = []
    real = pipeline.recover_person

    def spy(*args, **kwargs):
        calls.append("call")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "recover_person", spy)
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut_bgr)
    cli_out = tmp_path / "cli"
    assert main(["infer", str(photo), "--out", str(cli_out), "--mode", "stochastic", "--samples", "3", "--steps", "2",
                 "--formats", "npz", "--quiet"], engine=engine) == 0, capsys.readouterr()
    assert len(calls) == 1

    window = make_window(engine, detector_factory=None)
    window.open_path(photo)
    wait_result(qtbot, window, mode="deterministic")
    go_stochastic(qtbot, window, q=3, steps=2)
    assert len(calls) >= 3  # the app's deterministic and stochastic runs went through the same function
    app_out = tmp_path / "app"
    app_out.mkdir()
    name = window.default_name("npz")
    window.export_npz(app_out / name)
    qtbot.waitUntil((app_out / name).exists, timeout=WAIT_MS)
    assert [p.name for p in cli_out.iterdir()] == [name] == ["astronaut_person0.npz"]
    with np.load(cli_out / name) as cli, np.load(app_out / name) as app:
        np.testing.assert_array_equal(app["keypoints_2d"], cli["keypoints_2d"])
        np.testing.assert_array_equal(app["tokens"], cli["tokens"])
        np.testing.assert_allclose(app["camera_vertices"], cli["camera_vertices"], atol=1e-6)
    window.state.select_sample(2)
    assert window.default_name("obj") == "astronaut_person0_sample2.obj"


def test_pick_a_person_by_clicking(make_window, engine, qtbot):
    window = make_window(engine, detector_factory=stub_factory(2))
    window.load_sample()
    wait_result(qtbot, window)
    assert len(window.state.people) == 2 and window.state.person == 0  # the larger one first
    first = window.state.result
    box = window.state.people[1].box
    centre = QPointF((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    qtbot.mouseClick(window.image_view.viewport(), Qt.MouseButton.LeftButton,
                     pos=window.image_view.mapFromScene(centre))
    assert window.state.person == 1 and window.people_list.currentRow() == 1
    qtbot.waitUntil(lambda: window.state.result is not first, timeout=WAIT_MS)
    assert not np.allclose(window.state.result.translation, first.translation)  # recovered the other person


def test_no_person_and_detector_failure_are_explained(make_window, engine, qtbot):
    window = make_window(engine, detector_factory=stub_factory(0))
    window.load_sample()
    qtbot.waitUntil(lambda: window.last_message is not None, timeout=WAIT_MS)
    assert window.last_message[0] == "info" and "No person found" in window.last_message[1]
    assert window.state.image is not None and window.state.result is None  # the photo stays on screen
    assert window.viewport.placeholder.isVisible() and "No person" in window.viewport.placeholder.text()

    def broken(tracking=False):
        raise ImportError("mediapipe is not installed")

    window.session.detector_factory, window.session._detector = broken, None
    window.last_message = None
    window.load_sample()
    qtbot.waitUntil(lambda: window.last_message is not None, timeout=WAIT_MS)
    assert window.last_message[0] == "error" and "mediapipe" in window.last_message[1]


def test_live_video_drops_frames_and_keeps_ui_responsive(make_window, engine, astronaut_bgr, tmp_path, qtbot):
    video = write_video(tmp_path / "clip.avi", frames=40, fps=25.0, image=astronaut_bgr)
    window = make_window(engine)
    ticks: list[float] = []
    timer = QTimer(window)
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    window.controls.stochastic.setChecked(True)  # heavier work per frame
    window.open_path(video)
    qtbot.waitUntil(lambda: window.session.live is not None and window.session.live.processed >= 8
                    and window.session.shown_frames >= 2, timeout=WAIT_MS)
    live = window.session.live
    start = len(ticks)
    qtbot.wait(1000)
    gaps = np.diff(ticks[start - 1:]) if start else np.array([1.0])
    assert len(ticks) - start >= 10 and gaps.max() < 1.5, f"UI froze: {len(ticks) - start} ticks, max gap {gaps.max()}"
    assert "fps" in window.live_panel.stats.text() and window.state.result is not None
    # Every captured frame was either processed or overwritten by a newer one (at most 2 waiting): no queue.
    assert live.processed + live.dropped <= live.captured <= live.processed + live.dropped + 2
    window.actions_by_name["live_pause"].trigger()
    assert live.paused and window.live_panel.pause_button.text() == "Resume"
    window.actions_by_name["live_stop"].trigger()
    assert window.session.live is None and window.live_panel.start_button.isEnabled()
    assert window.gallery.count() == window.state.result.num_samples + 1  # + mean; filled once streaming stopped


def test_camera_missing_or_lost_gives_a_message(make_window, engine, qtbot, monkeypatch):
    window = make_window(engine)
    window.live_panel.camera_index.setValue(9)
    window.actions_by_name["webcam"].trigger()
    qtbot.waitUntil(lambda: window.last_message is not None, timeout=WAIT_MS)
    assert window.last_message[0] == "error" and "camera 9" in window.last_message[1]
    assert window.session.live is None

    from megaviewer.vision import sources

    class Unplugged(sources.FrameSource):
        def read(self):
            if self.frames_read >= 3:
                raise sources.SourceError("camera 0 stopped delivering frames (was it disconnected?)")
            self.frames_read += 1
            return np.full((120, 160, 3), 90, np.uint8)

    monkeypatch.setattr(sources, "open_source", lambda spec, loop=False: Unplugged())
    window.last_message = None
    window.start_webcam()
    qtbot.waitUntil(lambda: window.last_message is not None, timeout=WAIT_MS)
    assert "disconnected" in window.last_message[1] and window.session.live is None


def test_settings_recent_files_and_drop(make_window, engine, astronaut_bgr, tmp_path, qtbot):
    ini = tmp_path / "persist.ini"
    photo = tmp_path / "dropped.png"
    cv2.imwrite(str(photo), astronaut_bgr)
    window = make_window(engine, settings_path=ini)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photo))])
    window.dropEvent(QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))
    qtbot.waitUntil(lambda: window.state.image_path == photo and window.state.result is not None, timeout=WAIT_MS)
    assert [a.text() for a in window.recent_menu.actions()][0] == "dropped.png"
    window.controls.samples.setValue(6)
    window.controls.temperature.setValue(1.5)
    window.controls.stochastic.setChecked(True)
    window.actions_by_name["heatmap"].setChecked(True)
    window.state.set_view_flag("overlay", False)
    expected = window.controls.settings()
    window.resize(1100, 720)
    window.close()

    plotter = window.viewport.plotter  # closing let go of the GL context wrappers (see close_plotter)
    assert getattr(plotter, "_ctx", None) is None and getattr(plotter, "_surface", None) is None

    again = make_window(engine, settings_path=ini, size=(800, 600))
    again.resize(again.size())  # no-op: the restored geometry must win over nothing
    assert again.controls.settings() == expected and again.session.settings == expected
    assert again.recent_files()[0] == str(photo) and again.last_folder == str(tmp_path)
    assert not again.state.overlay
    assert again.actions_by_name["toggle_mode"].isChecked()


def test_actions_table_random_humans_and_model_failure(make_window, engine, qtbot):
    from megaviewer.gui.actions import ACTIONS, ShortcutsDialog

    keys = [s.shortcut for s in ACTIONS if s.shortcut]
    assert len(keys) == len(set(keys)), "a shortcut is declared twice"
    window = make_window(engine)
    in_menus = {a.objectName() for m in window.menuBar().findChildren(type(window.recent_menu)) for a in m.actions()}
    assert {f"action_{s.name}" for s in ACTIONS} <= in_menus
    assert "Ctrl+R" in window.actions_by_name["recover"].toolTip()
    dialog = ShortcutsDialog(window)
    assert dialog.table.rowCount() == len(keys)
    dialog.close()

    action = window.actions_by_name["random_humans"]
    assert action.isEnabled()
    action.trigger()
    wait_result(qtbot, window, mode="unconditional")
    assert window.state.result.focal is None and not window.image_view._overlay.isVisible()
    assert window.gallery.count() == window.state.result.num_samples + 1  # + mean

    plain = make_window(tiny_engine(seed=1))
    assert not plain.actions_by_name["random_humans"].isEnabled()
    assert "unconditional" in plain.actions_by_name["random_humans"].toolTip()
    assert not plain.controls.random_button.isEnabled()

    def broken():
        raise FileNotFoundError("resources/default has no model.safetensors")

    failing = make_window(None)
    failing.session.load_engine(broken)
    qtbot.waitUntil(lambda: failing.last_message is not None, timeout=WAIT_MS)
    assert failing.last_message[0] == "error" and "model.safetensors" in failing.last_message[1]
    assert "not loaded" in failing.model_label.text()


def test_task_runner_runs_the_latest_request_of_each_kind(qtbot):
    import threading

    from megaviewer.gui.workers import TaskRunner

    runner = TaskRunner("test-runner")
    gate = threading.Event()
    outcomes = []
    runner.done.connect(outcomes.append)
    runner.submit("slow", gate.wait, 5)
    for i in range(5):
        runner.submit("recover", lambda i=i: i)
    runner.submit("export", lambda: 1 / 0)
    gate.set()
    qtbot.waitUntil(lambda: len(outcomes) == 3, timeout=WAIT_MS)
    runner.shutdown()
    assert [o.kind for o in outcomes] == ["slow", "recover", "export"] and runner.replaced == 4
    assert outcomes[1].value == 4 and runner.is_current(outcomes[1])  # only the newest request ran
    assert "ZeroDivisionError" in outcomes[2].error  # failures come back as messages, not crashes


def test_live_worker_keeps_only_the_newest_frame(qtbot):
    """A slow model on a fast source processes few frames and drops the rest instead of queueing them."""
    from megaviewer.gui.workers import LiveWorker

    class Fast:
        fps = 200.0

        def __init__(self):
            self.n = 0

        def open(self):
            return self

        def read(self):
            self.n += 1
            return np.full((8, 8, 3), self.n % 255, np.uint8) if self.n <= 120 else None

        def close(self):
            pass

    seen = []
    worker = LiveWorker(Fast(), lambda frame: (time.sleep(0.05), int(frame[0, 0, 0]))[1])
    worker.frameReady.connect(lambda: seen.append(worker.latest()))
    with qtbot.waitSignal(worker.finishedStream, timeout=WAIT_MS):
        worker.start()
    worker.wait(2000)
    assert worker.captured == 120 and worker.processed < 60 and worker.dropped > 40
    indices = [f.index for f in seen if f is not None]
    assert indices == sorted(indices) and max(indices) >= 100  # always the newest, never a stale backlog
    assert StubDetector().detect(np.zeros((10, 10, 3), np.uint8))  # (helper sanity)
