"""Time to accuracy of tokenizer training, recipe against recipe (``benchmarks/tokenizer_speed.py``).

    python scripts/bench_tokenizer_training.py [--only baseline,default] [--eval-every 500] [--threads 1]
                                               [--score-only]

Writes ``resources/bench/tokenizer_time_to_pve.json`` (runs already recorded there are kept).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench import RESULTS_DIR  # noqa: E402
from benchmarks.tokenizer_speed import RUNS, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(RUNS), help="comma-separated run names")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "tokenizer_time_to_pve.json")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench_tokenizer"))
    parser.add_argument("--eval-every", type=int, default=500, help="steps between scored checkpoints")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--note", default=None, help="conditions of the measurement, recorded in the report")
    parser.add_argument("--score-only", action="store_true", help="score the run folders as they are")
    args = parser.parse_args()
    run([n for n in args.only.split(",") if n], args.out, args.runs, args.eval_every, args.threads, args.note,
        train=not args.score_only)


if __name__ == "__main__":
    main()
