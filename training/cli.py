"""``megaviewer-train``: train and evaluate the tokenizer and MEGA from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _tokenizer_parser(sub) -> None:
    p = sub.add_parser("tokenizer", help="train the Mesh-VQ-VAE tokenizer on synthetic Anny meshes")
    p.add_argument("--out", default="runs/tokenizer", help="run folder (checkpoints, TensorBoard, final/)")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--channels", default="", help="conv widths per level, e.g. 16,32,64")
    p.add_argument("--eval-count", type=int, default=1024, help="held-out meshes evaluated at the end")

    e = sub.add_parser("eval-tokenizer", help="evaluate a tokenizer checkpoint on held-out synthetic meshes")
    e.add_argument("checkpoint", nargs="?", default=None, help="checkpoint folder (default: shipped)")
    e.add_argument("--count", type=int, default=1024)
    e.add_argument("--json", default=None, help="write the metrics to this JSON file")


def _run_tokenizer(args) -> int:
    from training.tokenizer import config_from_args, evaluate_tokenizer, train_tokenizer, write_metrics

    cfg = config_from_args(args)
    final = train_tokenizer(cfg)
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.meshes import SyntheticMeshes

    if final.name == "final":
        result = evaluate_tokenizer(MeshVQVAE.from_pretrained(final), SyntheticMeshes(), args.eval_count)
        write_metrics(final / "metrics.json", result)
        print(json.dumps(result, indent=2))
    return 0


def _run_eval_tokenizer(args) -> int:
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.meshes import SyntheticMeshes
    from training.tokenizer import evaluate_tokenizer, write_metrics

    model = MeshVQVAE.from_pretrained(args.checkpoint)
    result = evaluate_tokenizer(model, SyntheticMeshes(), args.count)
    print(json.dumps(result, indent=2))
    if args.json:
        write_metrics(Path(args.json), result)
    return 0


COMMANDS = {"tokenizer": _run_tokenizer, "eval-tokenizer": _run_eval_tokenizer}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="megaviewer-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _tokenizer_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"megaviewer-train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
