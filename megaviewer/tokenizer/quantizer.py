"""EMA vector quantiser with dead-code restart.

The original (docs/original-implementation.md §3.4) is a Sonnet-style EMA codebook (decay 0.99, Laplace smoothing 1e-5,
commitment 0.25, straight-through gradients) with no restart, so codes that lose their data stay dead and
the effective vocabulary shrinks. We keep the same update and add a restart: every ``restart_every``
training steps, codes whose EMA cluster size fell below ``restart_threshold`` are moved onto randomly
chosen encoder outputs of the current batch (their EMA statistics reset to that point), which revives
them where the data actually is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # (B, N, D), straight-through
    ids: torch.Tensor  # (B, N) long
    commitment_loss: torch.Tensor
    perplexity: torch.Tensor


class EMAQuantizer(nn.Module):
    def __init__(self, num_codes: int = 512, dim: int = 9, decay: float = 0.99, commitment: float = 0.25,
                 epsilon: float = 1e-5, restart_threshold: float = 0.05):
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.decay, self.commitment, self.epsilon = decay, commitment, epsilon
        self.restart_threshold = restart_threshold
        self.register_buffer("codebook", torch.randn(num_codes, dim))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("ema_count", torch.zeros(num_codes))
        self._last_inputs: torch.Tensor | None = None

    def nearest(self, latents: torch.Tensor) -> torch.Tensor:
        """Ids of the nearest codes (squared L2) for (..., D) latents."""
        flat = latents.reshape(-1, self.dim).to(self.codebook.dtype)
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                + self.codebook.pow(2).sum(1)[None])
        return dist.argmin(dim=1).reshape(latents.shape[:-1])

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.codebook)

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        ids = self.nearest(latents)
        one_hot = F.one_hot(ids.reshape(-1), self.num_codes).to(latents.dtype)
        if self.training:
            self._ema_update(latents.detach().reshape(-1, self.dim), one_hot.detach())
        quantized = self.lookup(ids).to(latents.dtype)
        commitment = self.commitment * F.mse_loss(latents, quantized.detach())
        quantized = latents + (quantized - latents).detach()
        probs = one_hot.mean(0)
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return QuantizerOutput(quantized, ids, commitment, perplexity)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, one_hot: torch.Tensor) -> None:
        flat, one_hot = flat.float(), one_hot.float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = one_hot.sum(0)
            sums = one_hot.t() @ flat
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        else:
            counts, sums = one_hot.sum(0), one_hot.t() @ flat
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + self.epsilon) / (total + self.num_codes * self.epsilon) * total
        self.codebook.copy_(self.ema_sum / smoothed[:, None])
        self._last_inputs = flat

    @torch.no_grad()
    def restart_dead_codes(self, generator: torch.Generator | None = None) -> int:
        """Move codes whose EMA count is below the threshold onto random recent encoder outputs.

        Returns the number of restarted codes. Deterministic given ``generator`` (resume-safe); in DDP the
        replacement comes from rank 0 and is broadcast so every replica keeps the same codebook.
        """
        if self._last_inputs is None:
            return 0
        dead = self.ema_count < self.restart_threshold
        num_dead = int(dead.sum())
        if num_dead:
            pool = self._last_inputs
            pick = torch.randint(0, pool.shape[0], (num_dead,), generator=generator)
            noise = torch.randn(num_dead, self.dim, generator=generator) * 1e-3
            new_codes = pool[pick.to(pool.device)] + noise.to(pool.device)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.broadcast(new_codes, src=0)
            self.codebook[dead] = new_codes
            self.ema_sum[dead] = new_codes
            self.ema_count[dead] = 1.0
        return num_dead

    def usage(self, ids: torch.Tensor) -> tuple[float, float]:
        """(fraction of codes used, perplexity) over a set of ids."""
        counts = torch.bincount(ids.reshape(-1), minlength=self.num_codes).float()
        probs = counts / counts.sum()
        perplexity = float(torch.exp(-(probs * torch.log(probs + 1e-10)).sum()))
        return float((counts > 0).float().mean()), perplexity
