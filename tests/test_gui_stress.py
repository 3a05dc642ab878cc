"""The live view under stress: a camera that floods frames at a model that needs seconds per frame.

The real main window runs in live mode with the real ``Session``, ``LiveWorker`` and presenter. Only the camera
(a source with no frame rate that returns a new 640x480 frame on every read, thousands per second) and the
person detector (a stub that takes ``MODEL_S`` per frame, standing in for a slow model) are stand-ins. Checked:

* memory stays bounded: every frame the camera makes is tracked with a weak reference, and at most a handful
  are alive at any time (the rest are dropped, never queued); process RSS barely grows;
* the UI thread stays responsive: a 20 ms heartbeat keeps firing and its worst gap stays below ``MAX_GAP_S``,
  which is shorter than one recovery, so recovering on the UI thread would fail; Pause/Resume clicks take
  effect and Stop returns at once even with a recovery in flight;
* stopping ends the worker and capture threads, closes the camera and frees the frames.

Runs under Xvfb like ``test_gui.py`` (never ``QT_QPA_PLATFORM=offscreen``: the GL viewport cannot exist there).
"""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref

import numpy as np
import pytest
import shiboken6
from PySide6.QtCore import QSettings, Qt, QTimer

from megaviewer.vision import sources
from tests._gui_helpers import StubDetector, tiny_engine

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(not os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") == "offscreen",
                       reason="needs an X display (pytest-xvfb or xvfb-run) for the OpenGL viewport"),
]

WAIT_MS = 30_000  # generous: the machine is shared
MODEL_S = 2.0  # seconds per recovered frame: far slower than the camera, and longer than MAX_GAP_S
MAX_GAP_S = 1.5  # worst allowed pause of the UI heartbeat (a freeze, not a benchmark)
STRESS_S = 3.0  # seconds of flooding after the first mesh (plus a pause and the last recovery)
MAX_FRAMES_ALIVE = 8  # capture + slot + in recovery + result slot + shown on screen, with room to spare
MAX_RSS_GROWTH_MB = 150  # from before Start to the end of the flood (~60 MB seen: GL, detector, torch)
BRAKE = 400  # the camera waits while this many of its frames are alive, so a broken queue cannot eat the RAM


class FloodCamera(sources.FrameSource):
    """A camera without a frame rate: every ``read`` returns a new 640x480 frame at once."""

    name = "flood camera"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.alive = 0  # frames made and not yet freed by anyone
        self.max_alive = 0

    def _freed(self) -> None:
        with self._lock:
            self.alive -= 1

    def read(self) -> np.ndarray:
        while self.alive >= BRAKE and self.is_open:
            time.sleep(0.01)
        frame = np.full((480, 640, 3), self.frames_read % 251, np.uint8)
        self.frames_read += 1
        with self._lock:
            self.alive += 1
            self.max_alive = max(self.max_alive, self.alive)
        weakref.finalize(frame, self._freed)
        return frame


class SlowDetector(StubDetector):
    """The stub detector, made as slow as a heavy model; remembers the threads it ran on."""

    def __init__(self, seconds: float = MODEL_S) -> None:
        super().__init__(1)
        self.seconds = seconds
        self.threads: set[str] = set()

    def detect(self, image: np.ndarray) -> list:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        return super().detect(image)


def eventually(qtbot, condition, timeout_ms: int = WAIT_MS) -> bool:
    try:
        qtbot.waitUntil(condition, timeout=timeout_ms)
    except qtbot.TimeoutError:
        return False
    return True


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(ln for ln in status if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.fixture
def window(qtbot, tmp_path):
    from megaviewer.gui.app import application, apply_theme, create_window

    apply_theme(application())
    detector = SlowDetector()
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = create_window(engine=tiny_engine(seed=0), settings=settings, detector_factory=lambda tracking=False: detector,
                        sample=False)
    win.detector = detector
    qtbot.addWidget(win)  # closed (threads stopped) at teardown
    win.resize(1280, 800)
    win.show()
    qtbot.waitExposed(win)
    return win


def test_flooding_camera_keeps_memory_bounded_and_the_ui_responsive(window, qtbot, monkeypatch):
    camera = FloodCamera()
    monkeypatch.setattr(sources, "open_source", lambda spec, loop=False: camera)
    session, panel = window.session, window.live_panel
    beats: list[float] = []
    heartbeat = QTimer(window)
    heartbeat.setInterval(20)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))
    heartbeat.start()

    old_threads, rss_idle = set(threading.enumerate()), rss_mb()
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)  # webcam is the default choice
    live = session.live
    assert live is not None and live.isRunning()
    ended: list[float] = []
    live.finished.connect(lambda: ended.append(time.perf_counter()))
    qtbot.waitUntil(lambda: session.shown_frames >= 1, timeout=WAIT_MS)  # first mesh drawn: GL is warm
    first_beat, rss_start, made_start = len(beats), rss_mb(), camera.frames_read

    qtbot.wait(int(STRESS_S * 500))
    # A user action in the middle of the flood: Pause stops the capture, Resume restarts it.
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert live.paused and panel.pause_button.text() == "Resume"
    qtbot.wait(300)
    frozen = camera.frames_read
    qtbot.wait(300)
    assert camera.frames_read - frozen <= 1, "the capture went on while paused"
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert not live.paused and panel.pause_button.text() == "Pause"
    resumed = eventually(qtbot, lambda: camera.frames_read > frozen + 100, 5000)
    qtbot.wait(int(STRESS_S * 500))
    rss_end = rss_mb()
    stats = panel.stats.text()

    # Stop right after a frame was finished, i.e. with a whole recovery (MODEL_S) in flight.
    done = live.processed
    qtbot.waitUntil(lambda: live.processed > done, timeout=WAIT_MS)
    start = time.perf_counter()
    qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    stop_s = time.perf_counter() - start
    assert session.live is None and panel.start_button.isEnabled()
    thread_ended = eventually(qtbot, lambda: bool(ended))  # once the frame in flight is done
    qtbot.wait(100)  # a few beats after the end
    heartbeat.stop()

    made, recovered, dropped, captured = camera.frames_read - made_start, live.processed, live.dropped, live.captured
    stressed = beats[max(first_beat - 1, 0):]  # from the first mesh to after the worker ended
    gaps, span = np.diff(stressed), stressed[-1] - stressed[0]
    print(f"\nstress: {camera.frames_read} frames made ({made} after the first mesh), {recovered} recovered, "
          f"{dropped} dropped, {session.shown_frames} shown; at most {camera.max_alive} frames alive; RSS (MB) "
          f"{rss_idle:.0f} idle, {rss_start:.0f} at the first mesh, {rss_end:.0f} at the end; {len(gaps)} beats "
          f"in {span:.1f} s, max gap {gaps.max() * 1000:.0f} ms; Stop took {stop_s * 1000:.0f} ms")
    problems: list[str] = []  # every broken property is reported, not just the first

    def check(ok: bool, text: str) -> None:
        if not ok:
            problems.append(text)

    # The stress was real: the camera outran the model by far, and the surplus was dropped.
    check(made >= 1000 and recovered * 100 < captured, f"no real stress: {made} made, {recovered} recovered")
    check(captured - 1 <= recovered + dropped <= captured,  # each frame recovered or dropped (one may wait)
          f"frames unaccounted for: {captured} captured, {recovered} recovered, {dropped} dropped")
    check(resumed, "the capture did not start again after Resume")
    check("dropped" in stats, f"the live panel does not report drops: {stats!r}")
    # Memory: a few frames at a time, whatever the rate; RSS does not follow the thousands of frames.
    check(camera.max_alive <= MAX_FRAMES_ALIVE, f"{camera.max_alive} frames alive at once: frames pile up")
    check(rss_end - rss_idle < MAX_RSS_GROWTH_MB, f"RSS grew {rss_end - rss_idle:.0f} MB while streaming")
    # The UI thread: recovery never ran on it, the heartbeat never stalled, Stop did not wait for the model.
    check(threading.main_thread().name not in window.detector.threads, "recovery ran on the UI thread")
    check(gaps.max() < MAX_GAP_S, f"the UI froze for {gaps.max():.2f} s")
    check(len(gaps) >= span / 0.02 / 4, f"{len(gaps)} heartbeats in {span:.1f} s: the UI thread was mostly busy")
    check(stop_s < MODEL_S / 2, f"Stop blocked the UI for {stop_s:.2f} s")
    # Nothing left behind: threads ended, camera closed, the worker deleted, its frames freed.
    check(thread_ended, "the live worker thread did not end after Stop")
    check(not [t for t in set(threading.enumerate()) - old_threads if t.name == "megaviewer-capture"],
          "the capture thread is still running")
    check(not camera.is_open, "the camera was not closed")
    check(eventually(qtbot, lambda: not shiboken6.isValid(live)), "the stopped worker was never deleted")
    live = None
    gc.collect()
    check(camera.alive <= 2, f"{camera.alive} frames still referenced after the stream stopped")
    assert not problems, "\n".join(problems)


def test_restarting_a_stream_keeps_the_new_one(window, qtbot, monkeypatch):
    """Starting a stream while one runs (F5, or opening a video) replaces it. The old stream's last signals,
    sent when it ended, used to stop the new one as well."""
    window.detector.seconds = 0.05
    cameras: list[FloodCamera] = []
    monkeypatch.setattr(sources, "open_source", lambda spec, loop=False: cameras.append(FloodCamera()) or cameras[-1])
    session = window.session
    window.actions_by_name["webcam"].trigger()
    qtbot.waitUntil(lambda: session.shown_frames >= 1, timeout=WAIT_MS)
    first = session.live
    window.actions_by_name["webcam"].trigger()
    second = session.live
    assert second is not None and second is not first and len(cameras) == 2
    qtbot.waitUntil(lambda: not cameras[0].is_open, timeout=WAIT_MS)  # the first stream has ended...
    qtbot.wait(300)
    assert session.live is second and second.isRunning()  # ...and the second one goes on
    done = second.processed
    qtbot.waitUntil(lambda: second.processed > done + 2, timeout=WAIT_MS)
    assert window.live_panel.stop_button.isEnabled() and window.last_message is None
