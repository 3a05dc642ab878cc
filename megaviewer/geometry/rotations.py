"""Rotation conversions over batched tensors (any leading shape).

Conventions follow the original MEGA code (docs/original-implementation.md §1): the 6D representation is the first two
ROWS of the rotation matrix, and 6D -> matrix uses Gram-Schmidt with the resulting basis stacked as rows
(the pytorch3d convention), so ``matrix_to_rot6d(rot6d_to_matrix(x))`` is the identity on valid inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rotvec_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) -> rotation matrix (..., 3, 3) via Rodrigues' formula (stable near 0)."""
    angle = rotvec.norm(dim=-1, keepdim=True)
    small = angle < 1e-8
    safe_angle = torch.where(small, torch.ones_like(angle), angle)
    axis = rotvec / safe_angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*rotvec.shape[:-1], 3, 3)
    sin = torch.sin(angle)[..., None]
    cos = torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(skew)
    rot = eye + sin * skew + (1.0 - cos) * (skew @ skew)
    # First-order expansion for tiny angles keeps gradients finite.
    rot_small = eye + _skew(rotvec)
    return torch.where(small[..., None], rot_small, rot)


def _skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)


def matrix_to_rotvec(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) -> axis-angle (..., 3), robust at 0 and pi (via quaternions)."""
    return quaternion_to_rotvec(matrix_to_quaternion(matrix))


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrix -> unit quaternion (w, x, y, z) with w >= 0, using the largest-pivot branch."""
    m = matrix
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = torch.stack(
        [
            1.0 + trace,
            1.0 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
            1.0 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
            1.0 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
        ],
        dim=-1,
    )
    best = candidates.argmax(dim=-1, keepdim=True)
    r = torch.sqrt(candidates.clamp_min(1e-12))
    # Each row: the quaternion computed from one pivot, scaled by 2*r.
    q_w = torch.stack(
        [r[..., 0] ** 2, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1
    )
    q_x = torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], r[..., 1] ** 2, m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0]], -1
    )
    q_y = torch.stack(
        [m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], r[..., 2] ** 2, m[..., 2, 1] + m[..., 1, 2]], -1
    )
    q_z = torch.stack(
        [m[..., 1, 0] - m[..., 0, 1], m[..., 2, 0] + m[..., 0, 2], m[..., 2, 1] + m[..., 1, 2], r[..., 3] ** 2], -1
    )
    all_q = torch.stack([q_w, q_x, q_y, q_z], dim=-2) / (2.0 * r[..., None])
    q = torch.gather(all_q, -2, best[..., None].expand(*best.shape[:-1], 1, 4)).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_rotvec(quat: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (w, x, y, z) -> axis-angle (..., 3)."""
    quat = torch.where(quat[..., :1] < 0, -quat, quat)
    xyz = quat[..., 1:]
    sin_half = xyz.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, quat[..., :1])
    scale = torch.where(sin_half < 1e-8, 2.0 / quat[..., :1].clamp_min(1e-8), angle / sin_half.clamp_min(1e-12))
    return xyz * scale


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """6D (..., 6) -> rotation (..., 3, 3): Gram-Schmidt, basis vectors stacked as rows."""
    a1, a2 = rot6d[..., :3], rot6d[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation (..., 3, 3) -> 6D (..., 6): its first two rows."""
    return matrix[..., :2, :].reshape(*matrix.shape[:-2], 6)


def mean_rotation(matrices: torch.Tensor) -> torch.Tensor:
    """Chordal L2 mean of rotations (Q, 3, 3) -> (3, 3): the rotation nearest (Frobenius) to their average.

    The plain average of rotation matrices is not a rotation (it shrinks); its projection back onto SO(3)
    by SVD, with the determinant fixed to +1, is the standard mean for rotations that are not far apart.
    """
    u, _, vh = torch.linalg.svd(matrices.double().mean(dim=0))
    fix = torch.ones(3, dtype=torch.float64, device=matrices.device)
    fix[2] = torch.sign(torch.linalg.det(u @ vh))
    return ((u * fix) @ vh).to(matrices.dtype)


def random_rotation(batch: int, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
    """Uniformly random rotations (batch, 3, 3) from normalised Gaussian quaternions."""
    q = F.normalize(torch.randn(batch, 4, generator=generator, dtype=dtype), dim=-1)
    return quaternion_to_matrix(q)


def quaternion_to_matrix(quat: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (w, x, y, z) -> rotation matrix."""
    w, x, y, z = F.normalize(quat, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*quat.shape[:-1], 3, 3)
