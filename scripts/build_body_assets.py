"""Build ``resources/body/anny.safetensors``: the Anny-free data inference and the app need.

Fits (on randomly posed, randomly shaped Anny bodies) the COCO-17 regressor of the working topology
against Anny's own COCO regressor on its full topology, and the affine upsampling from the working mesh
to the smooth display mesh; prints their held-out errors in mm and writes them to a JSON beside.

    python scripts/build_body_assets.py [--examples 384] [--seed 0]
"""

from __future__ import annotations

import argparse
import json

import torch

from megaviewer.body.anny_body import DISPLAY_TOPOLOGY, PHENOTYPES, AnnyBody
from megaviewer.body.assets import BodyAssets
from megaviewer.body.keypoints import COCO17_NAMES
from megaviewer.body.transfer import apply_transfer, dense_regressor, fit_affine_transfer
from megaviewer.io.atomic import atomic_write_text
from megaviewer.paths import body_assets_path

MAJOR_BONES = ("spine05", "spine04", "spine03", "spine02", "spine01", "neck01", "head",
               "upperleg01.L", "upperleg01.R", "lowerleg01.L", "lowerleg01.R", "foot.L", "foot.R",
               "clavicle.L", "clavicle.R", "upperarm01.L", "upperarm01.R", "lowerarm01.L", "lowerarm01.R",
               "wrist.L", "wrist.R")


def random_examples(body: AnnyBody, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Broad random poses (Gaussian rotations on the major bones) and phenotypes, for fitting only."""
    pose = torch.zeros(count, len(body.pose_joint_names), 3)
    for name in MAJOR_BONES:
        pose[:, body.bone_index(name)] = torch.randn(count, 3, generator=generator) * 0.35
    shape = torch.rand(count, len(PHENOTYPES), generator=generator)
    return pose, shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=384)
    parser.add_argument("--holdout", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import anny

    gen = torch.Generator().manual_seed(args.seed)
    working = AnnyBody(coco_regressor=torch.zeros(17, 1229))
    display = AnnyBody(topology=DISPLAY_TOPOLOGY, coco_regressor=torch.zeros(17, 1))
    full = AnnyBody(topology="anny", coco_regressor=torch.zeros(17, 1))
    coco = anny.KeypointsRegressor.coco(full.anny, labels=list(COCO17_NAMES))
    total = args.examples + args.holdout
    pose, shape = random_examples(working, total, gen)
    with torch.no_grad():
        work_v = torch.cat([working.posed_vertices(pose[i:i + 64], shape[i:i + 64]) for i in range(0, total, 64)])
        disp_v = torch.cat([display.posed_vertices(pose[i:i + 64], shape[i:i + 64]) for i in range(0, total, 64)])
        full_v = torch.cat([full.posed_vertices(pose[i:i + 64], shape[i:i + 64]) for i in range(0, total, 64)])
        coco_j = torch.einsum("kv,bvc->bkc", coco.regression_weights.to(full_v.dtype), full_v)
    rest = working.posed_vertices(torch.zeros_like(pose[:1]), torch.full((1, 6), 0.5))[0]
    rest_disp = display.posed_vertices(torch.zeros_like(pose[:1]), torch.full((1, 6), 0.5))[0]
    rest_coco = torch.einsum("kv,vc->kc", coco.regression_weights.float(),
                             full.posed_vertices(torch.zeros_like(pose[:1]), torch.full((1, 6), 0.5))[0])
    fit, held = slice(0, args.examples), slice(args.examples, total)
    j_idx, j_w = fit_affine_transfer(work_v[fit], coco_j[fit], k=24, rest_source=rest, rest_target=rest_coco)
    d_idx, d_w = fit_affine_transfer(work_v[fit], disp_v[fit], k=12, rest_source=rest, rest_target=rest_disp)
    joint_err = (apply_transfer(work_v[held], j_idx, j_w) - coco_j[held]).norm(dim=-1) * 1000
    disp_err = (apply_transfer(work_v[held], d_idx, d_w) - disp_v[held]).norm(dim=-1) * 1000
    assets = BodyAssets(
        faces=working.faces.clone(),
        template=rest - rest.mean(0),
        coco_regressor=dense_regressor(j_idx, j_w, working.num_vertices),
        display_faces=display.faces.clone(),
        display_idx=d_idx,
        display_weights=d_w,
    )
    path = body_assets_path("anny")
    assets.save(path)
    stats = {
        "working_vertices": working.num_vertices,
        "display_vertices": display.num_vertices,
        "coco_heldout_error_mm": {"mean": joint_err.mean().item(), "p95": joint_err.quantile(0.95).item(),
                                  "max": joint_err.max().item()},
        "display_upsampling_heldout_error_mm": {"mean": disp_err.mean().item(),
                                                "p95": disp_err.flatten().quantile(0.95).item(),
                                                "max": disp_err.max().item()},
        "examples": args.examples, "holdout": args.holdout, "seed": args.seed,
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(stats, indent=2))
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
