"""The ``megaviewer`` command: the desktop app, or ``megaviewer infer`` for headless batch recovery.

``megaviewer`` (optionally with a photo or video path) starts the GUI (:mod:`megaviewer.gui.app`, imported
only then, so the headless command never needs Qt). ``megaviewer infer INPUT... --out DIR`` detects the
people in photos, folders (top level, sorted) and videos, recovers their meshes and writes overlays, side
views, uncertainty heatmaps and meshes. One bad input prints one line and the batch goes on; a summary
ends the run. Exit codes: 0 when at least one input was processed (finding nobody in a photo is not a
failure), 1 when every input failed or the model could not be loaded, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from megaviewer.engine import Engine

FORMATS = ("obj", "ply", "glb", "npz", "png", "mp4")
DEFAULT_FORMATS = "obj,npz,png"


def main(argv: Sequence[str] | None = None, engine: Engine | None = None) -> int:
    """Entry point; ``engine`` lets library users and tests pass a ready engine to ``infer``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "infer":
        try:
            return _infer(args[1:], engine)
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if args and args[0] in ("-h", "--help"):
        print("usage: megaviewer [PHOTO_OR_VIDEO] [GUI options]   start the desktop app\n"
              "       megaviewer infer INPUT... --out DIR [options]  headless batch recovery "
              "(see `megaviewer infer --help`)")
        return 0
    if args and args[0] == "--version":
        from megaviewer import __version__

        print(f"megaviewer {__version__}")
        return 0
    return launch_gui(args, engine)


def launch_gui(argv: list[str], engine: Engine | None = None) -> int:
    """Start the desktop app, or say clearly why it cannot start (no display, Qt missing)."""
    if (sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
            and not os.environ.get("QT_QPA_PLATFORM")):
        print("megaviewer: no display found (DISPLAY and WAYLAND_DISPLAY are unset), so the desktop app cannot "
              "start. For headless use run `megaviewer infer INPUT... --out DIR` (see `megaviewer infer --help`).",
              file=sys.stderr)
        return 1
    try:
        from megaviewer.gui.app import run
    except ImportError as exc:
        print(f"megaviewer: the desktop app is not available ({exc}). Headless recovery still works: "
              "`megaviewer infer --help`.", file=sys.stderr)
        return 1
    return int(run(argv, engine=engine) or 0) if engine is not None else int(run(argv) or 0)


# ------------------------------------------------------------------------------------------------- infer
def build_infer_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="megaviewer infer", description="Recover the 3D body meshes of the people "
                                "in photos and videos, headless.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (top level) or video files")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    p.add_argument("--mode", choices=("deterministic", "stochastic"), default="deterministic")
    p.add_argument("--samples", type=int, default=None, metavar="Q",
                   help="hypotheses per person in stochastic mode (default 10)")
    p.add_argument("--steps", type=int, default=5, metavar="T", help="generation steps (stochastic; default 5)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="A", help="sampling temperature (default 1)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--no-camera-fit", dest="camera_fit", action="store_false",
                   help="keep the network's own rotation and camera instead of fitting them to the detected "
                   "keypoints (the fit is on by default; see megaviewer.camera_fit)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    p.add_argument("--formats", default=DEFAULT_FORMATS,
                   help=f"comma list of {','.join(FORMATS)} (default {DEFAULT_FORMATS}; mp4: overlay video)")
    p.add_argument("--keypoints", type=Path, metavar="FILE.json",
                   help="COCO-format keypoints from your own detector for some or all images (MediaPipe "
                   "is then not used for those; videos always use MediaPipe)")
    p.add_argument("--model", type=Path, metavar="DIR", help="checkpoint folder (default: the shipped model)")
    p.add_argument("--max-people", type=int, default=4, metavar="N", help="people per image (default 4)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="videos: process every N-th frame")
    p.add_argument("--min-confidence", type=float, default=0.5, help="keypoint confidence threshold (0.5)")
    p.add_argument("--frame", choices=("camera", "canonical"), default="camera",
                   help="mesh exports in the photo's camera frame (y down) or upright canonical (y up)")
    p.add_argument("--topology", choices=("display", "working"), default="display",
                   help="mesh exports on the smooth display mesh or the model's working mesh")
    p.add_argument("--all-samples", action="store_true", help="also export every hypothesis, not only the mean")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@dataclass
class Summary:
    processed: list[str] = field(default_factory=list)
    no_person: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    people: int = 0
    frames: int = 0
    outputs: int = 0

    def report(self, out_dir: Path) -> str:
        lines = [f"Summary: {len(self.processed) + len(self.no_person) + len(self.failed)} inputs: "
                 f"{len(self.processed)} processed ({self.people} {'person' if self.people == 1 else 'people'}"
                 f"{f', {self.frames} video frames' if self.frames else ''}), {len(self.no_person)} without people, "
                 f"{len(self.failed)} failed; {self.outputs} files written to {out_dir}"]
        lines += [f"  no person found: {name}" for name in self.no_person]
        lines += [f"  failed: {name}: {reason}" for name, reason in self.failed]
        return "\n".join(lines)


def _infer(argv: list[str], engine: Engine | None) -> int:
    parser = build_infer_parser()
    args = parser.parse_args(argv)
    formats = [f.strip().lower() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        parser.error(f"--formats: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(FORMATS)}")
    if args.samples is None:
        args.samples = 10 if args.mode == "stochastic" else 1
    if args.samples < 1 or args.steps < 1 or args.every < 1 or args.max_people < 1:
        parser.error("--samples, --steps, --every and --max-people must be >= 1")
    if args.mode == "deterministic" and args.samples != 1:
        parser.error("--samples needs --mode stochastic (deterministic mode returns one mesh)")
    if not 0.0 <= args.min_confidence <= 1.0:
        parser.error("--min-confidence must lie in [0, 1]")
    keypoints = None
    if args.keypoints is not None:
        from megaviewer.vision.pipeline import KeypointsFile, KeypointsFileError

        try:
            keypoints = KeypointsFile(args.keypoints)
        except KeypointsFileError as exc:
            parser.error(str(exc))
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"megaviewer infer: cannot create the output folder {args.out}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    if engine is None:
        engine = _load_engine(args.model, args.device)
        if engine is None:
            return 1
    items, failures = expand_inputs(args.inputs)
    summary = Summary(failed=list(failures))
    for name, reason in failures:
        print(f"{name}: {reason}", file=sys.stderr)
    job = InferJob(engine=engine, args=args, formats=formats, keypoints=keypoints, summary=summary)
    job.run(items)
    print(summary.report(args.out))
    ok = len(summary.processed) + len(summary.no_person)
    return 0 if ok > 0 else 1


def _load_engine(model: Path | None, device: str | None) -> Engine | None:
    from megaviewer.engine import Engine

    try:
        return Engine.from_pretrained(model, device=device)
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as exc:
        where = model if model is not None else "the shipped model (resources/default)"
        print(f"megaviewer infer: cannot load {where}: {exc} (pass --model DIR to use another checkpoint)",
              file=sys.stderr)
        return None


# ------------------------------------------------------------------------------------------------ inputs
@dataclass
class InputItem:
    path: Path
    kind: str  # "image" | "video"
    label: str  # unique output stem


def expand_inputs(specs: Sequence[str]) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Files and folders (top level, sorted, image/video extensions only) -> items + (name, reason) failures."""
    from megaviewer.vision.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, kind_of

    items: list[InputItem] = []
    failures: list[tuple[str, str]] = []
    labels: set[str] = set()

    def add(path: Path, kind: str) -> None:
        label, n = path.stem, 1
        while label in labels:
            n += 1
            label = f"{path.stem}_{n}"
        labels.add(label)
        items.append(InputItem(path, kind, label))

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")
                           and f.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
            if not files:
                failures.append((spec, "folder holds no image or video files"))
            for f in files:
                add(f, "video" if f.suffix.lower() in VIDEO_EXTENSIONS else "image")
        elif not path.exists():
            failures.append((spec, "file not found"))
        else:
            add(path, "video" if kind_of(path) == "video" else "image")
    return items, failures


class InferJob:
    """Runs ``megaviewer infer`` over the expanded inputs, writing outputs and filling the summary."""

    def __init__(self, engine: Engine, args: argparse.Namespace, formats: list[str], keypoints, summary: Summary):
        self.engine, self.args, self.formats, self.keypoints, self.summary = engine, args, formats, keypoints, summary
        self._detectors: dict[bool, object] = {}
        self._assets = None

    def detector(self, tracking: bool = False):
        if tracking not in self._detectors:
            from megaviewer.vision.detector import PoseDetector

            self._detectors[tracking] = PoseDetector(min_confidence=self.args.min_confidence,
                                                     max_people=1 if tracking else self.args.max_people,
                                                     tracking=tracking)
        return self._detectors[tracking]

    @property
    def assets(self):
        if self._assets is None:
            from megaviewer.body.assets import BodyAssets

            self._assets = BodyAssets.load(self.engine.tokenizer.config.body)
        return self._assets

    def run(self, items: list[InputItem]) -> None:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, CI), where it would print a line per update
        bar = tqdm(items, desc="infer", unit="input", disable=True if self.args.quiet else None, file=sys.stderr)
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
            det.close()

    # ------------------------------------------------------------------------------------- per input
    def _image(self, item: InputItem) -> None:
        from tqdm import tqdm

        from megaviewer.vision.images import read_image

        loaded = read_image(item.path)
        people = self._recover(loaded.image, item.path, loaded.scale)
        if not people:
            self.summary.no_person.append(str(item.path))
            tqdm.write(f"{item.path}: {people.message}")
            return
        self._write(loaded.image, people, self.args.out, item.label)
        self.summary.processed.append(str(item.path))
        self.summary.people += len(people)
        tqdm.write(f"{item.path}: {people.message}")

    def _video(self, item: InputItem) -> None:
        from tqdm import tqdm

        from megaviewer.io.atomic import atomic_path
        from megaviewer.vision.sources import VideoSource

        tracking = self.args.max_people == 1
        if tracking:
            self.detector(True).reset()
        folder = self.args.out / item.label
        frames = people_total = 0
        writer = None
        with VideoSource(item.path) as source, contextlib.ExitStack() as stack:
            total = (source.frame_count + self.args.every - 1) // self.args.every if source.frame_count else None
            bar = tqdm(total=total, desc=item.path.name, unit="frame", leave=False,
                       disable=True if self.args.quiet else None, file=sys.stderr)
            stack.callback(bar.close)
            while (frame := source.read()) is not None:
                index = source.frames_read - 1
                if index % self.args.every:
                    continue
                people = self._recover(frame, None, 1.0, tracking=tracking)
                overlay = self._write(frame, people, folder, f"frame_{index:06d}") if people else frame
                if "mp4" in self.formats:
                    if writer is None:
                        writer = stack.enter_context(_VideoOut(self.args.out / f"{item.label}_overlay.mp4",
                                                               (source.fps or 25.0) / self.args.every, atomic_path))
                    writer.write(overlay)
                frames += 1
                people_total += len(people)
                bar.update(1)
        if writer is not None:
            self.summary.outputs += 1
        if frames == 0:
            raise ValueError("the video has no frames to process")
        self.summary.frames += frames
        self.summary.people += people_total
        (self.summary.processed if people_total else self.summary.no_person).append(str(item.path))
        tqdm.write(f"{item.path}: {frames} frames, {people_total} person detections")

    def _recover(self, image, path: Path | None, scale: float, tracking: bool = False):
        from megaviewer.vision.pipeline import recover_people

        detections = None
        if self.keypoints is not None and path is not None:
            h, w = image.shape[:2]
            detections = self.keypoints.detections(path, (w, h), scale, self.args.min_confidence,
                                                   self.args.max_people)
        detector = None if detections is not None else self.detector(tracking)
        stochastic = self.args.mode == "stochastic"
        return recover_people(self.engine, detector, image, detections=detections, mode=self.args.mode,
                              num_samples=self.args.samples if stochastic else 1, steps=self.args.steps,
                              temperature=self.args.temperature, seed=self.args.seed, return_trace=False,
                              fit_camera=self.args.camera_fit)

    def _write(self, image, people, folder: Path, stem: str):
        """Every requested output of one image; returns the overlay (for videos)."""
        import numpy as np

        from megaviewer.io.export import export_mesh, export_npz
        from megaviewer.render.offscreen import (
            display_mesh,
            display_scalars,
            render_overlay,
            render_sd_heatmap,
            render_side_view,
        )

        faces_display = self.assets.display_faces.numpy()
        means = [display_mesh(p.result.mean_camera, self.assets)[0] for p in people]
        overlay = None
        if "png" in self.formats or "mp4" in self.formats:
            overlay = render_overlay(image, means, faces_display, people[0].result.focal)
        if "png" in self.formats:
            self._png(folder / f"{stem}_overlay.png", overlay)
            self._png(folder / f"{stem}_side.png", render_side_view(means, faces_display))
        h, w = image.shape[:2]
        for i, person in enumerate(people):
            res = person.result
            base = folder / f"{stem}_person{i}"
            if "png" in self.formats and res.num_samples > 1:
                sd = display_scalars(res.vertex_sd_mm, self.assets)
                self._png(base.with_name(base.name + "_sd.png"), render_sd_heatmap(means[i], faces_display, sd))
            if "npz" in self.formats:
                export_npz(base.with_suffix(".npz"), res, i, detection=person.detection, image_size=(w, h))
                self.summary.outputs += 1
            verts = res.camera_vertices if self.args.frame == "camera" else res.canonical_vertices
            meshes = [("", verts.mean(dim=0))]
            if self.args.all_samples and res.num_samples > 1:
                meshes += [(f"_sample{q}", verts[q]) for q in range(res.num_samples)]
            for suffix, v in meshes:
                if self.args.topology == "display":
                    v, faces = display_mesh(v, self.assets)
                else:
                    v, faces = np.asarray(v), res.faces.numpy()
                for fmt in ("obj", "ply", "glb"):
                    if fmt in self.formats:
                        export_mesh(base.with_name(f"{base.name}{suffix}.{fmt}"), v, faces)
                        self.summary.outputs += 1
        return overlay if overlay is not None else image

    def _png(self, path: Path, image) -> None:
        import cv2

        from megaviewer.io.atomic import atomic_write_bytes
        from megaviewer.io.export import ExportError

        ok, data = cv2.imencode(".png", image)
        if not ok:
            raise ExportError(f"cannot encode {path} as PNG")
        try:
            atomic_write_bytes(path, data.tobytes())
        except OSError as exc:
            raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self.summary.outputs += 1


class _VideoOut:
    """An mp4v overlay video written to a temporary file and renamed into place when complete."""

    def __init__(self, path: Path, fps: float, atomic_path):
        self.path, self.fps, self._atomic = path, fps, atomic_path(path)
        self._writer = None

    def __enter__(self) -> _VideoOut:
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, frame) -> None:
        import cv2

        if self._writer is None:
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"cannot open a video writer for {self.path}")
        self._writer.write(frame)

    def __exit__(self, *exc) -> None:
        if self._writer is not None:
            self._writer.release()
        self._atomic.__exit__(*exc)


def _reason(exc: Exception, path: Path) -> str:
    """One line for the user; our own errors already name the file, which the caller prints anyway."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[len(str(path)) + 2:] if text.startswith(f"{path}: ") else text


if __name__ == "__main__":
    sys.exit(main())
