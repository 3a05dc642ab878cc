"""Score what the engine returns by default on a model's benchmark and add it to the model's metrics.json.

    python scripts/evaluate_engine.py [--model resources/default] [--threads 2]

The evaluation of a recipe (``megaviewer-train recipe``) scores the network alone and, under ``"engine"``, the
meshes :meth:`megaviewer.engine.Engine.recover` returns by default: each hypothesis's rotation and camera
fitted to the person's keypoints, then its body (``training.evaluate``, ``placement="engine"``). This script adds
that section to a model whose metrics.json predates it, on the same people, observations and samples as its
evaluation (the benchmark's 512 people), and leaves the rest of the file as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="MEGA folder (default: the shipped one)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="default: the model folder's tokenizer/, else the shipped one")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from megaviewer.body.assets import BodyAssets
    from megaviewer.engine import tokenizer_folder
    from megaviewer.io.atomic import atomic_write_text
    from megaviewer.model.mega import load_mega
    from megaviewer.paths import default_model_dir
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.evaluate import BENCHMARK_PEOPLE, build_eval_set, evaluate, format_table, observations_for

    torch.set_num_threads(args.threads)
    folder = args.model or default_model_dir()
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    model = load_mega(folder)
    tokenizer = MeshVQVAE.from_pretrained(tokenizer_folder(folder, args.tokenizer))
    regressor = BodyAssets.load(tokenizer.config.body).coco_regressor
    data = build_eval_set(tokenizer, BENCHMARK_PEOPLE, obs=observations_for(model))
    start = time.perf_counter()
    engine = evaluate(model, tokenizer, regressor, data, placement="engine")
    engine["minutes"] = round((time.perf_counter() - start) / 60, 1)
    engine["threads"] = args.threads
    print(format_table(engine))
    metrics["engine"] = engine
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2))
    print(f"added 'engine' to {metrics_path}")


if __name__ == "__main__":
    main()
