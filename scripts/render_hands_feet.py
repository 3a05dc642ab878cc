"""Close-ups of hands and feet through two tokenizers: the true mesh, and each tokenizer's encode -> decode of it
coloured by the per-vertex error, on held-out people of the training prior.

Why: the mean vertex error hides where a coarse token grid fails first, the extremities; these pictures show it,
and the JSON beside them gives each tile's error (mm) and the 95th percentile over 1,024 held-out meshes.

    python scripts/render_hands_feet.py --before resources/baselines/tokenizer --after resources/tokenizer
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TILE = 220
VMAX_MM = 30.0
REGIONS = {"right hand": (("wrist.R",), 0.11, (0.0, 0.0)), "left foot": (("foot.L",), 0.15, (70.0, 20.0))}
"""Close-up name -> (Anny bones whose vertices it shows, radius in metres around them, (yaw, pitch) degrees
of the view: the foot is seen from the front-side and above)."""


def view_matrix(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    yaw, pitch = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    return rx @ ry


def close_up(display_vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray, colours: np.ndarray,
             centre: np.ndarray, radius: float, view: np.ndarray) -> np.ndarray:
    """Orthographic BGR tile of the faces ``keep`` (the same for the truth and its reconstructions) around
    ``centre`` (canonical frame, y up)."""
    from megaviewer.render.raster import face_shading, orientation, rasterize

    turned = (display_vertices - centre) @ view.T
    scale = TILE / (2.2 * radius)
    pixels = np.stack([turned[:, 0] * scale + TILE / 2, TILE / 2 - turned[:, 1] * scale], axis=1)
    cam = turned * np.array([1.0, -1.0, -1.0])  # x right, y down, z away from the viewer
    layer = rasterize(pixels, cam[:, 2], keep, (TILE, TILE), colours, face_shading(cam, keep), antialias=True,
                      cull=orientation(cam, faces))
    cover = layer[..., 3:4].astype(np.float32) / 255.0
    out = np.full((TILE, TILE, 3), 255.0) * (1 - cover) + layer[..., 2::-1].astype(np.float32) * cover
    return out.astype(np.uint8)


def error_colours(error_mm: np.ndarray, assets) -> np.ndarray:
    """Per display vertex RGB (uint8) of the working vertices' errors on a 0..VMAX_MM colour map."""
    import cv2

    from megaviewer.render.offscreen import display_scalars

    scaled = np.clip(display_scalars(error_mm.astype(np.float32), assets) / VMAX_MM * 255, 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(scaled[:, None], cv2.COLORMAP_TURBO)[:, 0]
    return bgr[:, ::-1].copy()


def label(tile: np.ndarray, text: str) -> np.ndarray:
    import cv2

    cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=REPO / "resources" / "baselines" / "tokenizer")
    parser.add_argument("--after", type=Path, default=REPO / "resources" / "tokenizer")
    parser.add_argument("--people", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--count", type=int, default=1024, help="held-out meshes of the percentile figures")
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "figures" / "tokenizer_hands_feet.png")
    args = parser.parse_args()

    import torch

    from benchmarks.figures import write_compact_png
    from megaviewer.body.assets import BodyAssets
    from megaviewer.geometry import metrics
    from megaviewer.io.atomic import atomic_write_text
    from megaviewer.paths import shown_path
    from megaviewer.render.offscreen import display_mesh
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.meshes import SyntheticMeshes
    from training.tokenizer import HANDS_FEET

    meshes = SyntheticMeshes(prior_kind="motion")
    assets = BodyAssets.load("anny")
    tokenizers = {"before": MeshVQVAE.from_pretrained(args.before).eval(),
                  "after": MeshVQVAE.from_pretrained(args.after).eval()}
    people = metrics.center(meshes.heldout(args.people, seed=args.seed).vertices)
    masks = {name: meshes.body.region_mask(bones).numpy() for name, (bones, _, _) in REGIONS.items()}
    report: dict = {"command": "python scripts/render_hands_feet.py", "before": shown_path(args.before),
                    "after": shown_path(args.after), "vmax_mm": VMAX_MM, "count": args.count,
                    "figure": shown_path(args.out), "tiles": []}
    with torch.inference_mode():
        decoded = {k: tok.decode(tok.encode(people)).numpy() for k, tok in tokenizers.items()}
        held = metrics.center(meshes.heldout(args.count).vertices)
        extremity = meshes.body.region_mask(HANDS_FEET)
        for k, tok in tokenizers.items():
            errors = torch.cat([(tok.decode(tok.encode(held[i:i + 128])) - held[i:i + 128])[:, extremity]
                                .norm(dim=-1).flatten() for i in range(0, args.count, 128)]) * 1000
            report[f"{k}_hands_feet_vertex_p95_mm"] = float(torch.quantile(errors, 0.95))
            report[f"{k}_hands_feet_pve_mm"] = float(errors.mean())
    rows = []
    grey = np.array([200, 200, 200], np.uint8)
    for p in range(args.people):
        truth = people[p].numpy()
        disp_truth, faces = display_mesh(truth, assets)
        for name, (_, radius, (yaw, pitch)) in REGIONS.items():
            centre = disp_truth[np.linalg.norm(disp_truth - truth[masks[name]].mean(0), axis=1).argmin()]
            view = view_matrix(yaw, pitch)
            near = np.linalg.norm(disp_truth - centre, axis=1) < radius
            keep = faces[near[faces].all(axis=1)]
            tiles = [label(close_up(disp_truth, faces, keep, grey, centre, radius, view), f"person {p + 1}, {name}")]
            for key in ("before", "after"):
                err = np.linalg.norm(decoded[key][p] - truth, axis=1) * 1000
                disp, _ = display_mesh(decoded[key][p], assets)
                tile = close_up(disp, faces, keep, error_colours(err, assets), centre, radius, view)
                region_err = float(err[masks[name]].mean())
                tiles.append(label(tile, f"{key}: {region_err:.1f} mm"))
                report["tiles"].append({"person": p + 1, "region": name, "tokenizer": key, "mean_mm": region_err})
            rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)
    write_compact_png(args.out, sheet[..., ::-1])
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "tiles"}, indent=2))


if __name__ == "__main__":
    main()
