"""The app's controller: owns the engine, the workers and the :class:`ViewerState`; the window calls it.

Every long step (model loading, detection, recovery, export, the live loop) runs on a worker thread and comes
back as a signal; the session turns outcomes into state changes and user-facing messages. It never touches a
widget, so the window can be rebuilt or tested around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from megaviewer.app import pipeline
from megaviewer.app.pipeline import Detector, Person, Recovery
from megaviewer.gui.scene import BodyScene
from megaviewer.gui.state import ViewerState
from megaviewer.gui.workers import LiveFrame, LiveWorker, TaskOutcome, TaskRunner
from megaviewer.settings import DEFAULTS, RecoverySettings

DetectorFactory = Callable[[bool], Detector]


class Session(QObject):
    message = Signal(str, str)  # (level: "info" | "warning" | "error", text)
    status = Signal(str)  # short status-bar text (timings)
    engineChanged = Signal(object)  # the Engine, or None when loading failed
    modelOpened = Signal(str)  # the checkpoint folder now in use ("" for the shipped default after a fallback)
    busyChanged = Signal(bool)
    liveChanged = Signal(bool, bool)  # running, paused
    liveStats = Signal(object)  # LiveFrame
    exported = Signal(str)

    def __init__(self, state: ViewerState, detector_factory: DetectorFactory = pipeline.load_detector,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.state = state
        self.engine: Any = None
        self.engine_error: str | None = None
        self.scene: BodyScene | None = None
        self.settings = DEFAULTS
        self.detector_factory = detector_factory
        self._detector: Detector | None = None
        self._pending_recover = False
        self._pending_live: tuple[int | str | Path, bool] | None = None
        self.live: LiveWorker | None = None
        self.shown_frames = 0
        self._live_ready_at = 0.0
        self._live_timer = QTimer(self)
        self._live_timer.setSingleShot(True)
        self._live_timer.timeout.connect(self._on_live_frame)
        self._live_previous: Person | None = None
        self.runner = TaskRunner("megaviewer-inference", self)
        self.runner.done.connect(self._on_done)
        self._busy = 0
        self.runner.busy.connect(self._on_busy)
        self.loader = TaskRunner("megaviewer-model-loader", self)  # loading must not hold up detection
        self.loader.done.connect(self._on_done)
        self.loader.busy.connect(self._on_busy)
        self.export_runner = TaskRunner("megaviewer-export", self)
        self.export_runner.done.connect(self._on_export_done)
        self._export_paths: dict[str, Path] = {}
        state.subscribe(self._on_state)

    def _on_busy(self, busy: bool) -> None:
        self._busy = max(0, self._busy + (1 if busy else -1))
        self.busyChanged.emit(self._busy > 0)

    # ------------------------------------------------------------------------------------- engine
    def set_engine(self, engine: Any) -> None:
        """Use ``engine`` (already loaded, e.g. injected by a test) and recover what is waiting for it."""
        self._engine_ready(engine, BodyScene.for_engine(engine) if engine is not None else None)

    def _engine_ready(self, engine: Any, scene: BodyScene | None) -> None:
        self.engine, self.scene = engine, scene
        self.engine_error = None
        self.engineChanged.emit(engine)
        if engine is None:
            return
        if self._pending_live is not None:
            spec, loop = self._pending_live
            self._pending_live = None
            self.start_live(spec, loop)
        elif self.live is not None:
            self._pending_recover = False  # a running stream reads the new engine from its next frame on
        elif self._pending_recover or self.state.current_person is not None:
            self._pending_recover = False
            self.recover()

    def load_engine(self, loader: Callable[[], Any] | None = None, fallback: Callable[[], Any] | None = None) -> None:
        """Load the shipped model (or ``loader``'s) on the worker thread (tens of seconds on a slow disk: never on
        the UI). When ``loader`` fails and there is a ``fallback`` (the app's remembered model at start-up, with
        the shipped default behind it), the fallback's engine is used and a status line says why."""
        if loader is None:
            from megaviewer.engine import Engine

            loader = Engine.from_pretrained

        def load() -> tuple[Any, BodyScene, str]:
            note = ""
            try:
                engine = loader()
            except Exception as exc:  # noqa: BLE001 - any failure: the fallback decides, else the UI says why
                if fallback is None:
                    raise
                engine = fallback()
                note = (f"The last model could not be loaded ({type(exc).__name__}: {exc}); "
                        f"using {engine.label()} instead.")
            return engine, BodyScene.for_engine(engine), note

        self.loader.submit("engine", load)

    def open_model(self, folder: str | Path) -> None:
        """Load the MEGA checkpoint in ``folder`` on the loader thread, with the current engine's device and speed
        options; when it has loaded it replaces the engine and the current photo is recovered again. A folder
        that does not load (not a checkpoint, another tokenizer, a pickle) is a message and the old model stays.
        """
        from megaviewer.engine import Engine

        folder = Path(folder)
        old = self.engine
        options: dict[str, Any] = {}
        if old is not None:
            options = {"device": old.device, "half": bool(getattr(old, "half", False)),
                       "compile": bool(getattr(old, "compiled", False))}

        def load() -> tuple[Path, Any, BodyScene]:
            engine = Engine.from_pretrained(folder, **options)
            return folder, engine, BodyScene.for_engine(engine)

        self.status.emit(f"loading the model {folder.name}…")
        self.loader.submit("model", load)

    # ------------------------------------------------------------------------------------- images
    def open_image(self, path: str | Path) -> None:
        """Load + detect on the worker; the image appears with its people when both are done. The photo's
        camera (EXIF focal, else the typical lens: :mod:`megaviewer.intrinsics`) comes with it."""
        from megaviewer.vision.images import read_image

        self.stop_live()
        path = Path(path)

        def load_and_detect() -> tuple:
            loaded = read_image(path)
            return (path, *self._detect(loaded.image), loaded.camera)

        self.runner.submit("detect", load_and_detect)

    def show_image(self, image: np.ndarray, path: Path | None = None) -> None:
        """Use an in-memory picture (the bundled sample, a pasted image) like an opened file (typical camera)."""
        self.stop_live()
        self.runner.submit("detect", lambda: (path, image, *self._detect(image)[1:], None))

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, list[Person], str]:
        """(image, people, note); a detector failure still shows the picture, with the reason as the note."""
        try:
            if self._detector is None:
                self._detector = self.detector_factory(False)
            people = pipeline.detect_people(self._detector, image)
        except Exception as exc:  # noqa: BLE001 - e.g. MediaPipe missing or broken: say so, keep the photo
            return image, [], f"the person detector failed ({type(exc).__name__}: {exc})"
        return image, list(people), people.message

    # ----------------------------------------------------------------------------------- recovery
    def set_settings(self, settings: RecoverySettings) -> None:
        self.settings = settings

    def recover(self) -> None:
        """Recover the selected person with the current settings (latest request wins)."""
        person, image = self.state.current_person, self.state.image
        if person is None or image is None:
            if image is not None and not self.state.people:
                self.message.emit("info", "There is no person to recover in this image.")
            return
        if self.engine is None:
            if self.engine_error:
                self.message.emit("info", "No model is loaded, so nothing can be recovered (see the earlier message).")
            else:
                self._pending_recover = True  # runs as soon as the model is ready
            return
        self.runner.submit("recover", pipeline.recover_person, self.engine, person, self.settings,
                           with_reference=True, camera=self.state.camera, image=image)

    def export_scene(self, path: Path) -> None:
        """Every person of the photo in one camera-frame GLB: the others are recovered with the current
        settings on the inference thread (the shown person keeps the result on screen), then the file is
        written on the export thread."""
        state, engine = self.state, self.engine
        if engine is None or state.image is None or not state.people or state.result is None \
                or state.result.mode == "unconditional":
            self.message.emit("info", "Recover the people of a photo first: the scene holds their meshes.")
            return
        people, shown, result = list(state.people), state.person, state.result
        settings, camera, image = self.settings, state.camera, state.image

        def recover_all() -> tuple[Path, list[Person]]:
            placed = []
            for i, person in enumerate(people):
                res = result if i == shown else pipeline.recover_person(
                    engine, person, settings, return_trace=False, camera=camera, image=image).result
                placed.append(Person(person.detection, res))
            return path, placed

        self.runner.submit("scene", recover_all)

    def random_humans(self) -> None:
        reason = pipeline.unconditional_unavailable_reason(self.engine)
        if reason:
            self.message.emit("info", reason)
            return
        self.runner.submit("random", pipeline.random_humans, self.engine, self.settings)

    def _on_done(self, outcome: TaskOutcome) -> None:
        runner = self.loader if outcome.kind in ("engine", "model") else self.runner
        if not runner.is_current(outcome):
            return  # superseded by a newer request of the same kind
        if outcome.error:
            self._on_error(outcome)
        elif outcome.kind == "engine":
            engine, scene, note = outcome.value
            self._engine_ready(engine, scene)
            if note:
                self.modelOpened.emit("")
                self.message.emit("info", note)
        elif outcome.kind == "model":
            self._model_opened(*outcome.value)
        elif outcome.kind == "detect":
            path, image, people, note, camera = outcome.value
            self.state.set_image(image, path, camera)
            self.state.set_people(people)
            if not people and note.startswith("the person detector failed"):
                self.message.emit("error", f"No people could be detected: {note}.")
            elif not people:
                self.message.emit("info", f"No person found in this image{': ' + note if note else '.'}")
            self.status.emit(f"{len(people)} {'person' if len(people) == 1 else 'people'} found · "
                             f"{outcome.elapsed_ms:.0f} ms")
            if people:
                self.recover()
        elif outcome.kind == "scene":
            self._write_scene(*outcome.value)
        elif outcome.kind in ("recover", "random"):
            rec: Recovery = outcome.value
            self.state.set_result(rec.result, rec.reference)
            self.status.emit(self._timing_text(rec))

    def _model_opened(self, folder: Path, engine: Any, scene: BodyScene) -> None:
        self._engine_ready(engine, scene)
        self.modelOpened.emit(str(folder))
        self.message.emit("info", f"Model {engine.label()} loaded from {folder}.")

    def _on_error(self, outcome: TaskOutcome) -> None:
        if outcome.kind == "model":  # the old model stays: say so, change nothing
            kept = f"Still using {self.engine.label()}." if self.engine is not None else "No model is loaded."
            self.message.emit("error", f"That folder could not be opened as a model.\n\n{outcome.error}\n\n{kept}")
            return
        what = {"engine": "The model could not be loaded", "detect": "The image could not be opened",
                "recover": "Recovery failed", "random": "Generating random humans failed",
                "scene": "The people of the scene could not be recovered"}[outcome.kind]
        if outcome.kind == "engine":
            self.engine_error = outcome.error
            self.engineChanged.emit(None)
        self.message.emit("error", f"{what}.\n\n{outcome.error}")

    @staticmethod
    def _timing_text(rec: Recovery) -> str:
        result = rec.result
        parts = [f"{k.removesuffix('_ms')} {v:.0f} ms" for k, v in result.timings_ms.items()]
        q = f"Q={result.num_samples} " if result.num_samples > 1 else ""
        return f"{result.mode} {q}· " + " · ".join(parts) + f" · total {rec.elapsed_ms:.0f} ms"

    def _on_state(self, changed: set[str]) -> None:
        if "person" in changed:
            if self.live is None:
                self.recover()
            else:  # a click on someone else during a stream: follow them from the next frame on
                self._live_previous = self.state.current_person

    # --------------------------------------------------------------------------------------- live
    def start_live(self, spec: int | str | Path, loop: bool = True) -> None:
        """Open a webcam index or a video file and recover on its newest frames until stopped."""
        from megaviewer.vision.sources import SourceError, open_source

        self.stop_live()
        if self.engine is None:
            self._pending_live = (spec, loop)
            self.message.emit("info", "The stream starts as soon as the model has loaded.")
            return
        try:
            source = open_source(f"cam:{spec}" if isinstance(spec, int) else spec, loop=loop)
        except SourceError as exc:
            self.message.emit("error", f"Cannot open {spec}: {exc}")
            return
        self._live_previous = None
        detector_box: dict[str, Detector] = {}
        started_with = self.engine

        def process(frame: np.ndarray) -> tuple[list[Person], int, Recovery | None]:
            if "detector" not in detector_box:  # created on the live thread that uses it
                detector_box["detector"] = self.detector_factory(True)
            people = list(pipeline.detect_people(detector_box["detector"], frame))
            index = pipeline.nearest_person(people, self._live_previous)
            if index < 0:
                return people, index, None
            self._live_previous = people[index]
            # Settings and the engine are read per frame, so changing Q, the mode or the model applies to the running
            # stream; no deterministic reference and no body refinement (~0.1 s per person): the stream keeps its
            # frame rate.
            engine = self.engine if self.engine is not None else started_with
            return people, index, pipeline.recover_person(engine, people[index], self.settings.with_(refine=False),
                                                          image=frame)

        worker = LiveWorker(source, process, parent=self)
        worker.frameReady.connect(self._on_live_frame)
        self.shown_frames = 0
        worker.failed.connect(self._on_live_failed)
        worker.finishedStream.connect(self._on_live_finished)
        self.live = worker
        self.liveChanged.emit(True, False)
        worker.start()

    def pause_live(self) -> None:
        if self.live is None:
            return
        if self.live.paused:
            self.live.resume()
        else:
            self.live.pause()
        self.liveChanged.emit(True, self.live.paused)

    def stop_live(self) -> None:
        """Stop the stream at once; the worker finishes its frame in flight, then deletes itself.

        Why not wait for it: a slow model would freeze the window for that frame, and deleting a thread that is
        still running aborts the process. Its late signals are cut so they cannot stop the next stream.
        """
        worker, self.live = self.live, None
        if worker is not None:
            worker.frameReady.disconnect(self._on_live_frame)
            worker.failed.disconnect(self._on_live_failed)
            worker.finishedStream.disconnect(self._on_live_finished)
            self._live_timer.stop()
            worker.finished.connect(worker.deleteLater)
            worker.stop(wait_ms=0)
            if worker.isFinished():
                worker.deleteLater()
            self.liveChanged.emit(False, False)

    def _on_live_frame(self) -> None:
        """Show the newest processed frame, but leave the UI idle at least as long as the last update took.

        Why: on a slow GL (software rendering) drawing one frame can cost as much as recovering it; showing
        every result would keep the event loop busy and the window would stop reacting to the user.
        """
        if self.live is None:
            return
        wait_ms = (self._live_ready_at - time.perf_counter()) * 1000
        if wait_ms > 0:
            if wait_ms != float("inf") and not self._live_timer.isActive():
                self._live_timer.start(int(wait_ms) + 1)
            return  # (when still painting, _live_idle starts the timer)
        frame: LiveFrame | None = self.live.latest()
        if frame is None:
            return
        start = time.perf_counter()
        if frame.error:
            self.status.emit(f"live: {frame.error}")
        people, index, rec = frame.output if frame.output is not None else ([], -1, None)
        state = self.state
        keep = state.result is not None
        state.set_frame(frame.image, people, index)
        if rec is not None:
            state.set_result(rec.result, rec.reference, keep_indices=keep)
        self.liveStats.emit(frame)
        self.shown_frames += 1
        # The repaint happens later in the event loop; a zero timer runs after it, so it measures the full cost.
        self._live_ready_at = float("inf")
        QTimer.singleShot(0, self, lambda: self._live_idle(start))

    def _live_idle(self, start: float) -> None:
        now = time.perf_counter()
        self._live_ready_at = now + (now - start)
        if self.live is not None:
            self._live_timer.start(int((now - start) * 1000) + 1)  # then look for a newer frame

    def _on_live_failed(self, text: str) -> None:
        self.stop_live()
        self.message.emit("error", text)

    def _on_live_finished(self, text: str) -> None:
        self.stop_live()
        if text:
            self.message.emit("info", text)

    # ------------------------------------------------------------------------------------- export
    def export(self, kind: str, path: Path, payload: Callable[[], Any]) -> None:
        """Write on the export thread; failures become a message and the result stays on screen."""
        self._export_paths[kind] = path
        self.export_runner.submit(kind, payload)

    def _write_scene(self, path: Path, people: list[Person]) -> None:
        from megaviewer.app.exports import write_scene

        assets = self.scene.assets if self.scene is not None else None
        if assets is None:
            self.message.emit("info", "The model is still loading; export the scene once it has.")
            return
        self.export("scene", path, lambda: write_scene(path, people, assets))

    def _on_export_done(self, outcome: TaskOutcome) -> None:
        path = self._export_paths.get(outcome.kind, "")
        if outcome.error:
            self.message.emit("error", f"Could not save {path}.\n\n{outcome.error}\n\nThe result is kept; "
                                       "choose another folder.")
        else:
            self.exported.emit(str(path))
            self.status.emit(f"saved {path}")

    def shutdown(self) -> None:
        self.stop_live()
        for worker in self.findChildren(LiveWorker):  # stopped streams still finishing their last frame
            worker.wait()
        for runner in (self.runner, self.loader, self.export_runner):
            runner.shutdown()
