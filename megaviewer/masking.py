"""Masking schedules for training and the reveal schedule for iterative generation.

Training (docs/original-implementation.md §5, §10.1): ONE τ ~ U[0, 1) per batch gives the number of VISIBLE tokens M;
each sample then gets its own uniformly random set of M visible positions.
- ``cosine`` (the original code, MaskGIT convention): M = floor(N (1 - cos(πτ/2))), so 0..N-1 and the
  masked fraction is cos(πτ/2) (mean ≈ 0.645). The paper's text writes floor(N cos(πτ/2)) for M; we
  follow the code that produced the reported numbers.
- ``linear`` (ablation): M = floor(N τ).
- ``full`` (ablation "full mask"): M = 0, i.e. always the deterministic-inference situation.

Generation (paper Sec. 3.4): ``tokens_revealed_by_step`` gives n_t, the number of visible tokens after step
t = 1..T, n_t = floor(N (1 - cos(πt / 2T))) and n_T = N exactly (the original code left one token forced
to index 0 at the end, docs/original-implementation.md §10.2 -- fixed here).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

ScheduleFn = Callable[[float, int], int]


def cosine_visible(tau: float, n: int) -> int:
    return math.floor(n * (1.0 - math.cos(math.pi * tau / 2.0)))


def linear_visible(tau: float, n: int) -> int:
    return math.floor(n * tau)


def full_visible(tau: float, n: int) -> int:
    return 0


def full_share(share: float) -> ScheduleFn:
    """A share of the batches fully masked (τ < share: the deterministic task, which also costs the encoder
    nothing), the others cosine over the rescaled τ (partial masks, for stochastic generation)."""

    def visible(tau: float, n: int) -> int:
        return 0 if tau < share else cosine_visible((tau - share) / (1.0 - share), n)

    return visible


cosine_full_visible = full_share(0.5)

SCHEDULES: dict[str, ScheduleFn] = {"cosine": cosine_visible, "linear": linear_visible, "full": full_visible,
                                    "cosine_full": cosine_full_visible, "cosine_full75": full_share(0.75)}


def visible_count(schedule: str, tau: float, n: int) -> int:
    """Visible tokens M for τ in [0, 1) under ``schedule`` (clamped to [0, N-1]: something stays masked)."""
    if schedule not in SCHEDULES:
        raise KeyError(f"unknown masking schedule {schedule!r}; choose among {sorted(SCHEDULES)}")
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must lie in [0, 1), got {tau}")
    return min(max(SCHEDULES[schedule](tau, n), 0), n - 1)


def sample_visible_mask(batch: int, n: int, schedule: str = "cosine",
                        generator: torch.Generator | None = None, device: torch.device | str | None = None,
                        tau: float | None = None) -> torch.Tensor:
    """Training mask (batch, n) bool, True = visible.

    One τ for the whole batch (drawn from ``generator`` unless given), M = ``visible_count``; each row's
    visible positions are the first M entries of its own random permutation.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if tau is None:
        tau = float(torch.rand((), generator=generator, device=gen_device))
    m = visible_count(schedule, tau, n)
    perm = torch.rand(batch, n, generator=generator, device=gen_device).argsort(dim=1)
    mask = torch.zeros(batch, n, dtype=torch.bool, device=gen_device)
    mask.scatter_(1, perm[:, :m], True)
    return mask.to(device) if device is not None else mask


def tokens_revealed_by_step(n: int, steps: int) -> list[int]:
    """Visible-token counts [n_1, ..., n_T] after each generation step; n_T = N.

    n_t = floor(N (1 - cos(πt / 2T))) (paper), evaluated with a 1e-9 slack so float round-off cannot
    drop an exact integer (e.g. cos(π/3) = 0.5000000000000001 would turn 27 into 26 for N = 54).
    When N >= T every step must reveal at least one token, so the sequence is made strictly increasing
    by clamping n_t into [n_{t-1} + 1, N - (T - t)] (the upper bound leaves one token for each
    remaining step; both bounds are always compatible when N >= T). Example: N = 54, T = 20 starts
    1, 2, ... where the formula gives 0 at t = 1. When N < T some steps necessarily reveal nothing; the
    sequence is then only non-decreasing.
    """
    if n < 1 or steps < 1:
        raise ValueError(f"need n >= 1 and steps >= 1, got n={n}, steps={steps}")
    counts: list[int] = []
    prev = 0
    for t in range(1, steps + 1):
        if t == steps:
            value = n
        else:
            value = math.floor(n * (1.0 - math.cos(math.pi * t / (2 * steps))) + 1e-9)
            if n >= steps:
                value = min(max(value, prev + 1), n - (steps - t))
            else:
                value = min(max(value, prev), n)
        counts.append(value)
        prev = value
    return counts
