"""Draw 16 synthetic keypoint observations as a 4×4 sheet of 224×224 crops, to eyeball the detector model.

Usage:
    python scripts/preview_observations.py --out runs/observations_preview.png [--seed 0] [--pool POOL]

Each tile is one crop (the full tile is the [-1, 1]² crop). Coloured: the detected keypoints the model
conditions on (left side orange, right side blue, centre green; brightness = confidence) with the
skeleton between detected pairs. Grey dots: the true projected joints, so the noise, the outliers and the
missing (occluded, dropped, truncated) keypoints are visible. The caption gives the detected count.
Without ``--pool`` the meshes are sampled from the pose prior on the fly (token ids are not needed here).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from megaviewer.body.keypoints import COCO17_NAMES, COCO17_SKELETON
from training.data.observations import ObservationConfig, synthesize
from training.data.pool import MeshPool

TILE = 224
GRID = 4


def sample_pool(count: int, seed: int) -> MeshPool:
    from training.data.meshes import SyntheticMeshes

    meshes = SyntheticMeshes()
    batch = meshes.sample(count, torch.Generator().manual_seed(seed))
    joints = meshes.body.joints(batch.vertices).float()
    return MeshPool(torch.zeros(count, 54, dtype=torch.long), joints, batch.params.global_orient.float(), seed)


def _colour(name: str, conf: float) -> tuple[int, int, int]:
    base = (0, 140, 255) if name.startswith("left") else (255, 140, 0) if name.startswith("right") else (0, 220, 0)
    return tuple(int(c * (0.35 + 0.65 * conf)) for c in base)  # BGR


def draw_tile(keypoints: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """keypoints (17, 3) crop coords + conf, truth (17, 2) crop coords -> (224, 224, 3) uint8 BGR."""
    tile = np.full((TILE, TILE, 3), 24, np.uint8)
    to_px = lambda p: (int(round((p[0] + 1) * TILE / 2)), int(round((p[1] + 1) * TILE / 2)))  # noqa: E731
    for point in truth:
        cv2.circle(tile, to_px(point), 2, (110, 110, 110), -1, cv2.LINE_AA)
    seen = keypoints[:, 2] > 0
    for a, b in COCO17_SKELETON:
        if seen[a] and seen[b]:
            cv2.line(tile, to_px(keypoints[a]), to_px(keypoints[b]), (200, 200, 200), 1, cv2.LINE_AA)
    for j, name in enumerate(COCO17_NAMES):
        if seen[j]:
            cv2.circle(tile, to_px(keypoints[j]), 3, _colour(name, float(keypoints[j, 2])), -1, cv2.LINE_AA)
    cv2.putText(tile, f"{int(seen.sum())}/17", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230), 1,
                cv2.LINE_AA)
    cv2.rectangle(tile, (0, 0), (TILE - 1, TILE - 1), (80, 80, 80), 1)
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/observations_preview.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", default=None, help="a pool written by MeshPool.save (default: sample meshes)")
    args = parser.parse_args()

    count = GRID * GRID
    if args.pool:
        pool = MeshPool.load(args.pool)
        pool = pool.batch(torch.randint(0, len(pool), (count,), generator=torch.Generator().manual_seed(args.seed)))
    else:
        pool = sample_pool(count, args.seed)
    obs = synthesize(pool, ObservationConfig(), torch.Generator().manual_seed(args.seed + 1))
    tiles = [draw_tile(obs.keypoints[i].numpy(), obs.joints2d[i].numpy()) for i in range(count)]
    rows = [np.hstack(tiles[r * GRID:(r + 1) * GRID]) for r in range(GRID)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack(rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
