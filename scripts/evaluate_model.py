"""Score a model's benchmark with the current evaluation and write it into the model's metrics.json.

    python scripts/evaluate_model.py [--model resources/default] [--engine-only] [--threads 2]

A recipe (``megaviewer-train recipe``) records its model's benchmark (:func:`training.evaluate.benchmark`: the
network alone, the same people without landmarks, what the engine returns by default, the hard poses, the
pre-trained model's APD) together with its training record (steps, hours, recipe, machine). When the evaluation
or the engine's decoding changes, this script scores the model again on the same people, observations and
samples and replaces the benchmark's sections, leaving the training record as it is. ``--engine-only`` adds or
replaces only the ``"engine"`` section (what :meth:`megaviewer.engine.Engine.recover` returns by default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TRAINING_RECORD = ("stage_minutes", "train_hours", "recipe", "machine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="MEGA folder (default: the shipped one)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="default: the model folder's tokenizer/, else the shipped one")
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="pre-trained model for the APD (default: the shipped one with the shipped model)")
    parser.add_argument("--engine-only", action="store_true", help="score only what the engine returns")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from megaviewer.body.assets import BodyAssets
    from megaviewer.io.atomic import atomic_write_text
    from megaviewer.model.mega import load_mega
    from megaviewer.paths import default_model_dir, resources_dir
    from training.evaluate import (
        BENCHMARK_PEOPLE,
        benchmark,
        build_eval_set,
        evaluate,
        format_report,
        format_table,
        load_for_evaluation,
        observations_for,
    )

    torch.set_num_threads(args.threads)
    folder = args.model or default_model_dir()
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    model, tokenizer, _ = load_for_evaluation(folder, args.tokenizer)
    regressor = BodyAssets.load(tokenizer.config.body).coco_regressor
    start = time.perf_counter()
    if args.engine_only:
        data = build_eval_set(tokenizer, BENCHMARK_PEOPLE, obs=observations_for(model))
        engine = evaluate(model, tokenizer, regressor, data, placement="engine")
        print(format_table(engine))
        metrics["engine"] = engine
    else:
        pretrained = args.pretrained or (resources_dir() / "pretrained" if args.model is None else None)
        result = benchmark(model, tokenizer, regressor,
                           unconditional_model=load_mega(pretrained) if pretrained is not None else None)
        print(format_report(result))
        metrics = {**result, **{k: metrics[k] for k in TRAINING_RECORD if k in metrics}}
        metrics.setdefault("stage_minutes", {})["evaluation_min"] = (time.perf_counter() - start) / 60
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2))
    print(f"wrote {'the engine section' if args.engine_only else 'the benchmark'} into {metrics_path}")


if __name__ == "__main__":
    main()
