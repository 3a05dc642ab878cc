"""Time to accuracy of conditioned MEGA training, recipe against recipe (``benchmarks/training_speed.py``).

    python scripts/bench_training.py [--only baseline,lr3e-3] [--eval-every 300] [--threads 0]
                                     [--max-minutes 90] [--target 77.7] [--tokenizer DIR] [--pretrained DIR]

Writes ``resources/bench/train_throughput.json`` (variants already measured there are kept).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench import RESULTS_DIR  # noqa: E402
from benchmarks.training_speed import VARIANTS, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variant names")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "train_throughput.json")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench_training"))
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--max-minutes", type=float, default=90.0, help="stop a variant after this much training")
    parser.add_argument("--target", type=float, default=77.7, help="deterministic PA-MPJPE to reach, mm")
    parser.add_argument("--people", type=int, default=512)
    parser.add_argument("--note", default=None, help="conditions of the measurement, recorded in the report")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: the shipped one)")
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="pre-trained MEGA every variant starts from (default: the shipped one)")
    args = parser.parse_args()
    run([n for n in args.only.split(",") if n], args.out, args.runs, args.eval_every, args.threads,
        args.max_minutes, args.target, args.people, args.note, args.tokenizer, args.pretrained)


if __name__ == "__main__":
    main()
