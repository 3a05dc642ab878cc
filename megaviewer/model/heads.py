"""Rotation / weak-perspective camera head on pooled conditioning features (docs/original-implementation.md §4, §7).

Original: Linear(C, D) -> Dropout(0.5) -> Linear(D, D) -> Dropout(0.5) -> linear 6D rotation and linear
camera [s, tx, ty]. It has NO nonlinearity (same page, §10.4), so the whole "MLP with 2 hidden layers" collapses to
one linear map of the pooled features. We add a GELU after each hidden layer, which makes the paper's
description true; dropout is kept.

Output conventions:
- ``rot6d`` (B, 6): two rows of the rotation matrix (``geometry.rotations.rot6d_to_matrix``). The rotation
  layer starts with small weights and bias = identity, so an untrained head predicts R ~ I.
- ``cam`` (B, 3) = [s, tx, ty] with s > 0: the scale is ``softplus(raw)``, biased so s starts at
  ``init_scale`` (0.9: a ~1.7 m body then spans most of the [-1, 1] crop, like HMR/SPIN's initial camera).
  Weak perspective: x2d = s * (X + tx), y2d = s * (Y + ty).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


class RotCamHead(nn.Module):
    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.5, init_scale: float = 0.9):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.rot = nn.Linear(hidden, 6)
        self.cam = nn.Linear(hidden, 3)
        with torch.no_grad():
            self.rot.weight.mul_(0.01)
            self.rot.bias.copy_(torch.tensor(IDENTITY_6D))
            self.cam.weight.mul_(0.01)
            self.cam.bias.zero_()
            self.cam.bias[0] = math.log(math.expm1(init_scale))  # softplus^-1(init_scale)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pooled (B, C) -> rot6d (B, 6), cam (B, 3) = [s > 0, tx, ty]."""
        x = self.drop(self.act(self.fc1(pooled)))
        x = self.drop(self.act(self.fc2(x)))
        raw = self.cam(x)
        cam = torch.cat([F.softplus(raw[:, :1]), raw[:, 1:]], dim=1)
        return self.rot(x), cam
