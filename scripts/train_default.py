"""Reproduce the shipped default model from scratch on a CPU: tokenizer -> mesh pool -> self-supervised
pre-training -> keypoint-conditioned training -> evaluation -> install into ``resources/``.

Every stage resumes where it stopped (rerun the same command after an interruption), and each stage's
wall-clock time is recorded in ``resources/default/metrics.json`` next to the evaluation figures.

    python scripts/train_default.py [--runs runs/default] [--skip-tokenizer] [--skip-pretrain] [--no-install]
                                    [--tokenizer-recipe absolute|offsets]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_default_tokenizer import RECIPES as TOKENIZER_RECIPES  # noqa: E402
from train_default_tokenizer import SHIPPED_RECIPE as SHIPPED_TOKENIZER_RECIPE  # noqa: E402
from train_default_tokenizer import STEPS as TOKENIZER_STEPS  # noqa: E402
from train_default_tokenizer import install as install_tokenizer  # noqa: E402
from train_default_tokenizer import shipped_recipe  # noqa: E402

from megaviewer.body.assets import BodyAssets  # noqa: E402
from megaviewer.io.atomic import atomic_write_text  # noqa: E402
from megaviewer.model.mega import load_mega  # noqa: E402
from megaviewer.paths import default_model_dir, resources_dir, tokenizer_dir  # noqa: E402
from megaviewer.tokenizer.model import MeshVQVAE  # noqa: E402
from training.evaluate import BENCHMARK_PEOPLE, build_eval_set, evaluate, format_table  # noqa: E402
from training.mega_conditioned import ConditionedConfig, train_conditioned  # noqa: E402
from training.mega_pretrain import PretrainConfig, prepare_pool, pretrain  # noqa: E402
from training.tokenizer import train_tokenizer  # noqa: E402

# The shipped recipe (see README "Training"): sized for a 2-core CPU.
PRESET = "cpu_fast"
POOL_SIZE = 50_000
# Conditioned stage (session 3): half the batches fully masked (``cosine_full``; the ablation showed the full
# mask learning the observation -> pose mapping much faster at CPU budgets) and the 2D loss scored on 16 of
# the 64 samples (decoding all 64 meshes was a quarter of the step). A step takes ~0.29-0.34 s: 5,400 steps took
# 30.9 min, about 82 min end to end with the tokenizer (39.5 min), the pool (2.1) and pre-training (7.1), each
# measured in session 3 on a slice of its steps.
PRETRAIN_STEPS, TRAIN_STEPS, BATCH, LR = 1_500, 5_400, 64, 1e-3
TRAIN_MASKING, REPROJECTION_ROWS = "cosine_full", 16


def _copy_checkpoint(src: Path, dest: Path, extra: dict | None = None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copy2(src / name, dest / name)
    if extra is not None:
        atomic_write_text(dest / "metrics.json", json.dumps(extra, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/default", help="folder for all intermediate runs")
    parser.add_argument("--skip-tokenizer", action="store_true", help="use the installed resources/tokenizer")
    parser.add_argument("--tokenizer-recipe", choices=sorted(TOKENIZER_RECIPES), default=SHIPPED_TOKENIZER_RECIPE,
                        help="tokenizer training recipe (scripts/train_default_tokenizer.py)")
    parser.add_argument("--skip-pretrain", action="store_true",
                        help="start conditioned training from the installed resources/pretrained")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-install", action="store_true")
    args = parser.parse_args()
    runs = Path(args.runs)
    times: dict[str, float] = {}

    if not args.skip_tokenizer:
        start = time.perf_counter()
        tok_cfg = shipped_recipe(str(runs / "tokenizer"), threads=args.threads, recipe=args.tokenizer_recipe)
        final = train_tokenizer(tok_cfg)
        times["tokenizer_min"] = (time.perf_counter() - start) / 60
        install_tokenizer(final, 1024, times["tokenizer_min"], tok_cfg, copy=not args.no_install)
        tokenizer_folder = tokenizer_dir() if not args.no_install else final
    else:
        tokenizer_folder = tokenizer_dir()
    tokenizer = MeshVQVAE.from_pretrained(tokenizer_folder)

    start = time.perf_counter()
    pool = prepare_pool(runs / "pool.safetensors", tokenizer, POOL_SIZE, 0)
    times["pool_min"] = (time.perf_counter() - start) / 60

    common = dict(preset=PRESET, batch_size=BATCH, lr=LR, pool=str(runs / "pool.safetensors"),
                  tokenizer=str(tokenizer_folder), threads=args.threads, ckpt_every=500, warmup_steps=200)
    if args.skip_pretrain:
        pre_final = resources_dir() / "pretrained"
    else:
        start = time.perf_counter()
        pre_final = pretrain(PretrainConfig(out_dir=str(runs / "pretrain"), steps=PRETRAIN_STEPS, **common),
                             tokenizer=tokenizer, pool=pool)
        times["pretrain_min"] = (time.perf_counter() - start) / 60
    start = time.perf_counter()
    final = train_conditioned(ConditionedConfig(out_dir=str(runs / "conditioned"), steps=TRAIN_STEPS,
                                                init=str(pre_final), masking=TRAIN_MASKING,
                                                reprojection_rows=REPROJECTION_ROWS, **common),
                              tokenizer=tokenizer, pool=pool)
    times["conditioned_min"] = (time.perf_counter() - start) / 60

    start = time.perf_counter()
    regressor = BodyAssets.load().coco_regressor
    data = build_eval_set(tokenizer, BENCHMARK_PEOPLE)
    result = evaluate(load_mega(final), tokenizer, regressor, data, unconditional_model=load_mega(pre_final))
    times["evaluation_min"] = (time.perf_counter() - start) / 60
    result["stage_minutes"] = times
    result["stages_skipped"] = [name for name, skipped in (("tokenizer", args.skip_tokenizer),
                                                           ("pretrain", args.skip_pretrain)) if skipped]
    result["recipe"] = {"preset": PRESET, "pool_size": POOL_SIZE, "pretrain_steps": PRETRAIN_STEPS,
                        "train_steps": TRAIN_STEPS, "train_masking": TRAIN_MASKING,
                        "reprojection_rows": REPROJECTION_ROWS, "batch_size": BATCH, "lr": LR,
                        "tokenizer_steps": TOKENIZER_STEPS, "tokenizer_recipe": args.tokenizer_recipe,
                        "threads": torch.get_num_threads()}
    print(format_table(result))
    print(json.dumps(times, indent=2))
    atomic_write_text(runs / "metrics.json", json.dumps(result, indent=2))
    if not args.no_install:
        _copy_checkpoint(final, default_model_dir(), result)
        if not args.skip_pretrain:
            _copy_checkpoint(pre_final, resources_dir() / "pretrained")
        print(f"installed into {default_model_dir()} and {resources_dir() / 'pretrained'}")


if __name__ == "__main__":
    main()
