"""Generation: deterministic, stochastic (MaskGIT-style, paper schedule) and unconditional."""

from __future__ import annotations

import pytest
import torch

from megaviewer import generate
from megaviewer.masking import tokens_revealed_by_step
from megaviewer.model import CondEncoding, Mega
from tests._engines import random_keypoints

N, S = 54, 512


_keypoints = random_keypoints


@pytest.fixture(scope="module")
def model() -> Mega:
    torch.manual_seed(0)
    return Mega.from_preset("test_tiny").eval()


@pytest.fixture(scope="module")
def cond(model: Mega) -> CondEncoding:
    with torch.inference_mode():
        return model.encode_conditioning({"keypoints": _keypoints(2)})


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_deterministic_is_argmax_of_all_masked_forward(model: Mega, cond: CondEncoding) -> None:
    result = generate.deterministic(model, cond, return_trace=True)
    with torch.no_grad():
        out = model(torch.zeros(2, N, dtype=torch.long), torch.zeros(2, N, dtype=torch.bool),
                    {"keypoints": _keypoints(2)}, use_cache=False)
    assert torch.equal(result.tokens, out.logits.argmax(-1))
    torch.testing.assert_close(result.rot6d, out.rot6d)
    torch.testing.assert_close(result.cam, out.cam)
    assert result.trace.tokens.shape == (1, 2, N) and result.trace.visible.all()
    # raw inputs are accepted too (encoded once inside)
    assert torch.equal(generate.deterministic(model, {"keypoints": _keypoints(2)}).tokens, result.tokens)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_stochastic_trace_consistency(model: Mega, cond: CondEncoding, steps: int) -> None:
    q = 3
    result = generate.stochastic(model, cond, num_samples=q, steps=steps, temperature=1.0,
                                 generator=_gen(0), return_trace=True)
    trace = result.trace
    b = 2 * q
    assert result.tokens.shape == (b, N) and result.num_samples == q
    assert trace.tokens.shape == (steps, b, N) and trace.visible.shape == (steps, b, N)
    schedule = tokens_revealed_by_step(N, steps)
    assert trace.visible.sum(-1).tolist() == [[c] * b for c in schedule]
    prev_vis = torch.zeros(b, N, dtype=torch.bool)
    prev_tok = torch.zeros(b, N, dtype=torch.long)
    for t in range(steps):
        vis, tok = trace.visible[t], trace.tokens[t]
        assert torch.equal(trace.revealed[t], vis & ~prev_vis)
        assert not (prev_vis & ~vis).any()  # once visible, always visible
        assert torch.equal(tok[prev_vis], prev_tok[prev_vis])  # ... with the same token
        prev_vis, prev_tok = vis, tok
    assert trace.visible[-1].all() and torch.equal(trace.tokens[-1], result.tokens)
    assert int(result.tokens.min()) >= 0 and int(result.tokens.max()) < S
    expected_temps = tuple(1.0 * (1 - t / steps) for t in range(1, steps + 1))
    assert trace.temperatures == pytest.approx(expected_temps)
    # rotation / camera: deterministic per item, repeated for its Q samples
    assert torch.equal(result.rot6d[:q], result.rot6d[:1].expand(q, 6))
    assert not torch.equal(result.rot6d[0], result.rot6d[q])


def test_seeds_reproduce(model: Mega, cond: CondEncoding) -> None:
    def run(seed: int) -> torch.Tensor:
        return generate.stochastic(model, cond, num_samples=4, steps=5, temperature=3.0,
                                   generator=_gen(seed)).tokens

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_batched_samples_equal_sequential_calls(model: Mega, cond: CondEncoding) -> None:
    """One generator per output row draws exactly the noise a batch-of-one call would draw."""
    one = CondEncoding(cond.tokens[:1], cond.pooled[:1], 1)
    q = 4
    batched = generate.stochastic(model, one, num_samples=q, steps=5, temperature=3.0,
                                  generator=[_gen(100 + i) for i in range(q)], return_trace=True)
    for i in range(q):
        single = generate.stochastic(model, one, num_samples=1, steps=5, temperature=3.0,
                                     generator=_gen(100 + i), return_trace=True)
        assert torch.equal(batched.tokens[i], single.tokens[0])
        assert torch.equal(batched.trace.visible[:, i], single.trace.visible[:, 0])
    assert len({tuple(t.tolist()) for t in batched.tokens}) > 1  # samples differ
    with pytest.raises(ValueError, match="generators"):
        generate.stochastic(model, one, num_samples=q, generator=[_gen(0)])


def test_single_step_equals_deterministic(model: Mega, cond: CondEncoding) -> None:
    """T = 1: temperature A(1 - 1/1) = 0 and all N tokens are revealed -> the argmax."""
    det = generate.deterministic(model, cond).tokens
    sto = generate.stochastic(model, cond, steps=1, temperature=5.0, generator=_gen(0)).tokens
    assert torch.equal(det, sto)


def test_generation_restores_training_mode(cond: CondEncoding) -> None:
    torch.manual_seed(0)
    m = Mega.from_preset("test_tiny").train()
    a = generate.stochastic(m, cond, num_samples=2, generator=_gen(3))
    assert m.training
    b = generate.stochastic(m.eval(), cond, num_samples=2, generator=_gen(3))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.cam, b.cam)


def test_unconditional(model: Mega) -> None:
    torch.manual_seed(0)
    pretrain = Mega.from_preset("test_tiny", conditioning={}).eval()
    result = generate.unconditional(pretrain, num_samples=3, steps=20, temperature=1.2,
                                    generator=_gen(0), return_trace=True)
    assert result.tokens.shape == (3, N) and result.rot6d is None and result.cam is None
    assert result.trace.visible.sum(-1)[:, 0].tolist() == tokens_revealed_by_step(N, 20)
    assert result.trace.temperatures[0] == pytest.approx((1.2 * (1 - 1 / 20)) ** 6)
    assert result.trace.temperatures[-1] == 0.0


def test_sample_categorical_follows_softmax_and_argmax_at_zero() -> None:
    """Inverse-CDF sampling from one uniform per position: frequencies match softmax(logits / temp)."""
    logits = torch.tensor([[2.0, 0.0, -1.0, 1.0, -30.0]]).expand(40_000, 5)
    u = torch.rand(40_000, generator=_gen(0))
    for temp in (0.5, 1.0, 3.0):
        picked = generate.sample_categorical(logits, temp, u)
        freq = torch.bincount(picked, minlength=5).float() / picked.numel()
        expected = torch.softmax(logits[0] / temp, dim=-1)
        assert (freq - expected).abs().max() < 0.01, (temp, freq, expected)
    assert torch.equal(generate.sample_categorical(logits[:3], 0.0, u[:3]), torch.zeros(3, dtype=torch.long))
    edge = generate.sample_categorical(logits[:2], 1.0, torch.tensor([0.0, 1.0 - 1e-7]))
    assert edge.tolist()[0] == 0 and 0 <= edge.tolist()[1] < 4  # never the ~zero-probability entry


def test_sample_categorical_many_draws_per_row_match_single_draws() -> None:
    """(K, M) uniforms: M indices per row from one shared CDF, each column as a (K,) call with its uniforms."""
    logits = torch.randn(6, 512, generator=_gen(1))
    u = torch.rand(6, 4, generator=_gen(2))
    for temp in (0.0, 0.7, 1.0):
        many = generate.sample_categorical(logits, temp, u)
        assert many.shape == (6, 4)
        for m in range(4):
            assert torch.equal(many[:, m], generate.sample_categorical(logits, temp, u[:, m].contiguous()))



@pytest.mark.parametrize("return_trace", [False, True])
def test_generate_iterative_returns_tokens_and_trace_or_none(model: Mega, cond: CondEncoding,
                                                             return_trace: bool) -> None:
    tokens, trace, _ = generate.generate_iterative(model, cond, 2, lambda t, T: 1.0, _gen(0), return_trace, repeats=2)
    assert tokens.shape == (4, N)
    assert (trace is not None) == return_trace
    if trace is not None:
        assert torch.equal(trace.tokens[-1], tokens)


def _codebook(dim: int = 9) -> torch.Tensor:
    return torch.randn(S, dim, generator=_gen(7))


def test_deterministic_expected_codes_are_the_mean_code_under_the_predicted_distribution(
        model: Mega, cond: CondEncoding) -> None:
    book = _codebook()
    plain = generate.deterministic(model, cond)
    result = generate.deterministic(model, cond, codebook=book)
    assert plain.latents is None
    assert torch.equal(result.tokens, plain.tokens)  # the ids stay the argmax
    with torch.no_grad():
        logits = model(torch.zeros(2, N, dtype=torch.long), torch.zeros(2, N, dtype=torch.bool),
                       {"keypoints": _keypoints(2)}, use_cache=False).logits
    torch.testing.assert_close(result.latents, torch.softmax(logits, -1) @ book, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(result.latents, book[result.tokens], atol=1e-3)  # not the argmax code


@pytest.mark.parametrize("steps", [2, 5])
def test_stochastic_expected_codes_fill_only_the_last_steps_positions(model: Mega, cond: CondEncoding,
                                                                      steps: int) -> None:
    book, q = _codebook(), 3
    plain = generate.stochastic(model, cond, num_samples=q, steps=steps, generator=_gen(3))
    result = generate.stochastic(model, cond, num_samples=q, steps=steps, generator=_gen(3), codebook=book,
                                 return_trace=True)
    assert torch.equal(result.tokens, plain.tokens)  # the same samples: the codebook changes no draw
    committed = result.trace.visible[-2]  # visible before the last step
    torch.testing.assert_close(result.latents[committed], book[result.tokens][committed])
    tokens_before = torch.where(committed, result.tokens, 0)
    with torch.no_grad():
        logits = model.token_logits(tokens_before, committed, cond.repeat(q))
    expected = torch.softmax(logits, -1) @ book
    torch.testing.assert_close(result.latents[~committed], expected[~committed], atol=1e-5, rtol=1e-4)


def test_one_step_stochastic_expected_codes_equal_the_deterministic_ones(model: Mega, cond: CondEncoding) -> None:
    book = _codebook()
    one = generate.stochastic(model, cond, num_samples=4, steps=1, generator=_gen(1), codebook=book)
    det = generate.deterministic(model, cond, codebook=book)
    torch.testing.assert_close(one.latents, det.latents.repeat_interleave(4, dim=0), atol=1e-5, rtol=1e-4)


def test_generation_decodes_its_expected_codes_when_it_has_them(model: Mega, cond: CondEncoding) -> None:
    class Recorder:  # a stand-in tokenizer that says which route decoded
        decoder = torch.nn.Linear(1, 1)

        def decode(self, ids: torch.Tensor) -> str:
            return "ids"

        def decode_latents(self, latents: torch.Tensor) -> str:
            return "latents"

    assert generate.deterministic(model, cond).decode(Recorder()) == "ids"
    assert generate.deterministic(model, cond, codebook=_codebook()).decode(Recorder()) == "latents"


def test_expected_codes_of_overflowing_logits_fall_back_to_the_argmax_code() -> None:
    book = _codebook()
    logits = torch.randn(3, S, generator=_gen(4))
    logits[1, 7] = float("inf")
    logits[2, :] = float("nan")
    out = generate.expected_codes(logits, book)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], torch.softmax(logits[0], -1) @ book)
    torch.testing.assert_close(out[1], book[7])
    torch.testing.assert_close(out[2], book[logits[2].argmax()])
