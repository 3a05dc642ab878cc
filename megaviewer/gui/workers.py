"""Threads that keep the window responsive: a latest-wins task runner and the live capture/recovery loop.

Why latest-wins everywhere: a user dragging a slider or a camera producing 30 frames a second can ask for
work faster than a CPU does it; queueing would show ever older results. :class:`LatestSlot` holds at most
one item and counts what it overwrote, and both the task runner and the live loop are built on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QThread, Signal


class LatestSlot:
    """A thread-safe box of one item: ``put`` replaces (and counts a drop), ``take`` waits for an item."""

    def __init__(self) -> None:
        self._item: Any = None
        self._full = False
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> Any:
        """The latest item, or ``None`` after ``timeout`` seconds without one."""
        with self._cond:
            if not self._full and not self._cond.wait_for(lambda: self._full, timeout):
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def clear(self) -> None:
        with self._cond:
            self._item, self._full = None, False


@dataclass
class TaskOutcome:
    kind: str
    ticket: int
    value: Any = None
    error: str | None = None
    elapsed_ms: float = 0.0


class TaskRunner(QThread):
    """Runs submitted callables one at a time on its own thread, oldest kind first; a newer submission of
    the same kind replaces the one still waiting (a slider dragged five times runs once, not five times).

    ``done`` carries a :class:`TaskOutcome`; :meth:`is_current` tells whether it answers the latest request
    of its kind (older answers can be ignored by the UI).
    """

    done = Signal(object)
    busy = Signal(bool)

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.setObjectName(name)
        self._pending: dict[str, tuple] = {}  # kind -> job, in first-submission order
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._tickets: dict[str, int] = {}
        self._counter = 0
        self.replaced = 0

    def submit(self, kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        with self._cond:
            self._counter += 1
            ticket = self._counter
            self._tickets[kind] = ticket
            if kind in self._pending:
                self.replaced += 1
            self._pending[kind] = (kind, ticket, fn, args, kwargs)
            self._cond.notify_all()
        if not self.isRunning():
            self.start()
        return ticket

    def is_current(self, outcome: TaskOutcome) -> bool:
        return self._tickets.get(outcome.kind) == outcome.ticket

    def _next(self) -> tuple | None:
        with self._cond:
            if not self._pending and not self._cond.wait_for(lambda: self._pending or self._stop.is_set(), 0.2):
                return None
            if self._stop.is_set() or not self._pending:
                return None
            return self._pending.pop(next(iter(self._pending)))

    def run(self) -> None:
        while not self._stop.is_set():
            job = self._next()
            if job is None:
                continue
            kind, ticket, fn, args, kwargs = job
            self.busy.emit(True)
            start = time.perf_counter()
            try:
                outcome = TaskOutcome(kind, ticket, value=fn(*args, **kwargs))
            except Exception as exc:  # noqa: BLE001 - every failure becomes a message in the UI
                outcome = TaskOutcome(kind, ticket, error=f"{type(exc).__name__}: {exc}")
            outcome.elapsed_ms = (time.perf_counter() - start) * 1000
            self.done.emit(outcome)
            self.busy.emit(False)

    def shutdown(self) -> None:
        """Drop waiting jobs and let the running one finish (jobs are finite; destroying a running QThread
        would abort the whole process)."""
        with self._cond:
            self._stop.set()
            self._pending.clear()
            self._cond.notify_all()
        self.wait()


@dataclass
class LiveFrame:
    """One processed live frame: the picture, what was recovered on it and how long it took."""

    image: np.ndarray
    index: int
    output: Any = None
    error: str | None = None
    latency_ms: float = 0.0  # capture -> result ready
    process_ms: float = 0.0
    dropped: int = 0
    fps: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class LiveWorker(QThread):
    """Live loop: a capture thread keeps only the newest frame, this thread recovers on whatever is newest.

    ``source`` has ``open()``, ``read() -> BGR | None``, ``close()`` and optionally ``fps`` (a video file is
    paced at its frame rate so it plays in real time, like a camera). ``process(frame)`` runs here, off the UI
    thread. Results go through a :class:`LatestSlot` too: ``frameReady`` fires and the UI calls :meth:`latest`,
    so a busy UI also sees only the newest result and never a backlog.
    """

    frameReady = Signal()
    failed = Signal(str)
    finishedStream = Signal(str)

    def __init__(self, source: Any, process: Callable[[np.ndarray], Any], paced: bool | None = None,
                 parent=None):
        super().__init__(parent)
        self.source = source
        self.process = process
        self.paced = paced if paced is not None else type(source).__name__ != "WebcamSource"
        self._frames = LatestSlot()
        self._results = LatestSlot()
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._capture_done = threading.Event()
        self._end_reason = ""
        self.processed = 0
        self.captured = 0

    # ------------------------------------------------------------------------------ control (UI thread)
    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def stop(self, wait_ms: int = 5000) -> None:
        self._stop.set()
        self._running.set()
        self.wait(wait_ms)

    def latest(self) -> LiveFrame | None:
        return self._results.take(timeout=0)

    @property
    def dropped(self) -> int:
        return self._frames.dropped

    # ---------------------------------------------------------------------------------------- threads
    def _capture(self) -> None:
        fps = float(getattr(self.source, "fps", 0.0) or 0.0)
        period = 1.0 / fps if self.paced and fps > 0 else 0.0
        due = time.perf_counter()
        misses = 0
        try:
            while not self._stop.is_set():
                if not self._running.wait(timeout=0.1):
                    due = time.perf_counter()
                    continue
                frame = self.source.read()
                if frame is None:
                    misses += 1
                    if misses >= 3:
                        self._end_reason = "end"
                        break
                    time.sleep(0.05)
                    continue
                misses = 0
                self.captured += 1
                self._frames.put((frame, time.perf_counter(), self.captured - 1))
                if period:
                    due += period
                    time.sleep(max(0.0, due - time.perf_counter()))
        except Exception as exc:  # noqa: BLE001 - a camera unplugged mid-read raises in some backends
            self._end_reason = f"{type(exc).__name__}: {exc}"
        finally:
            self._capture_done.set()

    def run(self) -> None:
        try:
            self.source.open()
        except Exception as exc:  # noqa: BLE001
            self.failed.emit(str(exc) or type(exc).__name__)
            return
        capture = threading.Thread(target=self._capture, name="megaviewer-capture", daemon=True)
        capture.start()
        last_done: float | None = None
        interval = 0.0
        try:
            while not self._stop.is_set():
                item = self._frames.take(timeout=0.05)
                if item is None:
                    if self._capture_done.is_set():
                        break
                    if self.paused:
                        last_done = None  # a pause is not slowness
                    continue
                frame, captured_at, index = item
                t0 = time.perf_counter()
                out = LiveFrame(image=frame, index=index)
                try:
                    out.output = self.process(frame)
                except Exception as exc:  # noqa: BLE001 - shown in the status bar, the loop goes on
                    out.error = f"{type(exc).__name__}: {exc}"
                now = time.perf_counter()
                self.processed += 1
                out.process_ms = (now - t0) * 1000
                out.latency_ms = (now - captured_at) * 1000
                out.dropped = self._frames.dropped
                if last_done is not None:  # smoothed rate of finished frames
                    step = now - last_done
                    interval = step if interval == 0.0 else 0.8 * interval + 0.2 * step
                last_done = now
                out.fps = 1.0 / interval if interval > 0 else 0.0
                self._results.put(out)
                self.frameReady.emit()
        finally:
            self._stop.set()
            capture.join(timeout=2.0)
            try:
                self.source.close()
            except Exception:  # noqa: BLE001, S110 - closing a vanished camera may fail; nothing to do
                pass
        reason = self._end_reason
        if reason == "end":
            self.finishedStream.emit("The stream ended (end of the video, or the camera stopped sending frames).")
        elif reason:
            self.failed.emit(f"The camera or video failed: {reason}")
        else:
            self.finishedStream.emit("")
