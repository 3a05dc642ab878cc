"""Pre-LN transformer blocks matching timm's ViT ``Block`` defaults (docs/original-implementation.md §4).

Why our own instead of ``timm.models.vision_transformer.Block``: we need a key-padding mask (variable
numbers of visible tokens per sample in one encoder batch), which timm's block does not take. Parameter
names mirror timm's (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``) so the
original checkpoints' block tensors map one-to-one. Attention uses
``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on GPU, training, masks), except CPU
inference on this model's short sequences, where two plain batched matmuls are faster (:func:`attend`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-5
MATMUL_ATTENTION_MAX_LEN = 512  # keys; see attend()


class Attention(nn.Module):
    """Multi-head self-attention: qkv without bias (original), output projection with bias."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                queries: int | torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, D); attn_mask bool broadcastable to (B, heads, L, L), True = may attend.

        ``queries``: only some rows attend (keys/values still come from all L rows) -- an int k for the last
        k rows, or a long tensor (B, m) of row indices -- and the output is (B, k or m, D): the same numbers
        as picking those rows of the full output, without computing rows nobody reads.
        """
        b, n, d = x.shape
        hd = d // self.heads
        if queries is None or (isinstance(queries, int) and queries >= n):
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            rows = n
        else:
            picked = pick_rows(x, queries)
            rows = picked.shape[1]
            w, bias = self.qkv.weight, self.qkv.bias
            q = F.linear(picked, w[:d], None if bias is None else bias[:d])
            q = q.reshape(b, rows, self.heads, hd).transpose(1, 2)
            kv = F.linear(x, w[d:], None if bias is None else bias[d:])
            kv = kv.reshape(b, n, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
            k, v = kv[0], kv[1]
            if attn_mask is not None and attn_mask.shape[-2] != 1:
                raise ValueError("row-selected queries take key-padding masks only (query dimension 1)")
        out = attend(q, k, v, attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, rows, d))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over (B, H, L, d) tensors.

    Why not always SDPA: on a CPU its flash kernel costs more than two plain batched matmuls for the short,
    batched sequences of this model's stochastic generation (at most a few hundred tokens; both ways per
    shape: ``attention`` in ``resources/bench/cpu_routes.json``). The scores matrix is then materialised, so
    inference without a mask on sequences up to ``MATMUL_ATTENTION_MAX_LEN`` keys only; training and
    everything else keep SDPA.
    """
    if (attn_mask is None and not torch.is_grad_enabled() and q.device.type == "cpu"
            and k.shape[-2] <= MATMUL_ATTENTION_MAX_LEN):
        lead = q.shape[:-2]
        q3, k3, v3 = q.reshape(-1, *q.shape[-2:]), k.reshape(-1, *k.shape[-2:]), v.reshape(-1, *v.shape[-2:])
        scores = torch.bmm(q3 * (q.shape[-1] ** -0.5), k3.transpose(-1, -2))
        return torch.bmm(scores.softmax(dim=-1), v3).view(*lead, q.shape[-2], v.shape[-1])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


def pick_rows(x: torch.Tensor, rows: int | torch.Tensor) -> torch.Tensor:
    """The last ``rows`` rows of x (B, L, D) if an int, else the rows of the long index (B, m)."""
    if isinstance(rows, int):
        return x[:, -rows:]
    return x.gather(1, rows[..., None].expand(-1, -1, x.shape[-1]))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """x + MHSA(LN(x)), then x + MLP(LN(x)); no dropout, drop-path or layer-scale (as the original)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                keep: int | torch.Tensor | None = None) -> torch.Tensor:
        """``keep``: return only some rows -- the last ``keep`` if an int, else the rows of a long index
        (B, m) -- computing attention queries, the output projection and the MLP for those rows only (a
        decoder's final block needs just its mesh slots; generation just the still-masked ones)."""
        if keep is None:
            x = x + self.attn(self.norm1(x), attn_mask)
            return x + self.mlp(self.norm2(x))
        x = pick_rows(x, keep) + self.attn(self.norm1(x), attn_mask, queries=keep)
        return x + self.mlp(self.norm2(x))


def key_padding_to_attn_mask(pad: torch.Tensor | None) -> torch.Tensor | None:
    """(B, L) bool, True = padding -> (B, 1, 1, L) bool, True = may attend (SDPA convention).

    Returns None when nothing is padded so SDPA can use its unmasked fast path.
    """
    if pad is None or not bool(pad.any()):
        return None
    return (~pad)[:, None, None, :]


def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """timm's trunc_normal_(std=0.02): default absolute cut-offs ±2 (= ±100σ, effectively a normal)."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0, b=2.0)


def sinusoidal_encoding(length: int, dim: int, base: float = 10000.0, device: torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Fixed 1D sinusoidal code (length, dim): sin on even dims, cos on odd dims (Vaswani et al.).

    pe[p, 2i] = sin(p / base^(2i/dim)), pe[p, 2i+1] = cos(p / base^(2i/dim)). Odd ``dim`` is allowed
    (the last even dim gets a sin without its cos partner).
    """
    pos = torch.arange(length, dtype=torch.float64, device=device)[:, None]
    even = torch.arange(0, dim, 2, dtype=torch.float64, device=device)
    angle = pos / torch.pow(torch.tensor(base, dtype=torch.float64, device=device), even / dim)
    pe = torch.zeros(length, dim, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return pe.to(dtype)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["Attention", "Block", "LN_EPS", "Mlp", "count_parameters", "key_padding_to_attn_mask", "pick_rows",
           "sinusoidal_encoding", "trunc_normal_"]
