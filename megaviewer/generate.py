"""Generation: deterministic (one pass), stochastic (MaskGIT/MUSE-style) and unconditional sampling.

Deterministic (paper Sec. 3.4): all N tokens masked, one decoder pass, argmax. The encoder only sees the
cls token, so its (cached) constant output is used.

Iterative (paper Sec. 3.4 and the original's ``CVQMAE.generate`` in ``mega/model/cvqmae/masked_autoencoder.py``,
with the paper's schedule): start all-masked; at step t = 1..T with temperature temp_t
1. logits for the still-masked positions given the currently visible tokens (visible positions keep their
   token, so the decoder's last block and the token head run only on the masked slots);
2. candidate = a sample of softmax(logits/temp_t) -- the original's argmax(logits + temp_t G), G ~ Gumbel,
   has exactly this distribution; we draw it by inverse CDF from ONE uniform per position instead of one
   Gumbel per codebook entry (512 times fewer random numbers and no logarithms, a tenth of a Q=16 call on a
   CPU); temperature 0 is the argmax; score = RAW logit of the chosen index (as the original); visible
   positions keep their token, score +inf;
3. confidence = score + temp_t G' (fresh Gumbel); the n_t most confident positions are visible after the
   step, n_t from ``masking.tokens_revealed_by_step`` -- strictly increasing, n_T = N, so every token is
   sampled (the original forced the last one to index 0).
Everything is vectorised over the batch; the only Python loop is over steps. Step 1 sees all rows
all-masked, so the Q samples of an item share one model pass, one token head and one sampling CDF there
(``generate_iterative``'s ``repeats``); only their uniforms differ.

Noise comes only from the ``generator`` argument: a single ``torch.Generator`` draws the whole batch's
noise at once; a sequence of generators (one per output row) draws each row's noise from its own
generator, in the same order a batch-of-one call would, so a batched call reproduces per-sample calls
exactly (up to the model's float round-off between batch sizes). ``None`` uses a freshly seeded generator.

Output rows are item-major: row = item * Q + q for Q samples per conditioning item. Rotation and camera are
predicted once per item from the conditioning alone (the original's ``rotcam_head``), so they are
deterministic and repeated for the item's Q samples.

Expected codes (an addition to the paper, on by default in the engine; ``codebook=``): where the generation
takes an argmax -- the deterministic pass, and the last step of the conditioned schedule, whose temperature
A (1 - T/T) is 0 -- the result also carries, per token, the code vector averaged under the model's
predicted distribution, softmax(logits) @ codebook, instead of the single most likely code (the committed
tokens of earlier steps keep their own code). Decoding that mean latent gives the body the distribution
points at on average, where the argmax commits to one code of several plausible ones: on the synthetic
benchmark it lowers the deterministic mode's PA-MPJPE by about 6 mm at no cost (docs/expected-codes.md).
The token ids are unchanged (the argmax), so traces, token views and exports of ids are the paper's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from megaviewer.masking import tokens_revealed_by_step
from megaviewer.model.conditioning import CondEncoding
from megaviewer.model.mega import Mega

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None
TemperatureFn = Callable[[int, int], float]  # (step t in 1..T, T) -> temperature


@dataclass
class Trace:
    """Per-step state of a generation (T steps, B rows, N tokens).

    ``tokens[t]`` holds the committed tokens at visible positions and that step's sampled candidate at the
    still-masked ones, so a viewer can draw a complete mesh at every step; ``torch.where(visible[t],
    tokens[t], 0)`` gives the paper's Fig. 3 view (masked shown as codebook entry 0).
    """

    tokens: torch.Tensor  # (T, B, N) long
    visible: torch.Tensor  # (T, B, N) bool, visible after step t
    revealed: torch.Tensor  # (T, B, N) bool, newly visible at step t
    temperatures: tuple[float, ...]


@dataclass
class GenerationResult:
    tokens: torch.Tensor  # (B, N) long, complete
    rot6d: torch.Tensor | None  # (B, 6)
    cam: torch.Tensor | None  # (B, 3) = [s, tx, ty]
    trace: Trace | None = None
    num_samples: int = 1  # Q samples per conditioning item; rows are item-major
    # (B, N, D) the expected code vectors where the generation took an argmax and the committed codes elsewhere
    # (module docstring); None unless a codebook was given.
    latents: torch.Tensor | None = None

    def decode(self, tokenizer) -> torch.Tensor:
        """Canonical meshes (B, V, 3) of ``tokenizer`` (a :class:`~megaviewer.tokenizer.model.MeshVQVAE`): from
        the expected codes when the result has them, else from the token ids."""
        if self.latents is None:
            return tokenizer.decode(self.tokens)
        return tokenizer.decode_latents(self.latents.to(next(tokenizer.decoder.parameters()).dtype))


def expected_codes(logits: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(..., S) logits -> (..., D) the code vector averaged under softmax(logits) (module docstring). A row whose
    logits are not all finite (absurd inputs overflow the network) takes its argmax code, as without expected
    codes, instead of a NaN average."""
    probs = torch.softmax(logits.float(), dim=-1)
    broken = ~torch.isfinite(probs).all(dim=-1, keepdim=True)
    if bool(broken.any()):
        argmax = torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(probs.dtype)
        probs = torch.where(broken, argmax, probs)
    return probs @ codebook.float()


class _Noise:
    """Gumbel(0, 1) draws from the caller's generator(s), returned on ``device`` in float32."""

    def __init__(self, generator: GeneratorArg, rows: int, device: torch.device):
        if generator is None:
            generator = torch.Generator()
            generator.seed()
        if isinstance(generator, torch.Generator):
            self.shared: torch.Generator | None = generator
            self.per_row: list[torch.Generator] = []
        else:
            self.shared = None
            self.per_row = list(generator)
            if len(self.per_row) != rows:
                raise ValueError(f"got {len(self.per_row)} generators for {rows} output rows")
        self.rows, self.device = rows, device

    def uniform(self, *shape: int) -> torch.Tensor:
        """U(0, 1) of shape (rows, *shape), on ``device``."""
        if self.shared is not None:
            u = torch.rand((self.rows, *shape), generator=self.shared, device=self.shared.device)
        else:
            u = torch.stack([torch.rand(shape, generator=g, device=g.device).to(self.device)
                             for g in self.per_row])
        return u.to(self.device)

    def gumbel(self, *shape: int, scale: float = 1.0) -> torch.Tensor | None:
        """``scale`` * Gumbel(0, 1) of shape (rows, *shape), or None when ``scale`` is 0.

        The uniforms are always drawn, so every generator advances exactly as it would for any other
        scale (a later step, or the caller's next use of the generator, sees the same stream); with scale
        0 the noise cannot change an argmax, so the logarithms are skipped. The transform runs in place on
        the fresh uniforms: same values as ``scale * -log(-log(u))``, bit for bit.
        """
        u = self.uniform(*shape)
        if scale == 0:
            return None
        u = u.clamp_(min=torch.finfo(torch.float32).tiny)
        return u.log_().neg_().log_().neg_().mul_(scale)


@contextlib.contextmanager
def _eval_mode(model: Mega) -> Iterator[None]:
    """Generation needs eval mode (the rot/cam head has dropout); restore the caller's mode afterwards."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _as_encoding(model: Mega, cond: CondEncoding | Mapping[str, torch.Tensor]) -> CondEncoding:
    return cond if isinstance(cond, CondEncoding) else model.encode_conditioning(cond)


def _device(model: Mega) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def deterministic(model: Mega, cond: CondEncoding | Mapping[str, torch.Tensor],
                  return_trace: bool = False, codebook: torch.Tensor | None = None) -> GenerationResult:
    """One decoder pass on N mask tokens (cached encoder constant), argmax per position; with ``codebook``
    (K, D) also every position's expected code (module docstring)."""
    with _eval_mode(model):
        enc = _as_encoding(model, cond)
        b, n, dev = enc.batch, model.config.seq_len, _device(model)
        tokens = torch.zeros(b, n, dtype=torch.long, device=dev)
        visible = torch.zeros(b, n, dtype=torch.bool, device=dev)
        logits = model.token_logits(tokens, visible, enc)
        out = logits.argmax(dim=-1)
        latents = expected_codes(logits, codebook) if codebook is not None else None
        rot6d, cam = model.predict_rotcam(enc.pooled)
    trace = None
    if return_trace:
        full = torch.ones(1, b, n, dtype=torch.bool, device=dev)
        trace = Trace(out[None].clone(), full, full.clone(), (0.0,))
    return GenerationResult(out, rot6d, cam, trace, 1, latents)


@torch.inference_mode()
def generate_iterative(model: Mega, cond: CondEncoding, steps: int, temperature_fn: TemperatureFn,
                       generator: GeneratorArg = None, return_trace: bool = False,
                       repeats: int = 1, codebook: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, Trace | None, torch.Tensor | None]:
    """The iterative sampler: ``repeats`` output rows per item of ``cond`` (item-major).

    Returns (tokens (B, N) with B = cond.batch * repeats, the Trace or ``None`` without ``return_trace``,
    and with ``codebook`` (K, D) the latents (B, N, D): the committed codes, and the expected codes of the
    positions the last step fills (module docstring); else ``None``).

    Why ``repeats`` instead of a pre-expanded ``cond``: every row starts all-masked, so at step 1 the
    ``repeats`` rows of one item have identical inputs and identical logits (only their noise differs).
    Step 1 therefore runs the model once per item and shares the logits; the conditioning is expanded
    only for steps 2..T. For Q=16, T=5 that is a fifth of the decoder work saved; for an unconditional
    batch (one item, Q rows) the first step costs a single row. An already-expanded ``cond`` with
    ``repeats=1`` gives the same distribution but does not share step 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    with _eval_mode(model):
        b, n, dev = cond.batch * repeats, model.config.seq_len, _device(model)
        noise = _Noise(generator, b, dev)
        schedule = tokens_revealed_by_step(n, steps)
        tokens = torch.zeros(b, n, dtype=torch.long, device=dev)
        visible = torch.zeros(b, n, dtype=torch.bool, device=dev)
        rows = cond.repeat(repeats) if repeats > 1 and steps > 1 else cond
        temps: list[float] = []
        latents: torch.Tensor | None = None
        rec_tokens, rec_visible, rec_revealed = [], [], []
        for t in range(1, steps + 1):
            temp = float(temperature_fn(t, steps))
            temps.append(temp)
            masked = ~visible
            uniform = noise.uniform(n)  # one per position, drawn for every position: streams stay aligned
            if t == 1 and repeats > 1:
                picked, chosen, logits = _sample_shared_first_step(model, cond, repeats, temp, uniform)
            else:
                # Every row has the same number of masked slots (the schedule is shared), so the last decoder
                # block and the head run on exactly those slots, in row-major order like ``masked``.
                slots = masked.nonzero()[:, 1].view(b, -1)
                features = model.token_features(tokens, visible, rows, slots=slots)
                logits = model.head(features.reshape(-1, features.shape[-1])).float()  # (masked positions, S)
                picked = sample_categorical(logits, temp, uniform[masked])
                chosen = logits.gather(-1, picked[:, None])[:, 0]
            candidate = tokens.masked_scatter(masked, picked)
            if t == steps and codebook is not None:
                latents = _last_step_latents(logits, candidate, masked, codebook, repeats if t == 1 else 1)
            score = torch.full((b, n), float("inf"), device=dev)
            score = score.masked_scatter(masked, chosen)
            noisy = noise.gumbel(n, scale=temp)
            confidence = score if noisy is None else noisy.add_(score)
            order = confidence.argsort(dim=1, descending=True, stable=True)
            new_visible = torch.zeros_like(visible).scatter_(1, order[:, : schedule[t - 1]], True)
            if return_trace:
                rec_tokens.append(candidate)
                rec_visible.append(new_visible)
                rec_revealed.append(new_visible & ~visible)
            tokens = candidate.masked_fill(~new_visible, 0)
            visible = new_visible
    if not return_trace:
        return tokens, None, latents
    trace = Trace(torch.stack(rec_tokens), torch.stack(rec_visible), torch.stack(rec_revealed), tuple(temps))
    return tokens, trace, latents


def _last_step_latents(logits: torch.Tensor, tokens: torch.Tensor, masked: torch.Tensor, codebook: torch.Tensor,
                       repeats: int) -> torch.Tensor:
    """(B, N, D): the codes of ``tokens`` where they were visible before the last step, the expected codes where
    it fills them (``logits`` of the masked positions in row-major order; with ``repeats`` > 1, one row of
    logits per item and slot, shared by its repeats: a one-step generation)."""
    latents = codebook.float()[tokens]
    expected = expected_codes(logits, codebook)
    if repeats > 1:
        expected = expected.view(-1, 1, tokens.shape[1], expected.shape[-1]).expand(-1, repeats, -1, -1)
    return latents.masked_scatter(masked[..., None], expected.reshape(-1, expected.shape[-1]))


def _sample_shared_first_step(model: Mega, cond: CondEncoding, repeats: int, temperature: float,
                              uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 1 of ``repeats`` all-masked rows per item: (picked tokens, their raw logits), both flat in the
    row-major order of the (B, N) masked positions, B = items * repeats, and the shared logits (items * N, S).

    All rows of an item see the same input, so the model, the token head and the softmax CDF run once per
    item (items x N rows instead of B x N); each row then draws its own index from that CDF with its own
    uniforms (``uniform``, (B, N)), exactly as it would from a copy of the CDF.
    """
    items, n = cond.batch, model.config.seq_len
    first = torch.zeros(items, n, dtype=torch.bool, device=uniform.device)
    features = model.token_features(first.long(), first, cond)
    logits = model.head(features.reshape(items * n, -1)).float()  # (items * N, S)
    per_slot = uniform.view(items, repeats, n).transpose(1, 2).reshape(items * n, repeats)
    picked = sample_categorical(logits, temperature, per_slot)  # (items * N, repeats)
    chosen = logits.gather(-1, picked)

    def row_major(x: torch.Tensor) -> torch.Tensor:  # (items * N, repeats) -> flat (item, repeat, slot)
        return x.view(items, n, repeats).transpose(1, 2).reshape(-1)

    return row_major(picked), row_major(chosen), logits


def sample_categorical(logits: torch.Tensor, temperature: float, uniform: torch.Tensor) -> torch.Tensor:
    """Indices from softmax(logits / temperature) for the rows of ``logits`` (K, S), by inverse CDF with the
    given uniforms: (K,) gives one index per row, (K, M) gives M independent indices per row from the same
    CDF (computed once). Temperature 0 is the argmax. Same distribution as the Gumbel-max trick."""
    draws = uniform if uniform.ndim == 2 else uniform[:, None]
    if temperature <= 0:
        picked = logits.argmax(dim=-1, keepdim=True).expand(-1, draws.shape[1])
    else:
        cdf = torch.softmax(logits / temperature, dim=-1).cumsum_(dim=-1)
        # scaled by the total (round-off safe); contiguous, as searchsorted wants (the total is a strided column)
        target = (draws.to(cdf.dtype) * cdf[:, -1:]).contiguous()
        picked = torch.searchsorted(cdf, target, right=True).clamp_(max=logits.shape[-1] - 1)
    return picked if uniform.ndim == 2 else picked[:, 0]


def _repeat(x: torch.Tensor | None, q: int) -> torch.Tensor | None:
    return None if x is None or q == 1 else x.repeat_interleave(q, dim=0)


@torch.inference_mode()
def stochastic(model: Mega, cond: CondEncoding | Mapping[str, torch.Tensor], num_samples: int = 1,
               steps: int = 5, temperature: float = 1.0, generator: GeneratorArg = None,
               return_trace: bool = False, codebook: torch.Tensor | None = None) -> GenerationResult:
    """Q = ``num_samples`` samples per conditioning item in one batch; temperature A (1 - t/T); with ``codebook``
    (K, D) the expected codes of the positions the last (temperature 0) step fills (module docstring).

    Conditioning is encoded once and repeated (not recomputed) for the Q samples. Paper settings: HRNet
    T=5, A=1; ResNet T=2, A=10.
    """
    if num_samples < 1 or steps < 1 or temperature < 0:
        raise ValueError("need num_samples >= 1, steps >= 1 and temperature >= 0")
    with _eval_mode(model):
        enc = _as_encoding(model, cond)
        rot6d, cam = model.predict_rotcam(enc.pooled)
    tokens, trace, latents = generate_iterative(model, enc, steps, lambda t, T: temperature * (1.0 - t / T),
                                                generator, return_trace, repeats=num_samples, codebook=codebook)
    rot6d = rot6d if num_samples == 1 else _repeat(rot6d, num_samples)
    cam = cam if num_samples == 1 else _repeat(cam, num_samples)
    return GenerationResult(tokens, rot6d, cam, trace, num_samples, latents)


@torch.inference_mode()
def unconditional(model: Mega, num_samples: int, steps: int = 20, temperature: float = 1.2,
                  generator: GeneratorArg = None, return_trace: bool = False) -> GenerationResult:
    """Random meshes from a (pretrained) model without conditioning; temperature (A (1 - t/T))^6 (paper).

    The original's ``VQMAE.generate`` (``mega/model/vqmae/masked_autoencoder.py``) uses A^5 (1 - t/T)^6; we
    follow the paper. On a conditioned model this runs it without conditioning tokens, which it was not
    trained for.
    """
    if num_samples < 1 or steps < 1 or temperature < 0:
        raise ValueError("need num_samples >= 1, steps >= 1 and temperature >= 0")
    tokens, trace, _ = generate_iterative(model, CondEncoding.empty(1), steps,
                                          lambda t, T: (temperature * (1.0 - t / T)) ** 6, generator, return_trace,
                                          repeats=num_samples)
    return GenerationResult(tokens, None, None, trace, num_samples)
