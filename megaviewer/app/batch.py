"""Headless batch recovery over photos, folders and videos: the work behind ``megaviewer infer``.

One bad input is one line and the batch goes on; :class:`Summary` collects what happened and counts the
output files that exist at the end (a file written twice, or removed, is not counted twice).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from megaviewer.app import pipeline
from megaviewer.app.exports import ExportOptions, OverlayVideo, PictureWriter, output_name, unique_stems
from megaviewer.intrinsics import DEFAULT_DIAGONAL_FOV_DEG, PhotoCamera, typical_camera
from megaviewer.settings import DEFAULTS, RecoverySettings
from megaviewer.vision.detector import PoseDetector

if TYPE_CHECKING:
    from megaviewer.engine import Engine
    from megaviewer.vision.pipeline import KeypointsFile


@dataclass
class InputItem:
    path: Path
    kind: str  # "image" | "video"
    label: str  # the input's output stem, unique in the batch


def expand_inputs(specs: Sequence[str | Path]) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Files and folders (top level, sorted, image/video extensions only) -> items + (name, reason) failures."""
    from megaviewer.vision.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, kind_of

    found: list[tuple[Path, str]] = []
    failures: list[tuple[str, str]] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")
                           and f.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
            if not files:
                failures.append((str(spec), "folder holds no image or video files"))
            found += [(f, "video" if f.suffix.lower() in VIDEO_EXTENSIONS else "image") for f in files]
        elif not path.exists():
            failures.append((str(spec), "file not found"))
        else:
            found.append((path, "video" if kind_of(path) == "video" else "image"))
    labels = unique_stems([p for p, _ in found])
    return [InputItem(p, kind, label) for (p, kind), label in zip(found, labels, strict=True)], failures


@dataclass
class Summary:
    processed: list[str] = field(default_factory=list)
    no_person: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    people: int = 0
    frames: int = 0
    written: list[Path] = field(default_factory=list)

    @property
    def files(self) -> int:
        """Output files that exist now: each path once, whatever was attempted."""
        return sum(1 for p in set(self.written) if p.is_file())

    def report(self, out_dir: Path) -> str:
        lines = [f"Summary: {len(self.processed) + len(self.no_person) + len(self.failed)} inputs: "
                 f"{len(self.processed)} processed ({self.people} {'person' if self.people == 1 else 'people'}"
                 f"{f', {self.frames} video frames' if self.frames else ''}), {len(self.no_person)} without people, "
                 f"{len(self.failed)} failed; {self.files} files written to {out_dir}"]
        lines += [f"  no person found: {name}" for name in self.no_person]
        lines += [f"  failed: {name}: {reason}" for name, reason in self.failed]
        return "\n".join(lines)


@dataclass(frozen=True)
class BatchOptions:
    """Everything a batch needs besides the engine and the inputs."""

    out: Path
    settings: RecoverySettings = DEFAULTS
    exports: ExportOptions = ExportOptions()
    max_people: int = PoseDetector.max_people  # people per image
    min_confidence: float = PoseDetector.min_confidence  # keypoints below it count as missing
    every: int = 1  # videos: every N-th frame
    quiet: bool = False  # no progress bars
    fov_deg: float = DEFAULT_DIAGONAL_FOV_DEG  # diagonal field of view of photos without an EXIF focal, and videos


class BatchJob:
    """Recovers every input with :func:`megaviewer.app.pipeline.recover_people` and writes its outputs."""

    def __init__(self, engine: Engine, options: BatchOptions, keypoints: KeypointsFile | None = None,
                 summary: Summary | None = None):
        self.engine, self.options, self.keypoints = engine, options, keypoints
        self.summary = summary if summary is not None else Summary()
        self.writer = PictureWriter(options.exports, engine.assets)  # the body of the engine's tokenizer
        self.writer.written = self.summary.written
        self._detectors: dict[bool, pipeline.Detector] = {}

    def detector(self, tracking: bool = False) -> pipeline.Detector:
        if tracking not in self._detectors:
            self._detectors[tracking] = pipeline.load_detector(tracking, self.options.max_people,
                                                               self.options.min_confidence)
        return self._detectors[tracking]

    def run(self, items: Sequence[InputItem]) -> Summary:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, CI), where it would print a line per update
        bar = tqdm(items, desc="infer", unit="input", disable=True if self.options.quiet else None, file=sys.stderr)
        for item in bar:
            bar.set_postfix_str(item.path.name)
            try:
                if item.kind == "video":
                    self._video(item)
                else:
                    self._image(item)
            except Exception as exc:  # noqa: BLE001 - one bad input must not end the batch
                reason = _reason(exc, item.path)
                self.summary.failed.append((str(item.path), reason))
                tqdm.write(f"{item.path}: {reason}", file=sys.stderr)
        for det in self._detectors.values():
            close = getattr(det, "close", None)
            if close is not None:
                close()
        return self.summary

    def _image(self, item: InputItem) -> None:
        from tqdm import tqdm

        from megaviewer.vision.images import read_image

        loaded = read_image(item.path)
        camera = loaded.camera if loaded.camera.measured else typical_camera(loaded.size, self.options.fov_deg)
        people = self._recover(loaded.image, item.path, loaded.scale, camera)
        if people:
            self.writer.write(loaded.image, people, self.options.out, item.label)
            self.summary.processed.append(str(item.path))
            self.summary.people += len(people)
        else:
            self.summary.no_person.append(str(item.path))
        tqdm.write(f"{item.path}: {people.message}")

    def _video(self, item: InputItem) -> None:
        from tqdm import tqdm

        from megaviewer.vision.sources import VideoSource

        opts = self.options
        tracking = opts.max_people == 1
        if tracking:
            self.detector(True).reset()
        folder = opts.out / item.label
        frames = people_total = 0
        video: OverlayVideo | None = None
        with VideoSource(item.path) as source, contextlib.ExitStack() as stack:
            total = (source.frame_count + opts.every - 1) // opts.every if source.frame_count else None
            bar = tqdm(total=total, desc=item.path.name, unit="frame", leave=False,
                       disable=True if opts.quiet else None, file=sys.stderr)
            stack.callback(bar.close)
            while (frame := source.read()) is not None:
                index = source.frames_read - 1
                if index % opts.every:
                    continue
                camera = typical_camera(frame.shape[1::-1], opts.fov_deg)
                people = self._recover(frame, None, 1.0, camera, tracking=tracking)
                overlay = self.writer.write(frame, people, folder, f"frame_{index:06d}") if people else frame
                if "mp4" in opts.exports.formats:
                    if video is None:
                        path = opts.out / output_name(item.label, "mp4", view="overlay")
                        video = stack.enter_context(OverlayVideo(path, (source.fps or 25.0) / opts.every))
                    video.write(overlay)
                frames += 1
                people_total += len(people)
                bar.update(1)
        if video is not None:
            self.summary.written.append(video.path)
        if frames == 0:
            raise ValueError("the video has no frames to process")
        self.summary.frames += frames
        self.summary.people += people_total
        (self.summary.processed if people_total else self.summary.no_person).append(str(item.path))
        tqdm.write(f"{item.path}: {frames} frames, {people_total} person detections")

    def _recover(self, image: np.ndarray, path: Path | None, scale: float, camera: PhotoCamera,
                 tracking: bool = False) -> pipeline.PeopleList:
        detections = None
        if self.keypoints is not None and path is not None:
            h, w = image.shape[:2]
            detections = self.keypoints.detections(path, (w, h), scale, self.options.min_confidence,
                                                   self.options.max_people)
        detector = None if detections is not None else self.detector(tracking)
        return pipeline.recover_people(self.engine, detector, image, detections, self.options.settings,
                                       camera=camera)


def _reason(exc: Exception, path: Path) -> str:
    """One line for the user; our own errors already name the file, which the caller prints anyway."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[len(str(path)) + 2:] if text.startswith(f"{path}: ") else text
