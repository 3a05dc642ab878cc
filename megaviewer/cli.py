"""The ``megaviewer`` command: the desktop app, or ``megaviewer infer`` for headless batch recovery.

This module only parses arguments and reports. ``megaviewer`` (optionally with a photo or video path) starts
the GUI (:mod:`megaviewer.gui.app`, imported only then, so the headless command never needs Qt).
``megaviewer infer INPUT... --out DIR`` runs :mod:`megaviewer.app.batch` over photos, folders (top level,
sorted) and videos: overlays, side views, uncertainty heatmaps and meshes, named by
:func:`megaviewer.app.exports.output_name`. ``--model DIR`` takes any MEGA checkpoint over the shipped
tokenizer, whatever it is conditioned on (an image-conditioned one reads each person's crop of the photo).
One bad input prints one line and the batch goes on; a ``model: NAME (KINDS, BODY)`` line and a summary
end the run. Exit codes: 0 when at least one input was processed (finding nobody in a photo is not a
failure), 1 when every input failed or the model could not be loaded, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from megaviewer.app.exports import FORMATS, ExportOptions
from megaviewer.intrinsics import DEFAULT_DIAGONAL_FOV_DEG
from megaviewer.settings import DEFAULTS, MODES

if TYPE_CHECKING:
    from megaviewer.engine import Engine

DEFAULT_FORMATS = ",".join(ExportOptions().formats)


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
    from megaviewer.vision.detector import PoseDetector

    d = DEFAULTS
    p = argparse.ArgumentParser(prog="megaviewer infer", description="Recover the 3D body meshes of the people "
                                "in photos and videos, headless.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (top level) or video files")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    p.add_argument("--mode", choices=MODES, default=d.mode)
    p.add_argument("--samples", type=int, default=None, metavar="Q",
                   help=f"hypotheses per person in stochastic mode (default {d.num_samples})")
    p.add_argument("--steps", type=int, default=d.steps, metavar="T",
                   help=f"generation steps (stochastic; default {d.steps})")
    p.add_argument("--temperature", type=float, default=d.temperature, metavar="A",
                   help=f"sampling temperature (default {d.temperature:g})")
    p.add_argument("--seed", type=int, default=d.seed, metavar="S", help=f"random seed (default {d.seed})")
    p.add_argument("--no-camera-fit", dest="camera_fit", action="store_false", default=d.fit_camera,
                   help="keep the network's own rotation and camera instead of fitting them to the detected "
                   "keypoints (the fit is on by default; see megaviewer.camera_fit)")
    p.add_argument("--no-refine", dest="refine", action="store_false", default=d.refine,
                   help="keep the network's bodies instead of fitting each one to the detected keypoints after the "
                   "camera fit (on by default; see megaviewer.refine)")
    p.add_argument("--argmax-codes", dest="expected_codes", action="store_false", default=d.expected_codes,
                   help="decode the most likely code of each token where the generation takes an argmax, as the "
                   "paper does, instead of the expected code under the model's distribution (the default; see "
                   "megaviewer.generate)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    p.add_argument("--formats", default=DEFAULT_FORMATS,
                   help=f"comma list of {','.join(FORMATS)} (default {DEFAULT_FORMATS}; mp4: overlay video; "
                   "scene: all people of a picture in one camera-frame GLB)")
    p.add_argument("--fov", type=float, default=DEFAULT_DIAGONAL_FOV_DEG, metavar="DEG",
                   help="diagonal field of view assumed for photos without an EXIF focal length and for videos "
                   f"(default {DEFAULT_DIAGONAL_FOV_DEG:g}; see megaviewer.intrinsics)")
    p.add_argument("--keypoints", type=Path, metavar="FILE.json",
                   help="COCO-format keypoints from your own detector for some or all images (MediaPipe "
                   "is then not used for those; videos always use MediaPipe); an entry may add "
                   "'landmarks_3d': 33 x (x, y, z[, visibility]) in metres around the hips")
    p.add_argument("--model", type=Path, metavar="DIR", help="checkpoint folder (default: the shipped model)")
    p.add_argument("--max-people", type=int, default=PoseDetector.max_people, metavar="N",
                   help=f"people per image (default {PoseDetector.max_people})")
    p.add_argument("--every", type=int, default=1, metavar="N", help="videos: process every N-th frame")
    p.add_argument("--min-confidence", type=float, default=PoseDetector.min_confidence,
                   help=f"keypoint confidence threshold ({PoseDetector.min_confidence:g})")
    p.add_argument("--frame", choices=("camera", "canonical"), default=ExportOptions.frame,
                   help="mesh exports in the photo's camera frame (y down) or upright canonical (y up)")
    p.add_argument("--topology", choices=("display", "working"), default=ExportOptions.topology,
                   help="mesh exports on the smooth display mesh or the model's working mesh")
    p.add_argument("--all-samples", action="store_true", help="also export every hypothesis, not only the mean")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _infer(argv: list[str], engine: Engine | None) -> int:
    from megaviewer.app.batch import BatchJob, BatchOptions, Summary, expand_inputs

    parser = build_infer_parser()
    args = parser.parse_args(argv)
    formats = tuple(dict.fromkeys(f.strip().lower() for f in args.formats.split(",") if f.strip()))
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        parser.error(f"--formats: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(FORMATS)}")
    if args.samples is None:
        args.samples = DEFAULTS.num_samples if args.mode == "stochastic" else 1
    if args.samples < 1 or args.steps < 1 or args.every < 1 or args.max_people < 1:
        parser.error("--samples, --steps, --every and --max-people must be >= 1")
    if args.mode == "deterministic" and args.samples != 1:
        parser.error("--samples needs --mode stochastic (deterministic mode returns one mesh)")
    if not 0.0 <= args.min_confidence <= 1.0:
        parser.error("--min-confidence must lie in [0, 1]")
    if not 1.0 <= args.fov <= 170.0:
        parser.error("--fov must lie in [1, 170] degrees")
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
    missing = keypoints.people_without_landmarks() if keypoints is not None else 0
    if missing and "landmarks" in engine.kinds:
        what = (f"{engine.name} lifts them from the keypoints, less accurately than MediaPipe measures them"
                if engine.lifts_landmarks else
                f"{engine.name} is trained to read MediaPipe's landmarks and is less accurate without them")
        print(f"note: {args.keypoints} gives no 3D landmarks for {missing} {'person' if missing == 1 else 'people'}; "
              f"{what} (README: Status of the shipped models)", file=sys.stderr)
    settings = DEFAULTS.with_(mode=args.mode, num_samples=args.samples, steps=args.steps,
                              temperature=args.temperature, seed=args.seed, fit_camera=args.camera_fit,
                              refine=args.refine, expected_codes=args.expected_codes)
    options = BatchOptions(out=args.out, settings=settings, max_people=args.max_people,
                           min_confidence=args.min_confidence, every=args.every, quiet=args.quiet, fov_deg=args.fov,
                           exports=ExportOptions(formats, args.frame, args.topology, args.all_samples))
    items, failures = expand_inputs(args.inputs)
    for name, reason in failures:
        print(f"{name}: {reason}", file=sys.stderr)
    summary = BatchJob(engine, options, keypoints, Summary(failed=list(failures))).run(items)
    print(f"model: {engine.label()}")  # which checkpoint made these meshes, what it read, which body
    print(summary.report(args.out))
    return 0 if summary.processed or summary.no_person else 1


def _load_engine(model: Path | None, device: str | None) -> Engine | None:
    from megaviewer.engine import Engine

    try:
        return Engine.from_pretrained(model, device=device)
    except (FileNotFoundError, ValueError, OSError, RuntimeError, ImportError) as exc:
        where = model if model is not None else "the shipped model (resources/default)"
        print(f"megaviewer infer: cannot load {where}: {exc} (pass --model DIR to use another checkpoint)",
              file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
