"""MEGA's training targets from a dataset person: the canonical mesh (tokenised) and the camera-frame rotation.

MEGA predicts a body as tokens of the *canonical* mesh (root orientation removed, vertex centroid subtracted)
plus the rotation ``R`` that turns it into the camera frame: ``camera mesh - centroid = canonical · Rᵀ``
(:mod:`megaviewer.body.base`). A dataset gives the body one of two ways, and each has its own way back:

* **Parameters** (``pose``, ``shape``, ``global_orient``) of the tokenizer's body model: the canonical mesh is
  the body posed with a zero root, ``R`` is ``global_orient``. Exact.
* **Vertices** in the camera frame: the root orientation is not stored, so ``R`` is estimated as the rigid
  rotation that best turns the rest template's pelvis onto the person's (Kabsch on the lower trunk, the
  vertices that follow the root most rigidly), and the canonical mesh is the centred vertices turned back by
  ``Rᵀ``. On rendered Anny people this differs from the true root by 1-8° (body shape and the lower spine
  change the pelvis); the rest stays in the canonical mesh, which the tokenizer encodes like any other pose,
  and the same rule makes training and evaluation targets. The oriented mesh ``R · canonical`` is exact.

A mirror permutation of the mesh (vertex ``i`` of a mirrored body is the mirror of vertex ``perm[i]``) is
what the reader needs to flip people given as vertices; :func:`mirror_permutation` finds it on the rest
template, and returns ``None`` when the template is not left/right symmetric enough to have one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from megaviewer.body.keypoints import COCO17_NAMES
from megaviewer.geometry import metrics
from megaviewer.geometry.rotations import rotvec_to_matrix

PELVIS_RADIUS = 0.45
PELVIS_HEIGHT = 0.3
"""Pelvis vertices of the rest template: within ``PELVIS_RADIUS`` x the shoulder width of the spine line, from
the mid-hip point up ``PELVIS_HEIGHT`` of the way to the mid-shoulder point. Of the bands tried on rendered
people (the whole trunk, wider or lower bands) this one follows the root orientation most closely."""


def pelvis_vertices(template: torch.Tensor, coco_regressor: torch.Tensor) -> torch.Tensor:
    """Indices of the template's lower-trunk vertices (see :data:`PELVIS_HEIGHT`)."""
    joints = coco_regressor.to(template) @ template
    index = {name: i for i, name in enumerate(COCO17_NAMES)}
    hips = (joints[index["left_hip"]] + joints[index["right_hip"]]) / 2
    shoulders = (joints[index["left_shoulder"]] + joints[index["right_shoulder"]]) / 2
    width = (joints[index["left_shoulder"]] - joints[index["right_shoulder"]]).norm()
    axis = shoulders - hips
    t = (template - hips) @ axis / axis.dot(axis)
    distance = (template - (hips + t.clamp(0.0, PELVIS_HEIGHT)[:, None] * axis)).norm(dim=-1)
    chosen = torch.nonzero((distance < PELVIS_RADIUS * width) & (t >= 0) & (t <= PELVIS_HEIGHT)).flatten()
    if chosen.numel() < 10:
        raise ValueError(f"only {chosen.numel()} pelvis vertices found on the template; is its regressor COCO-17?")
    return chosen


def mirror_permutation(template: np.ndarray | torch.Tensor, tolerance: float = 0.01) -> np.ndarray | None:
    """The mesh's left/right mirror permutation from its rest template (x is the body's left-right axis), or
    ``None`` when some vertex has no mirror partner within ``tolerance`` metres or two share one."""
    from scipy.spatial import cKDTree

    points = np.asarray(template, dtype=np.float64)
    mirrored = points * np.array([-1.0, 1.0, 1.0])
    distance, perm = cKDTree(points).query(mirrored)
    if distance.max() > tolerance or len(np.unique(perm)) != len(perm):
        return None
    return perm.astype(np.int64)


@dataclass
class BodyTargets:
    canonical: torch.Tensor  # (B, V, 3) root orientation removed, centroid-centred
    rot_cam: torch.Tensor  # (B, 3, 3) canonical -> camera frame (OpenCV axes)

    @property
    def oriented(self) -> torch.Tensor:
        """The centred camera-frame meshes (B, V, 3), as the benchmark compares them."""
        return self.canonical @ self.rot_cam.transpose(-1, -2)


class TargetMaker:
    """Turns reader samples (:class:`training.data.dataset.DatasetReader`) into :class:`BodyTargets`.

    ``body`` (a :class:`~megaviewer.body.base.BodyModel` with ``name``) poses samples given as parameters of
    that model; samples of another model without vertices are an error, as is a vertex count other than the
    template's.
    """

    def __init__(self, template: torch.Tensor, coco_regressor: torch.Tensor, body: Any | None = None,
                 body_name: str | None = None):
        self.template = metrics.center(template.float())
        self.pelvis = pelvis_vertices(self.template, coco_regressor.float())
        self.body = body
        self.body_name = body_name if body_name is not None else getattr(body, "name", None)

    @property
    def num_vertices(self) -> int:
        return int(self.template.shape[0])

    def rotation_from_vertices(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) camera-frame meshes -> (B, 3, 3) rotations turning the template's pelvis onto theirs."""
        source = self.template[self.pelvis].expand(vertices.shape[0], -1, -1)
        return metrics.procrustes_rotation(source, vertices[:, self.pelvis].float())

    def from_vertices(self, vertices: torch.Tensor) -> BodyTargets:
        if vertices.shape[-2] != self.num_vertices:
            raise ValueError(f"the dataset's bodies have {vertices.shape[-2]} vertices, the tokenizer's mesh "
                             f"{self.num_vertices}: train a tokenizer on this topology first")
        rot = self.rotation_from_vertices(vertices)
        canonical = metrics.center(vertices.float()) @ rot  # row-wise Rᵀ
        return BodyTargets(canonical, rot)

    @torch.no_grad()
    def from_params(self, params: Sequence[dict[str, Any]]) -> BodyTargets:
        names = {p["body"] for p in params}
        if self.body is None or names != {self.body_name}:
            raise ValueError(f"people given as {sorted(names)} parameters need that body model to pose them "
                             f"(this run has {self.body_name or 'none'}); give vertices or matching parameters")
        joints = len(self.body.pose_joint_names)
        pose = torch.stack([p["pose"] for p in params]).float().view(len(params), joints, 3)
        shape = torch.stack([p["shape"] for p in params]).float()
        canonical = self.body.canonical_vertices(pose, shape).float()
        rot = rotvec_to_matrix(torch.stack([p["global_orient"] for p in params]).float())
        return BodyTargets(canonical, rot)

    def from_samples(self, samples: Sequence[dict[str, Any]]) -> BodyTargets:
        """Targets of a batch; parameters win where the run has their body model, vertices otherwise."""
        use_params = [("params" in s and self.body is not None and s["params"]["body"] == self.body_name)
                      for s in samples]
        missing = [s["index"] for s, p in zip(samples, use_params, strict=True) if not p and "vertices" not in s]
        if missing:
            raise ValueError(f"people {missing[:5]} have neither vertices nor parameters of {self.body_name}")
        canonical = torch.empty(len(samples), self.num_vertices, 3)
        rot = torch.empty(len(samples), 3, 3)
        for flag in (True, False):
            rows = [i for i, p in enumerate(use_params) if p == flag]
            if not rows:
                continue
            part = (self.from_params([samples[i]["params"] for i in rows]) if flag
                    else self.from_vertices(torch.stack([samples[i]["vertices"] for i in rows])))
            if part.canonical.shape[1] != self.num_vertices:
                raise ValueError(f"the body model poses {part.canonical.shape[1]} vertices, the tokenizer's mesh "
                                 f"has {self.num_vertices}")
            canonical[rows], rot[rows] = part.canonical, part.rot_cam
        return BodyTargets(canonical, rot)
