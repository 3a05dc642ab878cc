"""vcConv layers of the fully convolutional mesh autoencoder (Zhou et al. 2020, as used by Mesh-VQ-VAE).

Every layer maps features on ``num_in`` vertices to ``num_out`` vertices through a padded neighbour
table. The conv branch uses a kernel basis shared by all vertices (``weight_num`` matrices) with learnt
per-vertex, per-neighbour coefficients; the residual branch is identity, a channel projection, or a learnt
normalised weighted average (pool/unpool). Output = sqrt(1-r)·conv + sqrt(r)·residual (reference-facts
§1.2). We never materialise the per-vertex kernels: neighbours are first mixed by the coefficients
(one batched matmul over output vertices) and then one dense matmul applies the basis. Features are kept
VERTEX-MAJOR, (V, B, C), inside the network: gathers then copy contiguous rows and their backward is a
cheap row-wise index_add, about twice as fast on a CPU as the batch-major layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from megaviewer.tokenizer.hierarchy import Neighbourhood


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Vertex-major (N_in, B, C) -> (N_out, M, B*C); the padding index points at an appended zero row."""
    padded = F.pad(x, (0, 0, 0, 0, 0, 1))
    picked = torch.index_select(padded, 0, index.reshape(-1))
    return picked.view(*index.shape, -1)


class VcConv(nn.Module):
    """One vcConv layer over a fixed neighbourhood table."""

    def __init__(self, table: Neighbourhood, in_channels: int, out_channels: int, weight_num: int,
                 residual_rate: float, activation: bool):
        super().__init__()
        if not 0.0 <= residual_rate <= 1.0:
            raise ValueError("residual_rate must lie in [0, 1]")
        if residual_rate < 1.0 and weight_num <= 0:
            raise ValueError("a conv branch needs weight_num > 0")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_in, self.num_out = table.num_in, table.num_out
        self.residual_rate = residual_rate
        self.activation = activation
        self.register_buffer("index", torch.as_tensor(table.index, dtype=torch.long).clone())
        self.register_buffer("mask", torch.as_tensor(table.mask, dtype=torch.float32))
        max_nb = table.index.shape[1]
        avg_nb = max(1, round(table.mean_size))
        if residual_rate < 1.0:
            self.basis = nn.Parameter(torch.randn(weight_num, out_channels * in_channels))
            self.coeffs = nn.Parameter(torch.randn(self.num_out, max_nb, weight_num) / (avg_nb * weight_num))
            self.bias = nn.Parameter(torch.zeros(out_channels))
        if residual_rate > 0.0:
            if in_channels != out_channels:
                self.res_proj = nn.Parameter(torch.randn(out_channels, in_channels) / out_channels)
            if self.num_in != self.num_out:
                self.res_weights = nn.Parameter(torch.randn(self.num_out, max_nb) / avg_nb)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        weight_num = self.coeffs.shape[-1]
        batch = x.shape[1]
        coeffs = (self.coeffs * self.mask[..., None].to(self.coeffs.dtype)).to(x.dtype)
        mixed = torch.bmm(coeffs.transpose(1, 2), _gather(x, self.index))  # (O, W, B*C_in)
        mixed = mixed.view(self.num_out, weight_num, batch, self.in_channels).permute(0, 2, 1, 3)
        basis = self.basis.view(weight_num, self.out_channels, self.in_channels).permute(0, 2, 1)
        out = mixed.reshape(self.num_out * batch, -1) @ basis.reshape(-1, self.out_channels).to(x.dtype)
        out = out.view(self.num_out, batch, self.out_channels) + self.bias.to(x.dtype)
        return F.elu(out) if self.activation else out

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels != self.out_channels:
            x = x @ self.res_proj.t().to(x.dtype)
        if self.num_in == self.num_out:
            return x
        weights = self.res_weights.abs() * self.mask.to(self.res_weights.dtype)
        weights = weights / (weights.sum(dim=1, keepdim=True) + 1e-8)
        mixed = torch.bmm(weights.to(x.dtype)[:, None, :], _gather(x, self.index))  # (O, 1, B*C)
        return mixed.view(self.num_out, x.shape[1], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Vertex-major features (N_in, B, C_in) -> (N_out, B, C_out)."""
        r = self.residual_rate
        if r == 0.0:
            return self._conv(x)
        if r == 1.0:
            return self._residual(x)
        return math.sqrt(1.0 - r) * self._conv(x) + math.sqrt(r) * self._residual(x)
