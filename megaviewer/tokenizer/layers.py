"""vcConv layers of the fully convolutional mesh autoencoder (Zhou et al. 2020, as used by Mesh-VQ-VAE).

Every layer maps features on ``num_in`` vertices to ``num_out`` vertices through a padded neighbour
table. The conv branch uses a kernel basis shared by all vertices (``weight_num`` matrices) with learnt
per-vertex, per-neighbour coefficients; the residual branch is identity, a channel projection, or a learnt
normalised weighted average (pool/unpool). Output = sqrt(1-r)·conv + sqrt(r)·residual
(docs/original-implementation.md §3.2). We never materialise the per-vertex kernels: neighbours are first
mixed by the coefficients (one batched matmul over output vertices) and then one dense matmul applies the
basis. Features are kept VERTEX-MAJOR, (V, B, C), inside the network: gathers then copy contiguous rows and
their backward is a cheap row-wise index_add, about twice as fast on a CPU as the batch-major layout.

Inference (no autograd) takes another route, :meth:`VcConv.infer`: the per-vertex kernels are
materialised once and cached (the original's "test mode"), features are CHANNEL-major, (V, C, B), so the
gathered neighbourhoods are already the (M·C_in, B) right-hand side of one small matmul per output vertex:
no permutes, no basis matmul. Layers that keep or shrink the channels (64 -> 32, 32 -> 16, 16 -> 3) do
better the other way round on a CPU: the basis is applied to every input vertex first and one sparse
matrix of the coefficients mixes the results (:meth:`VcConv._mix_weights`), so neither kernels nor
gathered neighbourhoods are written. On a CPU this route is faster than the trainable one at every batch
size (``python scripts/bench_routes.py`` measures both, ``resources/bench/cpu_routes.json``); outputs agree
to float round-off. The cached route is differentiable in its input (never in the weights, which it holds as
constants): fitting latents through a frozen decoder (:mod:`megaviewer.refine`) runs it with autograd on. The
cache is built outside inference mode so autograd may save its tensors, and the sparse mix's backward uses a
transposed copy cached beside it (torch would otherwise transpose the CSR matrix on every backward).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from megaviewer.param_cache import parameters_key
from megaviewer.tokenizer.hierarchy import Neighbourhood

BATCHED_BASIS_MIN_BATCH = 12  # see VcConv._conv_mix


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Vertex-major (N_in, B, C) -> (N_out, M, B*C); the padding index points at an appended zero row."""
    padded = F.pad(x, (0, 0, 0, 0, 0, 1))
    picked = torch.index_select(padded, 0, index.reshape(-1))
    return picked.view(*index.shape, -1)


class _SparseMix(torch.autograd.Function):
    """``mix @ rhs`` for a constant sparse ``mix`` whose transpose ``mix_t`` is given: the backward is one CSR
    product instead of torch's transpose-then-multiply (most of a small batch's backward time)."""

    @staticmethod
    def forward(ctx, mix: torch.Tensor, mix_t: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        ctx.mix_t = mix_t
        return mix @ rhs

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, ctx.mix_t @ grad


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
    def __getstate__(self) -> dict:
        """Copies and pickles leave the inference cache behind: it is derived from the parameters and rebuilt on
        first use, and its sparse CSR matrix can be neither deep-copied nor pickled."""
        state = self.__dict__.copy()
        state.pop("_infer_cache", None)
        return state

    def _cache_key(self) -> tuple:
        return parameters_key(self.parameters())

    def _inference_weights(self) -> dict[str, torch.Tensor]:
        """The conv as per-vertex kernels (O, C_out, M·C_in) -- or, for a shrinking layer on the CPU, as a
        basis plus a sparse neighbour-mixing matrix (:meth:`_mix_weights`) -- with normalised pool weights
        (O, 1, M) and the channel projection, computed from the parameters once and reused until a
        parameter changes (optimiser step, load, ``.to``)."""
        key = self._cache_key()
        cached = getattr(self, "_infer_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        weights: dict[str, torch.Tensor] = {}
        with torch.inference_mode(False), torch.no_grad():  # plain tensors: autograd may save them (module doc)
            if self.residual_rate < 1.0:
                weights["bias"] = self.bias.view(1, -1, 1).clone()
                coeffs = self.coeffs * self.mask[..., None]  # (O, M, W), padded neighbours zero
                basis = self.basis.view(-1, self.out_channels, self.in_channels)  # (W, C_out, C_in)
                if self._mixes_sparsely():
                    weights.update(self._mix_weights(coeffs, basis))
                else:
                    kernel = torch.einsum("omw,wki->okmi", coeffs, basis)
                    weights["kernel"] = kernel.reshape(self.num_out, self.out_channels, -1).contiguous()
            if self.residual_rate > 0.0:
                if self.in_channels != self.out_channels:
                    weights["res_proj"] = self.res_proj.clone()
                if self.num_in != self.num_out:
                    w = self.res_weights.abs() * self.mask
                    weights["res_weights"] = (w / (w.sum(dim=1, keepdim=True) + 1e-8))[:, None, :].contiguous()
        self._infer_cache = (key, weights)
        return weights

    def _mixes_sparsely(self) -> bool:
        """Whether :meth:`_mix_weights`' route serves this layer: float32/64 on the CPU (sparse CSR products
        there; half precision is not supported) and C_out <= C_in, where applying the basis first leaves
        less to mix. Layers that grow the channels are faster with the kernels (both routes per layer:
        ``vcconv_layers`` in ``resources/bench/cpu_routes.json``)."""
        return (self.basis.device.type == "cpu" and self.basis.dtype in (torch.float32, torch.float64)
                and self.out_channels <= self.in_channels)

    def _mix_weights(self, coeffs: torch.Tensor, basis: torch.Tensor) -> dict[str, torch.Tensor]:
        """The conv as basis first, then a sparse mix: out[o] = sum over neighbours m and basis matrices w of
        coeffs[o, m, w] * (basis_w @ x[index[o, m]]), from the masked ``coeffs`` (O, M, W) and ``basis``
        (W, C_out, C_in) that :meth:`_inference_weights` computes for either route.

        ``basis_rows`` (W·C_out, C_in) applied to every input vertex gives (N_in, W·C_out, B), i.e. N_in·W rows
        of C_out·B numbers; ``mix`` is the CSR matrix (N_out, N_in·W) of the coefficients (padded neighbours
        dropped) that sums those rows into the output. Unlike the kernel route, nothing of size
        O·M·C_in·B (the gathered neighbourhoods) or O·C_out·M·C_in (the kernels) is ever written: for the
        400-vertex 32 -> 16 layer those are 11.5 MB each at batch 16.
        """
        weight_num = basis.shape[0]
        num_out, max_nb = self.index.shape
        valid = (self.mask > 0)[..., None].expand(num_out, max_nb, weight_num)
        rows = torch.arange(num_out, device=self.index.device)[:, None, None].expand_as(valid)
        cols = self.index[..., None] * weight_num + torch.arange(weight_num, device=self.index.device)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only CSR @ dense
            warnings.simplefilter("ignore", UserWarning)
            mix = torch.sparse_coo_tensor(torch.stack([rows[valid], cols[valid]]), coeffs[valid],
                                          (num_out, self.num_in * weight_num)).coalesce().to_sparse_csr()
            mix_t = mix.t().to_sparse_csr()  # for the backward of a differentiable use (module docstring)
        return {"basis_rows": basis.reshape(-1, self.in_channels).contiguous(), "mix": mix, "mix_t": mix_t}

    def _conv_mix(self, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Channel-major (N_in, C_in, B) -> conv output (N_out, C_out, B) without bias (:meth:`_mix_weights`).

        The basis goes on every input vertex either as N_in small matmuls (W·C_out, C_in) @ (C_in, B) or as one
        (N_in·B, C_in) @ (C_in, W·C_out) matmul plus a transpose (a copy for the mix). With several threads
        MKL's batched small matmuls are slow for narrow right-hand sides and pay off from about
        ``BATCHED_BASIS_MIN_BATCH`` meshes, where the transposed copy costs more (both ways per batch size:
        ``basis_first`` in ``resources/bench/cpu_routes.json``).
        """
        batch, mix = x.shape[-1], weights["mix"]
        h = x.to(mix.dtype)  # the weights' precision (e.g. float64 vertices into a float32 model), as the kernels
        if batch < BATCHED_BASIS_MIN_BATCH:
            per_row = h.transpose(1, 2).reshape(-1, self.in_channels) @ weights["basis_rows"].t()
            per_basis = per_row.view(self.num_in, batch, -1).transpose(1, 2)  # (N_in, W·C_out, B)
        else:
            per_basis = torch.matmul(weights["basis_rows"], h)  # (N_in, W·C_out, B)
        rhs = per_basis.reshape(-1, self.out_channels * batch)
        mixed = _SparseMix.apply(mix, weights["mix_t"], rhs) if rhs.requires_grad else mix @ rhs
        return mixed.view(self.num_out, self.out_channels, batch).to(x.dtype)

    def _gather_channel_major(self, x: torch.Tensor) -> torch.Tensor:
        """(N_in, C, B) -> (N_out, M·C, B), padding slots read an appended zero row."""
        padded = F.pad(x, (0, 0, 0, 0, 0, 1))
        picked = torch.index_select(padded, 0, self.index.reshape(-1))
        return picked.view(self.num_out, -1, x.shape[-1])

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-major (N_in, C_in, B) -> (N_out, C_out, B) with the cached weights; differentiable in ``x`` only."""
        weights = self._inference_weights()
        r = self.residual_rate
        out = None
        if r < 1.0:
            if "mix" in weights:
                conv = self._conv_mix(weights, x)
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
