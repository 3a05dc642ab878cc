"""Render random samples of the pose prior as a contact sheet and measure its diversity and speed.

Usage:
    python scripts/make_contact_sheet.py --out resources/figures/pose_prior_contact_sheet.png --seed 0 --n 64
    python scripts/make_contact_sheet.py --prior motion --out resources/figures/pose_prior_motion_contact_sheet.png

Writes the PNG (samples with their global orientation, seen from the front camera on +z, y up) and a JSON
beside it with the APD of the major joints (cm, 500 samples, global orientation removed; MEGA reports
20.8 cm on AMASS) and the sampling speed.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from megaviewer.body.anny_body import AnnyBody
from megaviewer.body.pose_prior import PosePrior, average_pairwise_distance, canonical_batch
from training.data.priors import PRIOR_KINDS, make_prior

APD_JOINTS = ("root", "upperleg01.L", "upperleg01.R", "lowerleg01.L", "lowerleg01.R", "foot.L", "foot.R",
              "spine03", "spine01", "neck01", "head", "upperarm01.L", "upperarm01.R", "lowerarm01.L",
              "lowerarm01.R", "wrist.L", "wrist.R")


def render_sheet(vertices: np.ndarray, faces: np.ndarray, cols: int, cell_px: int) -> np.ndarray:
    """One orthographic scene, meshes laid on a grid (2.4 m cells), camera on +z looking down -z, y up."""
    import pyvista as pv

    rows = math.ceil(len(vertices) / cols)
    cell = 2.4
    cells = np.hstack([np.full((len(faces), 1), 3), faces]).astype(np.int64)
    plotter = pv.Plotter(off_screen=True, window_size=(cols * cell_px, rows * cell_px))
    plotter.set_background("white")
    for i, verts in enumerate(vertices):
        offset = np.array([(i % cols + 0.5) * cell, -(i // cols + 0.5) * cell, 0.0])
        mesh = pv.PolyData(verts.astype(np.float64) + offset, cells)
        plotter.add_mesh(mesh, color="#c9a68a", smooth_shading=True, specular=0.2)
    center = np.array([cols * cell / 2, -rows * cell / 2, 0.0])
    plotter.camera_position = [tuple(center + [0, 0, 50.0]), tuple(center), (0.0, 1.0, 0.0)]
    plotter.camera.parallel_projection = True
    plotter.camera.parallel_scale = rows * cell / 2
    image = plotter.screenshot(return_img=True)
    plotter.close()
    return image


def measure_apd(body: AnnyBody, prior: PosePrior, count: int, generator: torch.Generator) -> float:
    """APD in cm of Anny bone heads of the major joints, root-relative, without global orientation."""
    params = prior.sample(count, generator)
    index = [body.bone_names.index(name) for name in APD_JOINTS]
    with torch.no_grad():
        heads = body.anny_output(params.pose, params.shape)["bone_poses"][:, index, :3, 3]
    return 100.0 * average_pairwise_distance(heads.double())


def measure_speed(body: AnnyBody, prior: PosePrior, batch: int, repeats: int) -> dict[str, float]:
    """Samples/s of the prior alone and canonical meshes/s of prior + Anny posing (best of ``repeats``)."""
    generator = torch.Generator().manual_seed(1234)
    canonical_batch(body, batch, generator, prior)  # warm-up
    best_sample, best_total = math.inf, math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        prior.sample(batch, generator)
        best_sample = min(best_sample, time.perf_counter() - start)
        start = time.perf_counter()
        canonical_batch(body, batch, generator, prior)
        best_total = min(best_total, time.perf_counter() - start)
    return {"samples_per_s": batch / best_sample, "canonical_meshes_per_s": batch / best_total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("resources/figures/pose_prior_contact_sheet.png"))
    parser.add_argument("--stats", type=Path, default=None, help="JSON path (default: pose_prior_stats.json)")
    parser.add_argument("--prior", choices=PRIOR_KINDS, default="keyposes",
                        help="key poses only, key poses + training motion clips, or the held-out clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--cols", type=int, default=8)
    parser.add_argument("--cell-px", type=int, default=200)
    parser.add_argument("--apd-samples", type=int, default=500)
    parser.add_argument("--speed-batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from PIL import Image

    body = AnnyBody()
    prior = make_prior(body, args.prior)
    generator = torch.Generator().manual_seed(args.seed)
    params = prior.sample(args.n, generator)
    with torch.no_grad():
        vertices = body.vertices(params).numpy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_sheet(vertices, body.faces.numpy(), args.cols, args.cell_px)).save(args.out)

    stats = {
        "prior": args.prior,
        "figure": args.out.as_posix(),
        "samples_shown": args.n,
        "seed": args.seed,
        "apd_cm": measure_apd(body, prior, args.apd_samples, torch.Generator().manual_seed(args.seed + 1)),
        "apd_samples": args.apd_samples,
        "apd_joints": list(APD_JOINTS),
        "speed_batch": args.speed_batch,
        "torch_threads": torch.get_num_threads(),
        **measure_speed(body, prior, args.speed_batch, repeats=5),
    }
    name = "pose_prior_stats.json" if args.prior == "keyposes" else f"pose_prior_{args.prior}_stats.json"
    stats_path = args.stats or args.out.with_name(name)
    stats_path.write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
