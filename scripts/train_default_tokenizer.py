"""Reproduce the shipped tokenizer (``resources/tokenizer``) from scratch on a CPU.

Trains the Mesh-VQ-VAE on synthetic Anny meshes from the pose prior with the shipped settings, evaluates
it on a held-out set (meshes from a seed no training stream uses), and installs the result with its
metrics and the wall-clock training time. Resumes if interrupted (rerun the same command).

    python scripts/train_default_tokenizer.py [--out runs/tokenizer_default] [--steps 16000] [--no-install]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from megaviewer.paths import tokenizer_dir
from megaviewer.tokenizer.model import MeshVQVAE, TokenizerConfig
from training.data.meshes import SyntheticMeshes
from training.tokenizer import TokenizerTrainConfig, evaluate_tokenizer, train_tokenizer, write_metrics

PVE_TARGET_MM = 5.0  # the foundation issue's target on held-out meshes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tokenizer_default")
    parser.add_argument("--steps", type=int, default=16000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--eval-count", type=int, default=1024)
    parser.add_argument("--no-install", action="store_true", help="do not copy the result into resources/")
    args = parser.parse_args()

    cfg = TokenizerTrainConfig(out_dir=args.out, steps=args.steps, batch_size=args.batch_size,
                               threads=args.threads, ckpt_every=1000,
                               tokenizer=TokenizerConfig(channels=[16, 32, 64]))
    start = time.perf_counter()
    final = train_tokenizer(cfg)
    train_minutes = (time.perf_counter() - start) / 60
    install(final, args.eval_count, train_minutes, args.steps, args.batch_size, not args.no_install)


def install(final: Path, eval_count: int, train_minutes: float | None, steps: int, batch: int,
            copy: bool) -> dict:
    """Evaluate a trained tokenizer and (optionally) install it as the shipped one."""
    model = MeshVQVAE.from_pretrained(final)
    result = evaluate_tokenizer(model, SyntheticMeshes(), eval_count)
    result.update({
        "pve_target_mm": PVE_TARGET_MM,
        "train_steps": steps, "batch_size": batch,
        "train_minutes_this_run": train_minutes,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
    })
    write_metrics(final / "metrics.json", result)
    print(json.dumps(result, indent=2))
    if copy:
        dest = tokenizer_dir()
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "config.json", "metrics.json"):
            shutil.copy2(final / name, dest / name)
        print(f"installed into {dest}")
    return result


if __name__ == "__main__":
    main()
