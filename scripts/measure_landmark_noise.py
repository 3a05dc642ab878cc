"""Measure how the detector's 3D landmarks err, on rendered people with known joints (training.data.landmark_noise).

    python scripts/measure_landmark_noise.py [--people 400] [--seed 4242] [--out resources/body/landmark_noise.json]

Renders ``--people`` bodies of the training prior (real motion mixed with key poses; not the benchmark's
people) in clothes on varied backgrounds (:mod:`training.data.renders`), runs MediaPipe BlazePose on each
photo, fits the error model to what it returns against the true joints and writes it as JSON; conditioned
training simulates landmarks with it. The file also records how many people were rendered and detected and
the landmarks' own PA-MPJPE against the true joints. The detections are cached in ``runs/landmark_noise``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.data.landmark_noise import LandmarkNoise, detect_rendered  # noqa: E402
from training.data.renders import pixels_of, render_people  # noqa: E402

DEFAULT_OUT = REPO / "resources" / "body" / "landmark_noise.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=400)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--prior", default="motion", help="pose prior of the rendered people")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "landmark_noise",
                        help="renders' detections are kept here (delete to measure again)")
    args = parser.parse_args()

    import torch

    from megaviewer.geometry import metrics
    from training.data.meshes import SyntheticMeshes

    cache = args.cache / f"{args.prior}_{args.people}_{args.seed}.npz"
    if not cache.exists():  # rendering and detecting take minutes; the fit below is instant
        people = render_people(SyntheticMeshes(prior_kind=args.prior), args.people, args.seed, progress=True)
        found = detect_rendered(people.images, pixels_of(people), progress=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, joints_cam=people.joints_cam.numpy(), rot_cam=people.rot_cam.numpy(),
                 landmarks=found.landmarks, has_landmarks=found.has_landmarks)
    data = np.load(cache)
    ok = data["has_landmarks"]
    gt, lm, rot = data["joints_cam"][ok], data["landmarks"][ok], data["rot_cam"][ok]
    model = LandmarkNoise.fit(gt, rot, lm)
    limbs = list(range(5, 17))
    pa = metrics.pa_mpjpe(torch.as_tensor(lm[:, limbs, :3], dtype=torch.float32),
                          torch.as_tensor(gt[:, limbs], dtype=torch.float32))
    model.measured_on.update({"prior": args.prior, "seed": args.seed, "rendered": int(len(ok)),
                              "with_landmarks": int(ok.sum()),
                              "landmarks_pa_mpjpe_limbs12_mm": float(pa.mean()),
                              "command": "python scripts/measure_landmark_noise.py"})
    model.to_json(args.out)
    print(f"{int(ok.sum())}/{args.people} people with landmarks; swapped {model.swap_prob:.3f}, reversed "
          f"{model.reverse_prob:.3f}, scale x{np.exp(model.log_scale_mean):.3f} (log SD {model.log_scale_sd:.3f}), "
          f"rotation mean {np.degrees(model.rotation_mean).round(1)} deg, SD {np.degrees(model.rotation_sd).round(1)}"
          f" deg; landmarks' own PA-MPJPE (12 limb joints) {float(pa.mean()):.1f} mm -> {args.out}")


if __name__ == "__main__":
    main()
