"""The one interface every body model offers, and the canonicalisation shared by all of them.

Frame convention (same as the original MEGA / SMPL): metres, y up, the body facing +z in its rest
orientation. A *canonical* mesh has the global root orientation removed and its vertex centroid
subtracted (docs/original-implementation.md §2). The *global* mesh is ``R · canonical`` for the root rotation ``R``,
which is exactly how the original builds its targets, so rotation and shape can be learnt separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class BodyParams:
    """Parameters of a batch of bodies.

    pose: (B, J, 3) axis-angle per articulated joint, in the model's own joint order and axes
        (``BodyModel.pose_joint_names``); the root's global orientation is NOT part of it.
    shape: (B, S) shape parameters (``BodyModel.shape_names``).
    global_orient: (B, 3, 3) rotation applied to the canonical mesh, in the y-up/+z-facing frame.
    """

    pose: torch.Tensor
    shape: torch.Tensor
    global_orient: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.pose.shape[0]

    def to(self, device: torch.device | str) -> BodyParams:
        return BodyParams(self.pose.to(device), self.shape.to(device), self.global_orient.to(device))

    def index(self, idx: slice | torch.Tensor) -> BodyParams:
        return BodyParams(self.pose[idx], self.shape[idx], self.global_orient[idx])


def canonicalize(vertices: torch.Tensor) -> torch.Tensor:
    """Subtract the per-mesh vertex centroid (the original uses the centroid, not the pelvis)."""
    return vertices - vertices.mean(dim=-2, keepdim=True)


def apply_global_orient(canonical: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Global mesh = R · canonical, for (B, V, 3) points and (B, 3, 3) rotations."""
    return canonical @ rotation.transpose(-1, -2)


class BodyModel(nn.Module):
    """A parametric body: fixed topology, posed canonical vertices, COCO-17 joint regression.

    Subclasses set ``faces`` (F, 3) long buffer, ``coco_regressor`` (17, V) buffer, ``pose_joint_names``
    and ``shape_names``, and implement :meth:`posed_vertices`.
    """

    name: str = "body"
    pose_joint_names: tuple[str, ...] = ()
    shape_names: tuple[str, ...] = ()
    faces: torch.Tensor
    coco_regressor: torch.Tensor

    @property
    def num_vertices(self) -> int:
        return int(self.coco_regressor.shape[1])

    def posed_vertices(self, pose: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """Vertices (B, V, 3) with zero root orientation and no translation, y-up/+z-facing frame."""
        raise NotImplementedError

    def canonical_vertices(self, pose: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """Canonical mesh: root orientation removed, vertex centroid subtracted."""
        return canonicalize(self.posed_vertices(pose, shape))

    def vertices(self, params: BodyParams) -> torch.Tensor:
        """Global (camera-oriented), centroid-centred mesh = R · canonical."""
        canonical = self.canonical_vertices(params.pose, params.shape)
        return apply_global_orient(canonical, params.global_orient.to(canonical.dtype))

    def joints(self, vertices: torch.Tensor) -> torch.Tensor:
        """COCO-17 joints (B, 17, 3) regressed linearly from vertices (B, V, 3)."""
        return torch.einsum("jv,bvc->bjc", self.coco_regressor.to(vertices.dtype), vertices)

    def zero_params(self, batch: int = 1) -> BodyParams:
        """Rest pose, mean shape, identity orientation."""
        return BodyParams(
            pose=torch.zeros(batch, len(self.pose_joint_names), 3),
            shape=self.default_shape(batch),
            global_orient=torch.eye(3).expand(batch, 3, 3).clone(),
        )

    def default_shape(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, len(self.shape_names))
