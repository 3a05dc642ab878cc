"""Training masking schedules and the generation reveal schedule."""

from __future__ import annotations

import math

import pytest
import torch

from megaviewer.masking import sample_visible_mask, tokens_revealed_by_step, visible_count

N = 54


def test_schedule_formulas() -> None:
    for tau in [0.0, 0.1, 0.33, 0.5, 0.77, 0.999]:
        assert visible_count("cosine", tau, N) == math.floor(N * (1 - math.cos(math.pi * tau / 2)))
        assert visible_count("linear", tau, N) == math.floor(N * tau)
        assert visible_count("full", tau, N) == 0
        expected = 0 if tau < 0.5 else math.floor(N * (1 - math.cos(math.pi * (2 * tau - 1) / 2)))
        assert visible_count("cosine_full", tau, N) == expected
    assert visible_count("cosine", 0.9999, N) == N - 1  # never all visible
    with pytest.raises(KeyError):
        visible_count("bogus", 0.5, N)
    with pytest.raises(ValueError):
        visible_count("cosine", 1.0, N)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "full", "cosine_full"])
def test_mask_counts_and_permutations(schedule: str) -> None:
    g = torch.Generator().manual_seed(0)
    mask = sample_visible_mask(8, N, schedule, generator=g, tau=0.6)
    expected = visible_count(schedule, 0.6, N)
    assert mask.dtype == torch.bool and mask.shape == (8, N)
    assert (mask.sum(1) == expected).all()  # one τ for the whole batch
    if 0 < expected:
        assert len({tuple(row.nonzero().flatten().tolist()) for row in mask}) > 1  # per-sample positions


def test_full_schedule_is_all_masked() -> None:
    assert not sample_visible_mask(4, N, "full", generator=torch.Generator().manual_seed(1)).any()


def test_cosine_count_distribution_matches_formula() -> None:
    """P(M = k) is the length of the τ-interval mapping to k: M >= k iff τ >= (2/π) acos(1 - k/N)."""
    g = torch.Generator().manual_seed(123)
    draws = 3000
    counts = torch.tensor([int(sample_visible_mask(1, N, "cosine", generator=g).sum()) for _ in range(draws)])
    edge = [2 / math.pi * math.acos(1 - k / N) for k in range(N)] + [1.0]
    probs = torch.tensor([edge[k + 1] - edge[k] for k in range(N)])
    hist = torch.bincount(counts, minlength=N).double() / draws
    assert abs(probs[0].item() - 0.1227) < 1e-3  # the ~12% all-masked batches of the original
    assert (hist - probs).abs().max() < 0.025
    assert abs((1 - counts.double() / N).mean().item() - 0.645) < 0.02  # mean masked fraction


def test_cosine_full_masks_half_the_batches_fully() -> None:
    g = torch.Generator().manual_seed(7)
    counts = torch.tensor([int(sample_visible_mask(1, N, "cosine_full", generator=g).sum()) for _ in range(2000)])
    # all-masked: the full half plus the cosine half's own 12 % all-masked share
    assert abs((counts == 0).double().mean().item() - (0.5 + 0.5 * 0.1227)) < 0.03
    assert counts.max() == N - 1


def test_mask_reproducible_with_seed() -> None:
    a = sample_visible_mask(4, N, generator=torch.Generator().manual_seed(5))
    b = sample_visible_mask(4, N, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_reveal_schedule_paper_values() -> None:
    assert tokens_revealed_by_step(54, 5) == [2, 10, 22, 37, 54]  # paper n_t, n_T = N (code: ..., 53)
    assert tokens_revealed_by_step(54, 1) == [54]
    assert tokens_revealed_by_step(54, 2) == [15, 54]
    assert tokens_revealed_by_step(54, 20)[0] == 1  # paper: the first step reveals one token


@pytest.mark.parametrize("n", [1, 3, 20, 54, 100])
@pytest.mark.parametrize("steps", [1, 2, 5, 8, 20, 54])
def test_reveal_schedule_properties(n: int, steps: int) -> None:
    counts = tokens_revealed_by_step(n, steps)
    assert len(counts) == steps and counts[-1] == n
    diffs = [b - a for a, b in zip([0, *counts[:-1]], counts, strict=True)]
    if n >= steps:
        assert min(diffs) >= 1  # every step reveals something
    else:
        assert min(diffs) >= 0
    for t, c in enumerate(counts[:-1], start=1):  # never behind the formula unless forced by the end
        formula = math.floor(n * (1 - math.cos(math.pi * t / (2 * steps))) + 1e-9)
        assert c >= min(formula, n - (steps - t)) or n < steps


def test_reveal_schedule_exact_integer_not_lost_to_roundoff() -> None:
    # t/T = 2/3: 1 - cos(π/3) is 0.4999999999999999 in floats; N = 54 must still give 27.
    assert tokens_revealed_by_step(54, 3)[1] == 27
