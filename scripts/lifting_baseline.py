"""A reference point for MEGA's accuracy on the synthetic keypoint benchmark: a plain MLP "lifter".

    python scripts/lifting_baseline.py [--minutes 8] [--out resources/baselines/mlp_lifting.json]

Why: the benchmark's observations are deliberately hard (detector noise and outliers, a body part occluded in
30 % of the people, random single drops, truncation at the image border, crops that cut the body). How much
3D pose do 17 such keypoints determine at all? A direct regressor answers that cheaply: an MLP
(51 -> 1024 -> 1024 -> 1024 -> 51, GELU) maps the flattened crop keypoints (x, y, confidence; missing = 0)
straight to the 17 camera-frame COCO joints (centred), trained with the mean joint distance on the same
on-the-fly observations MEGA trains on (same pool, same ``ObservationConfig``), for a fixed wall-clock
budget on this CPU, then scored with PA-MPJPE / MPJPE (root = joint centroid) on the same 512 held-out
people as ``resources/default/metrics.json``. The learning curve is saved with the final figures.

It predicts joints only (no mesh, no rotation, no samples): a reference for the pose part of the problem,
not a competitor to the product.

The long run in ``resources/baselines/mlp_lifting_long.json`` asks how far such a point estimate can go at all:

    python scripts/lifting_baseline.py --minutes 45 --loss pa --schedule cosine --depth 4 \
        --out resources/baselines/mlp_lifting_long.json

trains on the metric itself (PA-MPJPE) with a cosine learning rate until it flattens, and splits the final
error by whether all 17 keypoints were detected. With ``--loss pa`` the prediction's scale and rotation are
free, so its recorded MPJPE means nothing; read its PA-MPJPE only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def build_lifter(hidden: int = 1024, depth: int = 3) -> nn.Module:
    """51 -> hidden (x ``depth`` layers, GELU) -> 51; the default is the recorded 6-minute reference."""
    layers: list[nn.Module] = []
    width = 51
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, 51))


def learning_rate(base: float, elapsed_fraction: float, schedule: str) -> float:
    """Constant, or cosine decay to zero over the wall-clock budget (for a run meant to converge)."""
    if schedule == "constant":
        return base
    return base * 0.5 * (1.0 + math.cos(math.pi * min(max(elapsed_fraction, 0.0), 1.0)))


def centred(joints: torch.Tensor) -> torch.Tensor:
    return joints - joints.mean(dim=1, keepdim=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="training wall-clock budget")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--pool", default="runs/default/pool.safetensors",
                        help="mesh pool (built from the shipped tokenizer if missing, as train_default.py does)")
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "baselines" / "mlp_lifting.json")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=1024, help="width of the hidden layers")
    parser.add_argument("--depth", type=int, default=3, help="number of hidden layers")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                        help="learning rate over the wall-clock budget")
    parser.add_argument("--loss", choices=("joints", "pa"), default="joints",
                        help="joints: mean distance of centred joints; pa: the PA-MPJPE itself (the metric)")
    args = parser.parse_args(argv)

    from megaviewer.body.assets import BodyAssets
    from megaviewer.geometry import metrics
    from megaviewer.io.atomic import atomic_write_text
    from megaviewer.paths import tokenizer_dir
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.observations import ObservationConfig, synthesize
    from training.evaluate import BENCHMARK_PEOPLE, all_keypoints_detected, build_eval_set
    from training.mega_pretrain import prepare_pool

    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = MeshVQVAE.from_pretrained(tokenizer_dir())
    pool = prepare_pool(args.pool, tokenizer, 50_000, 0)
    regressor = BodyAssets.load(tokenizer.config.body).coco_regressor.float()
    data = build_eval_set(tokenizer, BENCHMARK_PEOPLE)
    truth = regressor @ data.vertices

    torch.manual_seed(0)
    net = build_lifter(args.hidden, args.depth)
    optimiser = torch.optim.AdamW(net.parameters(), args.lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    observation = ObservationConfig()

    complete = all_keypoints_detected(data.keypoints)

    @torch.no_grad()
    def score() -> dict[str, float]:
        net.eval()
        predicted = net(data.keypoints.flatten(1)).view(-1, 17, 3)
        net.train()
        pa = metrics.pa_mpjpe(predicted, truth)
        return {"pa_mpjpe": pa.mean().item(),
                "mpjpe": metrics.mpjpe(centred(predicted), centred(truth)).mean().item(),
                "pa_mpjpe_all_17_detected": pa[complete].mean().item(),
                "pa_mpjpe_some_missing": pa[~complete].mean().item()}

    curve, step, start = [], 0, time.perf_counter()
    while time.perf_counter() - start < args.minutes * 60:
        index = torch.randint(0, len(pool), (args.batch_size,), generator=generator)
        batch = pool.batch(index)
        obs = synthesize(batch, observation, generator)
        target = centred(batch.joints.float() @ obs.rot_cam.transpose(-1, -2))
        predicted = centred(net(obs.keypoints.flatten(1)).view(-1, 17, 3))
        if args.loss == "pa":
            loss = metrics.pa_mpjpe(predicted, target).mean() / 1000.0  # mm -> m, the joints loss's scale
        else:
            loss = (predicted - target).norm(dim=-1).mean()
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(args.lr, (time.perf_counter() - start) / (args.minutes * 60), args.schedule)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % 1000 == 0:
            curve.append({"step": step, "minutes": (time.perf_counter() - start) / 60, **score()})
            print(json.dumps(curve[-1]), flush=True)
    result = {"what": f"MLP lifter, keypoints -> 17 camera-frame COCO joints (no mesh), same held-out "
                      f"{BENCHMARK_PEOPLE} people", "eval_count": BENCHMARK_PEOPLE,
              "command": "python scripts/lifting_baseline.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "hidden": args.hidden, "depth": args.depth, "loss": args.loss, "schedule": args.schedule,
              "lr": args.lr, "parameters": sum(p.numel() for p in net.parameters()),
              "people_with_all_17_detected": int(complete.sum()),
              "minutes": (time.perf_counter() - start) / 60, "steps": step, "batch_size": args.batch_size,
              "threads": torch.get_num_threads(), "final": score(), "curve": curve}
    print(json.dumps(result["final"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
