"""The detector in the loop: rendered people -> MediaPipe -> MEGA -> PA-MPJPE against the known bodies.

Why: the synthetic benchmark (``training/evaluate.py``) simulates the detector; here the real one runs on
photos of bodies whose joints are known (:mod:`training.data.renders`), so its real misses, swaps and
depth errors are in the figure. Each person goes through the product's own path
(:func:`megaviewer.app.pipeline.recover_person`: crop, generation, camera fit, optional fit to the
keypoints) with the photo camera a user without EXIF gets, for every model and setting, and all rows
are scored on the same people (those the detector found). MediaPipe's own 3D landmarks are scored too.

Splits: ``main`` (the benchmark's key-pose prior, other people and cameras than the benchmark's) and
``hard`` (the held-out motion clips: rolling, getting up).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from megaviewer.geometry import metrics
from megaviewer.settings import DEFAULTS
from training.data.landmark_noise import Detections, detect_rendered
from training.data.renders import pixels_of, render_people

LIMBS_12 = tuple(range(5, 17))
"""Shoulders, elbows, wrists, hips, knees, ankles: the joints real-photo datasets score."""
SPLITS = {"main": ("keyposes", 9_300_001), "hard": ("hard", 9_300_002), "tune": ("keyposes", 9_300_003)}
"""Name -> (pose prior, seed). ``tune`` is for choosing settings; the benchmark reports ``main`` and ``hard``."""
CACHE = Path(__file__).resolve().parents[1] / "runs" / "detector_loop"


@dataclass
class LoopSplit:
    name: str
    joints_cam: torch.Tensor  # (B, 17, 3) true camera-frame joints of the rendered people, metres
    found: Detections

    @property
    def usable(self) -> np.ndarray:
        """Indices of the people the detector found (with landmarks): every row is scored on these."""
        return np.flatnonzero(self.found.found & self.found.has_landmarks)


def build_split(name: str, count: int, meshes=None, progress: bool = False, cache: Path | None = None) -> LoopSplit:
    """Render and detect ``count`` people of split ``name``; with ``cache`` (a folder) the detections are kept
    there and reused (rendering and detection take a few minutes, scoring a few seconds)."""
    from training.data.meshes import SyntheticMeshes

    prior, seed = SPLITS[name]
    stem = cache / f"{name}_{count}_{seed}" if cache is not None else None
    if stem is not None and stem.with_suffix(".npz").exists():
        return LoopSplit(name, torch.from_numpy(np.load(stem.with_suffix(".joints.npz"))["joints_cam"]),
                         Detections.load(stem.with_suffix(".npz")))
    meshes = meshes if meshes is not None else SyntheticMeshes(prior_kind=prior)
    people = render_people(meshes, count, seed, progress=progress)
    found = detect_rendered(people.images, pixels_of(people), progress=progress)
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        np.savez(stem.with_suffix(".joints.npz"), joints_cam=people.joints_cam.numpy())
        found.save(stem.with_suffix(".npz"))
    return LoopSplit(name, people.joints_cam, found)


def scores(pred_joints: torch.Tensor, gt_joints: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-person PA-MPJPE (mm) on all 17 joints and on the 12 limb joints."""
    limbs = list(LIMBS_12)
    return {"pa_mpjpe": metrics.pa_mpjpe(pred_joints, gt_joints).numpy(),
            "pa_mpjpe_limbs12": metrics.pa_mpjpe(pred_joints[:, limbs], gt_joints[:, limbs]).numpy()}


def run_engine(engine, split: LoopSplit, refine: bool, landmarks: bool,
               expected_codes: bool = DEFAULTS.expected_codes) -> dict:
    """Deterministic recovery of every usable person; ``landmarks=False`` withholds the detector's landmarks
    (from the model and from the fit)."""
    from megaviewer.app.pipeline import Person, recover_person

    settings = DEFAULTS.with_(mode="deterministic", refine=refine, expected_codes=expected_codes)
    joints, times = [], []
    for i in split.usable:
        detection = split.found.detections[i]
        if not landmarks:
            detection = dataclasses.replace(detection, landmarks_3d=None)
        start = time.perf_counter()
        recovery = recover_person(engine, Person(detection), settings, return_trace=False)
        times.append((time.perf_counter() - start) * 1000)
        joints.append(recovery.result.joints[0].float())
    per_person = scores(torch.stack(joints), split.joints_cam[split.usable].float())
    return {**{k: float(v.mean()) for k, v in per_person.items()}, "ms_per_person_median": float(np.median(times)),
            "per_person_pa_mpjpe": per_person["pa_mpjpe"].round(2).tolist()}


def detector_landmarks_row(split: LoopSplit) -> dict:
    """MediaPipe's own 3D landmarks (the 17 COCO points) against the true joints."""
    lm = torch.as_tensor(split.found.landmarks[split.usable, :, :3], dtype=torch.float32)
    per_person = scores(lm, split.joints_cam[split.usable].float())
    return {k: float(v.mean()) for k, v in per_person.items()}


def run(models: dict[str, str | Path | None], splits: Sequence[str], counts: dict[str, int],
        progress: bool = True, cache: Path | None = CACHE) -> dict:
    """Every model (name -> checkpoint folder, None = shipped) with and without the fit to the keypoints, and
    with and without landmarks where the model reads them, on every split; decoded with the argmax codes unless
    the name ends with ``+expected_codes`` (:func:`training.evaluate.row_decodes_expected_codes`)."""
    from megaviewer.engine import Engine
    from training.evaluate import row_decodes_expected_codes

    engines = {name: Engine.from_pretrained(folder) for name, folder in models.items()}
    report: dict = {"splits": {}}
    for name in splits:
        split = build_split(name, counts[name], progress=progress, cache=cache)
        rows = {"mediapipe_landmarks": detector_landmarks_row(split)}
        for model_name, engine in engines.items():
            reads_landmarks = "landmarks" in engine.model.config.conditioning.kinds
            for use_landmarks in ((False, True) if reads_landmarks else (False,)):
                for refine in (False, True):
                    label = f"{model_name}{' +landmarks' if use_landmarks else ''}{' +fit' if refine else ''}"
                    rows[label] = run_engine(engine, split, refine, use_landmarks,
                                             row_decodes_expected_codes(model_name))
                    if progress:
                        print(f"{name:5s} {label:40s} PA-MPJPE {rows[label]['pa_mpjpe']:6.1f} mm "
                              f"(limbs {rows[label]['pa_mpjpe_limbs12']:6.1f})", flush=True)
        report["splits"][name] = {"rendered": counts[name], "detected": int(split.found.found.sum()),
                                  "scored": int(len(split.usable)), "rows": rows}
    return report


def tune_refinement(engine, values: Sequence[float], count: int = 160, cache: Path | None = CACHE,
                    field: str = "landmark_weight") -> dict:
    """PA-MPJPE of the fit with landmarks for each value of a ``RefineConfig`` field (by default the landmarks'
    weight) on the ``tune`` split (other people and cameras than the benchmark's): how the defaults are chosen."""
    split = build_split("tune", count, cache=cache)
    saved = engine.refine_config
    if field not in {f.name for f in dataclasses.fields(saved)}:
        raise ValueError(f"RefineConfig has no field {field!r}")
    rows = {}
    try:
        for value in values:
            engine.refine_config = dataclasses.replace(saved, **{field: type(getattr(saved, field))(value)})
            row = run_engine(engine, split, refine=True, landmarks=True)
            rows[f"{value:g}"] = {k: row[k] for k in ("pa_mpjpe", "pa_mpjpe_limbs12", "ms_per_person_median")}
            print(f"{field} {value:g}: PA-MPJPE {row['pa_mpjpe']:.1f} mm", flush=True)
    finally:
        engine.refine_config = saved
    return {"split": "tune", "field": field, "default": getattr(saved, field), "scored": int(len(split.usable)),
            "rows": rows}
