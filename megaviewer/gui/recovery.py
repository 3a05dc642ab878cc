"""The app's pipeline steps, Qt-free: detect people in a picture, recover one of them with the user's settings.

These functions run inside worker threads (``workers.py``); they only call the engine and the vision package
and return plain data, so the same code serves the single-image flow and the live loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from megaviewer.engine import CropBox
from megaviewer.gui.state import Person, RecoverySettings
from megaviewer.result import RecoveryResult


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Any]: ...


@dataclass
class Recovery:
    """One person's recovery: the result for the chosen settings and, for stochastic runs, the deterministic
    reference the hypotheses are compared against."""

    result: RecoveryResult
    reference: RecoveryResult | None
    elapsed_ms: float


def load_detector(tracking: bool = False) -> Detector:
    """The shipped 2D keypoint detector (imported lazily: mediapipe costs ~1 s to import).

    ``tracking=True`` is the live-video variant (one person followed from frame to frame); each thread gets
    its own instance because MediaPipe graphs are not shared between threads.
    """
    from megaviewer.vision.detector import PoseDetector

    return PoseDetector(tracking=tracking)


def _as_person(det: Any) -> Person:
    """Adapt a detector's record (``vision.detector.PersonDetection`` or any object with ``keypoints``)."""
    keypoints = np.asarray(det.keypoints, dtype=np.float32).reshape(17, 3).copy()
    valid = getattr(det, "valid", None)
    if valid is not None:  # draw only what the model is conditioned on
        keypoints[~np.asarray(valid, bool), 2] = 0.0
    if hasattr(det, "tight_box"):
        x0, y0, x1, y1 = (float(v) for v in det.tight_box())
        pad_x, pad_y = 0.08 * (x1 - x0) + 4, 0.08 * (y1 - y0) + 4
        box = (x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y)
    elif getattr(det, "box", None) is not None:
        box = tuple(float(v) for v in np.asarray(det.box, dtype=np.float64).reshape(-1)[:4])
    else:
        pts = keypoints[keypoints[:, 2] > 0, :2]
        lo, hi = (pts.min(0), pts.max(0)) if len(pts) else (np.zeros(2), np.zeros(2))
        box = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    return Person(keypoints=keypoints, box=box, score=float(getattr(det, "score", 1.0)), source=det)


def detect_people(detector: Detector, image: np.ndarray) -> list[Person]:
    """Every person the detector finds, as GUI-side :class:`Person` records."""
    return [_as_person(det) for det in detector.detect(image)]


def crop_inputs(person: Person, image_size: tuple[int, int]) -> tuple[np.ndarray, CropBox]:
    """Crop-normalised keypoints (17, 3) and the crop box, made exactly as the model was trained.

    Uses the vision package's helpers when the person came from its detector; otherwise the same
    keypoint box from :mod:`megaviewer.camera` (the training recipe).
    """
    if person.source is not None:
        try:
            from megaviewer.vision.detector import PersonDetection, crop_box, crop_keypoints

            if isinstance(person.source, PersonDetection):
                return np.asarray(crop_keypoints(person.source), np.float32), crop_box(person.source, image_size)
        except ImportError:
            pass
    from megaviewer.camera import full_to_crop, square_box_from_keypoints

    kp = torch.as_tensor(person.keypoints, dtype=torch.float32)[None]
    centre, side = square_box_from_keypoints(kp[..., :2], kp[..., 2], image_size=image_size)
    xy = full_to_crop(kp[..., :2], centre, side)[0]
    conf = kp[0, :, 2]
    crop_kp = torch.cat([torch.where(conf[:, None] > 0, xy, torch.zeros_like(xy)), conf[:, None]], dim=1)
    box = CropBox(center=(float(centre[0, 0]), float(centre[0, 1])), side=float(side[0]), image_size=image_size)
    return crop_kp.numpy(), box


def recover_person(engine: Any, person: Person, image_size: tuple[int, int],
                   settings: RecoverySettings, with_reference: bool = True) -> Recovery:
    """Run the engine on one person; a stochastic run also gets its deterministic reference (one cheap pass)."""
    start = time.perf_counter()
    keypoints, box = crop_inputs(person, image_size)
    seed = int(torch.randint(0, 2**31 - 1, ()).item()) if settings.random_seed else settings.seed
    result = engine.recover(keypoints, mode=settings.mode, num_samples=settings.num_samples, steps=settings.steps,
                            temperature=settings.temperature, seed=seed, crop=box, return_trace=True,
                            fit_camera=settings.fit_camera)
    reference = None
    if settings.mode == "stochastic" and with_reference:
        reference = engine.recover(keypoints, mode="deterministic", crop=box, return_trace=True,
                                   fit_camera=settings.fit_camera)
    return Recovery(result, reference, (time.perf_counter() - start) * 1000)


def random_humans(engine: Any, settings: RecoverySettings) -> Recovery:
    """Unconditional samples from the pre-trained model (paper App. C)."""
    start = time.perf_counter()
    seed = int(torch.randint(0, 2**31 - 1, ()).item()) if settings.random_seed else settings.seed
    result = engine.unconditional(num_samples=max(settings.num_samples, 1), steps=max(settings.steps, 1),
                                  temperature=settings.temperature, seed=seed, return_trace=True)
    return Recovery(result, None, (time.perf_counter() - start) * 1000)


def unconditional_unavailable_reason(engine: Any) -> str | None:
    """Why "random human" cannot run with this engine, or ``None`` if it can."""
    if engine is None:
        return "No model is loaded yet."
    if getattr(engine, "unconditional_model", None) is None:
        return ("This model ships without the self-supervised pre-trained (unconditional) MEGA, "
                "so it cannot generate random humans.")
    return None


def nearest_person(people: list[Person], previous: Person | None) -> int:
    """In live mode, follow the person whose box centre is nearest the previous one (else the largest)."""
    from megaviewer.gui.state import largest_person

    if not people:
        return -1
    if previous is None:
        return largest_person(people)
    prev = np.array([(previous.box[0] + previous.box[2]) / 2, (previous.box[1] + previous.box[3]) / 2])
    centres = np.array([[(p.box[0] + p.box[2]) / 2, (p.box[1] + p.box[3]) / 2] for p in people])
    return int(np.linalg.norm(centres - prev, axis=1).argmin())
