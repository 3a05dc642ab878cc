"""Reproduce the shipped models from scratch on a CPU: ``megaviewer-train recipe default`` (or ``quick``).

Prints up front how many hours the recipe takes, then runs tokenizer -> mesh pool -> pre-training ->
keypoint-conditioned training (with the default recipe: two warm restarts, the second with a keypoint lifter) ->
evaluation and installs the result into ``resources/``. Every stage resumes
where it stopped: rerun the same command. ``--state DIR`` carries the run across machines: an empty stage
starts from the checkpoint saved there, and ``megaviewer-train save-state default --state DIR`` saves them.

    python scripts/train_default.py [--quick] [--runs DIR] [--state DIR] [--threads N] [--no-install]
                                    [--estimate] [--until tokenizer|pretrain|conditioned]
"""

from __future__ import annotations

import argparse
import sys

from training.cli import main as train_cli


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 'quick' recipe (at most 90 minutes)")
    args, rest = parser.parse_known_args()
    return train_cli(["recipe", "quick" if args.quick else "default", *rest])


if __name__ == "__main__":
    sys.exit(main())
