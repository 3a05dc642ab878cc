"""vcConv layers of the fully convolutional mesh autoencoder (Zhou et al. 2020, as used by Mesh-VQ-VAE).

Every layer maps features on ``num_in`` vertices to ``num_out`` vertices through a padded neighbour
table. The conv branch uses a kernel basis shared by all vertices (``weight_num`` matrices) with learnt
per-vertex, per-neighbour coefficients; the residual branch is identity, a channel projection, or a learnt
normalised weighted average (pool/unpool). Output = sqrt(1-r)·conv + sqrt(r)·residual (reference-facts
§1.2). We never materialise the per-vertex kernels: neighbours are first mixed by the coefficients
(one batched matmul over output vertices) and then one dense matmul applies the basis. Features are kept
VERTEX-MAJOR, (V, B, C), inside the network: gathers then copy contiguous rows and their backward is a
cheap row-wise index_add, about twice as fast on a CPU as the batch-major layout.

Inference (no autograd) takes another route, :meth:`VcConv.infer`: the per-vertex kernels are
materialised once and cached (the original's "test mode"), features are CHANNEL-major, (V, C, B), so the
gathered neighbourhoods are already the (M·C_in, B) right-hand side of one small matmul per output vertex:
no permutes, no basis matmul, and for the thin last layer (16 -> 3 channels) four times fewer
multiply-adds. A Q=16 decode is several times faster on a CPU; outputs agree to float round-off. For a
batch of one or two meshes reading the materialised kernels costs more than it saves, so
``MeshVQVAE`` keeps the basis route there (``KERNEL_ROUTE_MIN_BATCH`` in ``model.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from megaviewer.param_cache import parameters_key
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

    # ---- inference route: cached per-vertex kernels, channel-major features ------------------------
    def _cache_key(self) -> tuple:
        return parameters_key(self.parameters())

    def _inference_weights(self) -> dict[str, torch.Tensor]:
        """Kernels (O, C_out, M·C_in), normalised pool weights (O, 1, M) and the channel projection, computed
        from the parameters once and reused until a parameter changes (optimiser step, load, ``.to``)."""
        key = self._cache_key()
        cached = getattr(self, "_infer_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        weights: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            if self.residual_rate < 1.0:
                coeffs = self.coeffs * self.mask[..., None]
                basis = self.basis.view(-1, self.out_channels, self.in_channels)
                kernel = torch.einsum("omw,wki->okmi", coeffs, basis)
                weights["kernel"] = kernel.reshape(self.num_out, self.out_channels, -1).contiguous()
                weights["bias"] = self.bias.view(1, -1, 1).clone()
                weights.update(self._scatter_weights(kernel))
            if self.residual_rate > 0.0:
                if self.in_channels != self.out_channels:
                    weights["res_proj"] = self.res_proj.clone()
                if self.num_in != self.num_out:
                    w = self.res_weights.abs() * self.mask
                    weights["res_weights"] = (w / (w.sum(dim=1, keepdim=True) + 1e-8))[:, None, :].contiguous()
        self._infer_cache = (key, weights)
        return weights

    def _scatter_weights(self, kernel: torch.Tensor) -> dict[str, torch.Tensor]:
        """The same conv regrouped by INPUT vertex, for layers that shrink the channels (e.g. 16 -> 3).

        The gather route copies every neighbour's C_in features (M·C_in per output vertex) before its
        matmul; here each input vertex u first multiplies its features by the kernels of all P output slots
        that read it, (P·C_out, C_in) @ (C_in, B), and each output vertex then sums its M precomputed
        C_out-channel contributions. Same products and sums, less memory moved when C_out is well below
        C_in. Measured here for a batch of 16 (2 threads): 16 -> 3 channels 1.21 -> 0.68 ms, 64 -> 9
        0.34 -> 0.27 ms, but 64 -> 32 1.92 -> 1.86 and 32 -> 16 2.18 -> 2.56 ms (the extra pass eats the
        saving). So it is used only where the gathered contributions are at least 4x smaller than the
        gathered inputs (4·P·C_out <= M·C_in); otherwise this returns {}.

        ``kernel_t`` (N_in, P·C_out, C_in), padded slots zero; ``scatter_pos`` (N_out, M) index into the
        flattened (N_in·P) contributions, padded neighbours pointing at an appended zero row.
        """
        index, valid = self.index, self.mask > 0
        max_nb = index.shape[1]
        flat = torch.where(valid, index, self.num_in).reshape(-1)
        order = torch.argsort(flat, stable=True)
        first = torch.searchsorted(flat[order], flat[order])  # start of each input vertex's run
        slot = torch.empty_like(flat)
        slot[order] = torch.arange(flat.numel(), device=flat.device) - first
        slot = slot.view(self.num_out, max_nb)
        slots = int(slot[valid].max()) + 1 if bool(valid.any()) else 1
        if 4 * slots * self.out_channels > max_nb * self.in_channels:
            return {}
        per_slot = kernel.permute(0, 2, 1, 3)  # (O, M, C_out, C_in)
        kernel_t = kernel.new_zeros(self.num_in, slots, self.out_channels, self.in_channels)
        kernel_t[index[valid], slot[valid]] = per_slot[valid]
        pos = torch.where(valid, index * slots + slot, self.num_in * slots)
        return {"kernel_t": kernel_t.view(self.num_in, slots * self.out_channels, self.in_channels),
                "scatter_pos": pos.contiguous()}

    def _conv_scatter(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Channel-major (N_in, C_in, B) -> conv output (N_out, C_out, B) without bias, input-vertex first."""
        batch, pos = x.shape[-1], weights["scatter_pos"]
        contrib = torch.bmm(weights["kernel_t"].to(x.dtype), x).view(-1, self.out_channels * batch)
        picked = torch.index_select(F.pad(contrib, (0, 0, 0, 1)), 0, pos.reshape(-1))
        return picked.view(*pos.shape, self.out_channels, batch).sum(dim=1)

    def _gather_channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """(N_in, C, B) -> (N_out, M·C, B), padding slots read an appended zero row."""
        padded = F.pad(x, (0, 0, 0, 0, 0, 1))
        picked = torch.index_select(padded, 0, self.index.reshape(-1))
        return picked.view(self.num_out, -1, x.shape[-1])

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Inference only (no autograd): channel-major (N_in, C_in, B) -> (N_out, C_out, B)."""
        weights = self._inference_weights()
        r = self.residual_rate
        out = None
        if r < 1.0:
            if "kernel_t" in weights:
                conv = self._conv_scatter(weights, x)
            else:
                conv = torch.bmm(weights["kernel"].to(x.dtype), self._gather_channel_major(x))
            conv = conv + weights["bias"].to(x.dtype)
            out = F.elu(conv) if self.activation else conv
            if r > 0.0:
                out = math.sqrt(1.0 - r) * out
        if r > 0.0:
            res = x
            if "res_proj" in weights:
                res = torch.matmul(weights["res_proj"].to(x.dtype), res)
            if "res_weights" in weights:
                mixed = torch.bmm(weights["res_weights"].to(x.dtype), self._gather_channel_major(res).view(
                    self.num_out, -1, res.shape[1] * res.shape[2]))
                res = mixed.view(self.num_out, res.shape[1], res.shape[2])
            out = res if out is None else out + math.sqrt(r) * res
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Vertex-major features (N_in, B, C_in) -> (N_out, B, C_out)."""
        r = self.residual_rate
        if r == 0.0:
            return self._conv(x)
        if r == 1.0:
            return self._residual(x)
        return math.sqrt(1.0 - r) * self._conv(x) + math.sqrt(r) * self._residual(x)
