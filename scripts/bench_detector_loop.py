"""The detector-in-the-loop benchmark (``benchmarks/detector_loop.py``): rendered people, the real detector, MEGA.

    python scripts/bench_detector_loop.py [--model keypoints=resources/default] [--model NAME=DIR ...]
                                          [--main 160] [--hard 64] [--out resources/bench/detector_loop.json]

Every model runs deterministic, without and with the fit to the keypoints, and (for a model that reads them)
without and with the detector's 3D landmarks, on the same detected people; MediaPipe's own 3D landmarks are
scored beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench import RESULTS_DIR  # noqa: E402
from benchmarks.detector_loop import run, tune_refinement  # noqa: E402
from training.evaluate import EXPECTED_CODES_SUFFIX  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None,
                        help="NAME=DIR, repeatable; a NAME ending in +expected_codes decodes the expected codes, the "
                             "others the argmax codes (default: the shipped model as the engine runs it)")
    parser.add_argument("--main", type=int, default=160, help="people of the main split")
    parser.add_argument("--hard", type=int, default=64, help="people of the hard-poses split")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "detector_loop.json")
    parser.add_argument("--tune", default=None, metavar="W1,W2,...",
                        help="instead: PA-MPJPE of the fit for each value of --tune-field on the tuning split, "
                             "with the last --model -> resources/bench/detector_loop_tuning.json")
    parser.add_argument("--tune-field", default="landmark_weight",
                        help="the RefineConfig field --tune varies (default: landmark_weight)")
    args = parser.parse_args()

    from megaviewer.io.atomic import atomic_write_text

    models = dict(m.split("=", 1) for m in args.model) if args.model else {"shipped" + EXPECTED_CODES_SUFFIX: None}
    if args.tune:
        from megaviewer.engine import Engine

        folder = list(models.values())[-1]
        report = tune_refinement(Engine.from_pretrained(folder), [float(w) for w in args.tune.split(",")],
                                      field=args.tune_field)
        report["model"] = str(folder or "resources/default")
        field = "" if args.tune_field == "landmark_weight" else f" --tune-field {args.tune_field}"
        report["command"] = f"python scripts/bench_detector_loop.py --model x={folder} --tune {args.tune}{field}"
        out = "detector_loop_tuning.json" if args.tune_field == "landmark_weight" else \
            f"detector_loop_tuning_{args.tune_field}.json"
        atomic_write_text(RESULTS_DIR / out, json.dumps(report, indent=2) + "\n")
        return
    report = run(models, ("main", "hard"), {"main": args.main, "hard": args.hard})
    report["models"] = {name: str(folder) if folder else "resources/default" for name, folder in models.items()}
    report["command"] = "python scripts/bench_detector_loop.py " + " ".join(f"--model {n}={f}" for n, f in
                                                                            (args.model and models.items() or []))
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
