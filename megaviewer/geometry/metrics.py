"""Mesh-recovery metrics in millimetres, as the original evaluation (docs/original-implementation.md §8).

All inputs are in metres. PVE and MPJPE compare centroid-centred meshes/joints (no pelvis alignment);
PA-MPJPE first applies the similarity Procrustes alignment (scale, rotation with reflection fix,
translation). Every function returns one value per batch element so callers can take min-of-Q, means,
or medians as they need.
"""

from __future__ import annotations

import torch

MM = 1000.0


def center(points: torch.Tensor) -> torch.Tensor:
    """Subtract the per-sample centroid of (..., P, 3) points."""
    return points - points.mean(dim=-2, keepdim=True)


def pve(pred_vertices: torch.Tensor, gt_vertices: torch.Tensor) -> torch.Tensor:
    """Per-vertex error (mm) of centroid-centred meshes, (..., V, 3) -> (...)."""
    return (center(pred_vertices) - center(gt_vertices)).norm(dim=-1).mean(dim=-1) * MM


def mpjpe(pred_joints: torch.Tensor, gt_joints: torch.Tensor) -> torch.Tensor:
    """Mean joint error (mm) of joints already expressed in centroid-centred frames, (..., J, 3) -> (...)."""
    return (pred_joints - gt_joints).norm(dim=-1).mean(dim=-1) * MM


def _rotation_and_gain(src: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kabsch on centred point sets: the rotation R (..., 3, 3) with R·src ≈ tgt (reflection fixed) and
    trace(R·cov), the numerator of the optimal similarity scale."""
    cov = src.transpose(-1, -2) @ tgt  # (..., 3, 3)
    u, s, vh = torch.linalg.svd(cov)
    det = torch.det(vh.transpose(-1, -2) @ u.transpose(-1, -2))
    fix = torch.ones_like(s)
    fix[..., -1] = torch.sign(det)
    fix = torch.where(fix == 0, torch.ones_like(fix), fix)
    rot = vh.transpose(-1, -2) @ torch.diag_embed(fix) @ u.transpose(-1, -2)
    return rot, (s * fix).sum(-1)


def procrustes_rotation(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The rotation (..., 3, 3) that best turns ``source`` (..., P, 3) onto ``target``, both about their centroids."""
    return _rotation_and_gain(center(source), center(target))[0]


def procrustes_align(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Similarity transform of ``source`` (..., P, 3) onto ``target`` minimising squared error."""
    src_mean = source.mean(dim=-2, keepdim=True)
    tgt_mean = target.mean(dim=-2, keepdim=True)
    src = source - src_mean
    tgt = target - tgt_mean
    rot, gain = _rotation_and_gain(src, tgt)
    var = (src**2).sum(dim=(-1, -2))
    scale = gain / var.clamp_min(1e-12)
    return scale[..., None, None] * (src @ rot.transpose(-1, -2)) + tgt_mean


def pa_mpjpe(pred_joints: torch.Tensor, gt_joints: torch.Tensor) -> torch.Tensor:
    """Joint error (mm) after similarity Procrustes alignment of the prediction to the ground truth."""
    return mpjpe(procrustes_align(pred_joints, gt_joints), gt_joints)


def per_vertex_error(pred_vertices: torch.Tensor, gt_vertices: torch.Tensor) -> torch.Tensor:
    """Per-vertex distance (mm) of centroid-centred meshes, (..., V, 3) -> (..., V)."""
    return (center(pred_vertices) - center(gt_vertices)).norm(dim=-1) * MM
