"""Fit sparse linear maps between two meshes of the same body (e.g. COCO joints or a finer topology).

Each target point is modelled as an affine combination (weights sum to 1, so it is translation
invariant) of its ``k`` nearest source vertices in the rest pose, fitted by least squares over many posed
examples. Used to give the working topology a COCO-17 regressor (Anny ships one only for its full
MakeHuman topology) and to upsample the coarse working mesh to the smooth display mesh.
"""

from __future__ import annotations

import torch


def fit_affine_transfer(source: torch.Tensor, target: torch.Tensor, k: int = 16, ridge: float = 1e-6,
                        rest_source: torch.Tensor | None = None, rest_target: torch.Tensor | None = None,
                        chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit weights so that ``target[:, t] ≈ sum_j w[t, j] * source[:, idx[t, j]]``.

    source: (N, Vs, 3) posed examples; target: (N, K, 3) the same examples on the other mesh/point set.
    Returns ``idx`` (K, k) long and ``weights`` (K, k) with rows summing to 1.
    """
    source = source.double()
    target = target.double()
    rest_source = (source[0] if rest_source is None else rest_source).double()
    rest_target = (target[0] if rest_target is None else rest_target).double()
    idx = torch.cdist(rest_target, rest_source).topk(k, largest=False).indices  # (K, k)
    weights = torch.empty(idx.shape, dtype=torch.float64)
    n = source.shape[0]
    for start in range(0, idx.shape[0], chunk):
        sel = idx[start:start + chunk]  # (c, k)
        # Eliminate the sum-to-1 constraint: w = e_0 + D z with D = [-1; I] (k, k-1).
        a = source[:, sel]  # (N, c, k, 3)
        base = a[:, :, 0]  # (N, c, 3)
        diff = a[:, :, 1:] - base[:, :, None]  # (N, c, k-1, 3)
        rhs = target[:, start:start + chunk] - base  # (N, c, 3)
        design = diff.permute(1, 0, 3, 2).reshape(sel.shape[0], n * 3, k - 1)
        b = rhs.permute(1, 0, 2).reshape(sel.shape[0], n * 3, 1)
        gram = design.transpose(1, 2) @ design
        gram = gram + ridge * torch.eye(k - 1, dtype=gram.dtype) * gram.diagonal(dim1=1, dim2=2).mean(-1)[:, None,
                                                                                                           None]
        z = torch.linalg.solve(gram, design.transpose(1, 2) @ b)[..., 0]  # (c, k-1)
        weights[start:start + chunk, 0] = 1.0 - z.sum(-1)
        weights[start:start + chunk, 1:] = z
    return idx, weights.float()


def apply_transfer(vertices: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(..., Vs, 3) -> (..., K, 3) with a fitted sparse affine map."""
    return (vertices[..., idx, :] * weights.to(vertices.dtype)[..., None]).sum(dim=-2)


def dense_regressor(idx: torch.Tensor, weights: torch.Tensor, num_source: int) -> torch.Tensor:
    """Sparse (K, k) map -> dense (K, Vs) regressor matrix."""
    dense = torch.zeros(idx.shape[0], num_source, dtype=weights.dtype)
    dense.scatter_add_(1, idx, weights)
    return dense
