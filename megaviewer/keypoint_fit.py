"""Place decoded hypotheses on the 2D keypoints they were generated from: the camera fit, then the fit of the
bodies.

Why one function: :class:`megaviewer.engine.Engine` runs this on every recovery with keypoints (the camera fit
of :mod:`megaviewer.camera_fit`, then, by default, the body fit of :mod:`megaviewer.refine`), and the benchmark
(:func:`training.evaluate.evaluate` with ``placement="engine"``) runs the same code on its people, so the
figures it reports for the engine's output are those of the engine and not of a copy of it.

Every row is independent (its own keypoints, landmarks, rotation and camera), so many people's hypotheses can
go through one call; ``chunk_rows`` bounds how many rows the body fit differentiates through the decoder at once
(its memory grows with the rows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from megaviewer.camera_fit import CameraFit, fit_camera
from megaviewer.refine import RefineConfig, Refinement, refine_hypotheses
from megaviewer.tokenizer.model import MeshVQVAE

__all__ = ["FittedHypotheses", "fit_to_keypoints"]


@dataclass
class FittedHypotheses:
    """The hypotheses placed on their keypoints: canonical meshes (Q, V, 3), rotations (Q, 3, 3) and weak-perspective
    cameras (Q, 3) on the input's device, with the camera fit's report and, when the bodies were fitted, the
    refinement's (both on the CPU)."""

    canonical: torch.Tensor
    rotation: torch.Tensor
    cam: torch.Tensor
    camera_fit: CameraFit
    refinement: Refinement | None = None

    @property
    def oriented(self) -> torch.Tensor:
        """(Q, V, 3) camera-frame meshes around their centroids' origin (no translation)."""
        return self.canonical @ self.rotation.transpose(-1, -2)


def fit_to_keypoints(tokenizer: MeshVQVAE, regressor: torch.Tensor, tokens: torch.Tensor, canonical: torch.Tensor,
                     rotation: torch.Tensor, cam: torch.Tensor, keypoints: torch.Tensor, *, refine: bool,
                     refine_config: RefineConfig | None = None, landmarks: torch.Tensor | None = None,
                     lap: Callable[[str], None] | None = None, chunk_rows: int | None = None,
                     latents: torch.Tensor | None = None) -> FittedHypotheses:
    """Fit rotation and camera of Q hypotheses to their keypoints, then (``refine``) their bodies.

    Args:
        tokenizer: the Mesh-VQ-VAE that decoded ``tokens`` into ``canonical`` (its decoder is left unchanged).
        regressor: (17, V) COCO-17 joint regressor.
        tokens: (Q, N) token ids; canonical: (Q, V, 3) their decoded meshes; rotation, cam: (Q, 3, 3) and (Q, 3),
            the network's.
        keypoints: (Q, 17, 3) crop coordinates and confidence per row, or (17, 3) shared.
        landmarks: the detector's 3D landmarks at the COCO-17 points, (17, 4) shared or (Q, 17, 4), for the body fit.
        lap: called with ``"camera_fit_ms"`` and ``"refine_ms"`` after each stage (the engine's stage clock).
        chunk_rows: the body fit runs on at most this many rows at a time (default: all at once).
        latents: (Q, N, D) what ``canonical`` was decoded from when it is not the codes of ``tokens`` (expected
            codes, :mod:`megaviewer.decoding`); the body fit starts from them.
    """
    joints = torch.einsum("jv,qvc->qjc", regressor.to(canonical.dtype), canonical)
    report = fit_camera(joints, keypoints, rotation, cam)
    rotation, cam = report.rotation.to(canonical.device), report.cam.to(canonical.device)
    if lap is not None:
        lap("camera_fit_ms")
    refinement = None
    if refine:
        rows = tokens.shape[0]
        step = chunk_rows or rows
        if keypoints.ndim == 2:
            keypoints = keypoints.expand(rows, *keypoints.shape)
        if landmarks is not None and landmarks.ndim == 2:
            landmarks = landmarks.expand(rows, *landmarks.shape)
        parts = [refine_hypotheses(tokenizer, regressor, tokens[i:i + step], rotation[i:i + step], cam[i:i + step],
                                   keypoints[i:i + step], refine_config,
                                   landmarks[i:i + step] if landmarks is not None else None,
                                   latents[i:i + step] if latents is not None else None)
                 for i in range(0, rows, step)]
        refinement = parts[0] if len(parts) == 1 else Refinement.concatenate(parts)
        canonical = refinement.canonical_vertices.to(canonical.device)
        rotation, cam = refinement.rotation.to(canonical.device), refinement.cam.to(canonical.device)
        if lap is not None:
            lap("refine_ms")
    return FittedHypotheses(canonical, rotation, cam, report, refinement)
