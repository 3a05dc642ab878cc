"""How much does a person's SD map know about where that person's body is wrong?

    python scripts/bench_uncertainty.py [--model resources/default] [--people 512] [--q 25] [--temperature 1.0]
                                        [--threads 2] [--out resources/bench/uncertainty.json]

On the benchmark's people (the evaluation set of ``resources/default/metrics.json``: same seed, observations,
batches and sampling seed, so its per-person figure is the evaluation's), the Spearman correlation of the
deterministic mesh's per-vertex error with: each person's SD map for several Q; the average SD map; the
average error map; the average SD map scaled around each joint by the person's hypotheses' joint spread, by the
joint errors a small model predicts from the spread and the observations (fitted on half of the people, scored
on the other half) and, as an oracle, by the person's true joint errors (:mod:`training.uncertainty_maps`).
Also how alike the per-person maps are to the average one and to themselves (two halves of the samples).
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
    parser.add_argument("--people", type=int, default=None, help="default: the benchmark's 512")
    parser.add_argument("--q", type=int, default=25, help="hypotheses per person")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "bench" / "uncertainty.json")
    args = parser.parse_args()

    import torch

    from megaviewer.body.assets import BodyAssets
    from megaviewer.io.atomic import atomic_write_text
    from megaviewer.paths import default_model_dir
    from training.evaluate import (
        BENCHMARK_PEOPLE,
        build_eval_set,
        conditioning_kinds,
        deterministic_mesh,
        load_for_evaluation,
        observations_for,
        stochastic_meshes,
    )
    from training.uncertainty_maps import map_report

    torch.set_num_threads(args.threads)
    folder = args.model or default_model_dir()
    model, tokenizer, _ = load_for_evaluation(folder, args.tokenizer)
    model.eval()
    tokenizer.eval()
    regressor = BodyAssets.load(tokenizer.config.body).coco_regressor.float()
    people = args.people or BENCHMARK_PEOPLE
    data = build_eval_set(tokenizer, people, obs=observations_for(model))
    gen = torch.Generator().manual_seed(0)  # as training.evaluate.evaluate
    deterministic, samples = [], []
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, people, 32):  # the evaluation's batches, so the samples are the evaluation's
            cond = model.encode_conditioning(data.conditioning(conditioning_kinds(model), slice(i, i + 32)))
            deterministic.append(deterministic_mesh(model, tokenizer, cond))
            samples.append(stochastic_meshes(model, tokenizer, cond, args.q, 5, args.temperature, gen))
    report = map_report(torch.cat(deterministic), torch.cat(samples), data.vertices[:people], regressor,
                        q_values=tuple(q for q in (5, 10, 25, args.q) if q <= args.q),
                        keypoints=data.keypoints[:people],
                        landmarks=data.landmarks[:people] if data.landmarks is not None else None)
    report.update(model=str(folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder),
                  temperature=args.temperature, threads=args.threads,
                  seconds=round(time.perf_counter() - start, 1),
                  command="python scripts/bench_uncertainty.py" + (f" --model {args.model}" if args.model else ""))
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
