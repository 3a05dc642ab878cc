"""A small dataset folder of rendered Anny people with known bodies, in the format real data is converted to.

Why: it lets anyone run every command of "Train on your own data" (README) without a licensed data set, and
the tests train and evaluate on it. The people are those of :func:`training.data.renders.render_people`
(clothed Anny bodies on photo backgrounds, placed by the benchmark's camera model); each line of
``people.jsonl`` gives the image, the true 2D COCO-17 keypoints (confidence 1, 0 outside the image), the focal
length, a split (the last ``val_fraction`` of the people are ``val``), and the body either as camera-frame
vertices or as Anny parameters (``body="params"``), or alternating between the two (``"mixed"``).

    python -m training.data.demo_dataset runs/demo_dataset --count 64
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

BODY_KINDS = ("vertices", "params", "mixed")


def write_demo_dataset(folder: str | Path, count: int = 64, seed: int = 0, val_fraction: float = 0.25,
                       body: str = "vertices", meshes=None) -> Path:
    """Render ``count`` people into ``folder`` (images/ + people.jsonl); returns the table's path."""
    import torch

    from megaviewer.geometry.rotations import matrix_to_rotvec
    from training.data.dataset_format import write_dataset
    from training.data.meshes import SyntheticMeshes
    from training.data.renders import pixels_of, render_people

    if body not in BODY_KINDS:
        raise ValueError(f"body must be one of {BODY_KINDS}, got {body!r}")
    meshes = meshes if meshes is not None else SyntheticMeshes()
    people = render_people(meshes, count, seed)
    params = meshes.heldout(count, seed=seed).params  # the same bodies render_people drew
    pixels = pixels_of(people)
    camera = people.vertices + people.translation[:, None]
    rotvec = matrix_to_rotvec(people.rot_cam)
    val_from = count - int(round(count * val_fraction))
    records, images = [], {}
    for i, image in enumerate(people.images):
        height, width = image.shape[:2]
        xy = np.asarray(pixels[i], dtype=np.float64)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
        name = f"images/{i:05d}.jpg"
        images[name] = image
        record = {"image": name, "keypoints_2d": np.concatenate([xy, inside[:, None].astype(float)], 1).tolist(),
                  "focal": float(people.focal[i]), "split": "val" if i >= val_from else "train"}
        as_params = body == "params" or (body == "mixed" and i % 2 == 1)
        if as_params:
            record.update(body="anny", pose=params.pose[i].reshape(-1).tolist(), shape=params.shape[i].tolist(),
                          global_orient=rotvec[i].tolist(), transl=people.translation[i].tolist())
        else:
            record["vertices"] = camera[i].to(torch.float32).numpy().round(5).tolist()
        records.append(record)
    return write_dataset(folder, records, images)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--body", choices=BODY_KINDS, default="vertices")
    args = parser.parse_args(argv)
    table = write_demo_dataset(args.folder, args.count, args.seed, args.val_fraction, args.body)
    print(f"wrote {args.count} people: {table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
