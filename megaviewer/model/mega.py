"""MEGA: masked generative encoder-decoder over mesh tokens (paper Sec. 3.2; docs/original-implementation.md §4).

Encoder: token embedding + learned position embedding of the VISIBLE tokens only, a learned cls token in
front (no position embedding), pre-LN blocks, final LayerNorm. Samples in one batch may have different
numbers of visible tokens: they are gathered to the front (ascending position), padded to the largest
count and the padding is excluded from attention with a key-padding mask.

Decoder: the encoder outputs are put back at their positions (MAE "unshuffle"), masked slots get the
learned mask token, a learned position embedding over [cls, N slots] is added, conditioning tokens are
prepended, full bidirectional attention, NO final norm (as the original), Linear(D -> S) logits for the N
mesh slots (cond and cls outputs dropped).

All-masked input (deterministic inference, first generation step): the encoder then sees only the cls
token, so its output is a constant of the weights. ``encoder_constant`` computes it once and caches it,
keyed on the parameters' version counters (so optimiser steps / in-place edits invalidate it too) and
explicitly dropped in ``train()``, ``load_state_dict`` and device/dtype moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from megaviewer.model.conditioning import CondEncoding, ConditioningStack
from megaviewer.model.config import KIND, MegaConfig, get_preset
from megaviewer.model.heads import RotCamHead
from megaviewer.model.transformer import LN_EPS, Block, key_padding_to_attn_mask, trunc_normal_
from megaviewer.param_cache import parameters_key

CondInput = Mapping[str, torch.Tensor] | CondEncoding | None


@dataclass
class MegaOutput:
    logits: torch.Tensor  # (B, N, S)
    rot6d: torch.Tensor | None  # (B, 6)
    cam: torch.Tensor | None  # (B, 3) = [s, tx, ty]
    lifted: torch.Tensor | None = None  # (B, K, 3) camera-frame joints from the keypoint read-out, when built


class Mega(nn.Module):
    def __init__(self, config: MegaConfig):
        super().__init__()
        self.config = config
        n, s, d = config.seq_len, config.vocab, config.dim

        def blocks(depth: int) -> nn.ModuleList:
            return nn.ModuleList(Block(d, config.heads, config.mlp_ratio, config.qkv_bias)
                                 for _ in range(depth))

        self.token_emb = nn.Embedding(s, d)  # PyTorch default init N(0, 1), as the original
        self.enc_pos = nn.Parameter(torch.zeros(1, n, d))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.encoder = blocks(config.enc_depth)
        self.enc_norm = nn.LayerNorm(d, eps=LN_EPS)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dec_pos = nn.Parameter(torch.zeros(1, n + 1, d))
        self.decoder = blocks(config.dec_depth)
        self.head = nn.Linear(d, s)
        for p in (self.enc_pos, self.cls_token, self.mask_token, self.dec_pos):
            trunc_normal_(p, std=0.02)
        self.conditioning: ConditioningStack | None = None
        self.rotcam: RotCamHead | None = None
        if config.conditioning.kinds:
            self.conditioning = ConditioningStack(config.conditioning, d)
            self.rotcam = RotCamHead(self.conditioning.pooled_dim, d, config.head_dropout)
        self._encoder_cache: tuple[tuple, torch.Tensor] | None = None

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Mega:
        return cls(get_preset(name, **overrides))

    # ------------------------------------------------------------------ cache management
    def invalidate_cache(self) -> None:
        self._encoder_cache = None

    def train(self, mode: bool = True) -> Mega:
        self.invalidate_cache()
        return super().train(mode)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        self.invalidate_cache()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .half() ...
        self.invalidate_cache()
        return super()._apply(fn, recurse)

    def _encoder_params(self) -> list[torch.Tensor]:
        return [self.cls_token, *self.encoder.parameters(), *self.enc_norm.parameters()]

    def encoder_constant(self) -> torch.Tensor:
        """Encoder output (1, 1, D) for an all-masked input (the lone cls token); cached, no grad."""
        params = self._encoder_params()
        key = parameters_key(params)
        if self._encoder_cache is not None and self._encoder_cache[0] == key:
            return self._encoder_cache[1]
        with torch.inference_mode(False), torch.no_grad():  # a normal tensor, usable outside inference mode
            value = self._run_encoder(self.cls_token, None)
        self._encoder_cache = (key, value)
        return value

    # ------------------------------------------------------------------ encoder / decoder
    def _run_encoder(self, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        mask = key_padding_to_attn_mask(pad)
        for blk in self.encoder:
            x = blk(x, mask)
        return self.enc_norm(x)

    def _check_inputs(self, tokens: torch.Tensor, visible: torch.Tensor) -> None:
        n = self.config.seq_len
        if tokens.ndim != 2 or tokens.shape[1] != n or visible.shape != tokens.shape:
            raise ValueError(f"tokens and visible must both be (B, {n}); got {tuple(tokens.shape)} and "
                             f"{tuple(visible.shape)}")
        if visible.dtype != torch.bool:
            raise TypeError("visible must be a bool tensor")

    def encode(self, tokens: torch.Tensor, visible: torch.Tensor, use_cache: bool = True) -> torch.Tensor:
        """Encode the visible tokens: (B, N) long + (B, N) bool -> (B, 1 + Mmax, D), cls first.

        Row b holds cls then sample b's visible tokens in ascending position order, then padding (garbage
        rows that the decoder never reads). Values of ``tokens`` at masked positions are ignored.
        """
        self._check_inputs(tokens, visible)
        b = tokens.shape[0]
        counts = visible.sum(dim=1)
        m = int(counts.max()) if b else 0
        if m == 0:
            if use_cache and not torch.is_grad_enabled():
                return self.encoder_constant().expand(b, -1, -1)
            return self._run_encoder(self.cls_token.expand(b, -1, -1), None)
        order = torch.argsort((~visible).to(torch.uint8), dim=1, stable=True)[:, :m]
        tok = tokens.masked_fill(~visible, 0).gather(1, order)
        x = self.token_emb(tok) + self.enc_pos[0][order]
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        slot = torch.arange(m, device=tokens.device)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=tokens.device),
                         slot[None, :] >= counts[:, None]], dim=1)
        return self._run_encoder(x, pad)

    def decode(self, encoded: torch.Tensor, visible: torch.Tensor,
               cond_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder over [cond tokens, cls, N slots] -> logits (B, N, S) for the N mesh slots."""
        return self.head(self.decode_hidden(encoded, visible, cond_tokens))

    def decode_hidden(self, encoded: torch.Tensor, visible: torch.Tensor,
                      cond_tokens: torch.Tensor | None = None, slots: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder features (B, N, D) of the N mesh slots, before the token head.

        The last block computes only the N mesh rows (its cond and cls outputs are dropped anyway). With
        ``slots`` (B, m) long, slot indices in 0..N-1, it computes and returns only those slots' rows
        (B, m, D): generation needs just the still-masked slots.
        """
        b, n = visible.shape
        d = self.config.dim
        m = encoded.shape[1] - 1
        mesh_rows = self.mask_token.expand(b, n, d)
        if m > 0:
            rank = (visible.cumsum(dim=1) - 1).clamp(0, m - 1)
            from_encoder = encoded[:, 1:].gather(1, rank[..., None].expand(-1, -1, d))
            mesh_rows = torch.where(visible[..., None], from_encoder, mesh_rows)
        elif bool(visible.any()):
            raise ValueError("encoded holds no visible tokens but visible marks some")
        x = torch.cat([encoded[:, :1], mesh_rows], dim=1) + self.dec_pos
        if cond_tokens is not None:
            if cond_tokens.shape[0] != b:
                raise ValueError(f"cond tokens batch {cond_tokens.shape[0]} != mesh batch {b}")
            x = torch.cat([cond_tokens.to(x.dtype), x], dim=1)
        for blk in self.decoder[:-1]:
            x = blk(x)
        keep: int | torch.Tensor = n if slots is None else slots + (x.shape[1] - n)
        return self.decoder[-1](x, keep=keep)

    # ------------------------------------------------------------------ conditioning and heads
    def encode_conditioning(self, cond: Mapping[str, torch.Tensor]) -> CondEncoding:
        """Run the conditioners once; reuse the result for every step and (via ``repeat``) every sample."""
        if self.conditioning is None:
            raise ValueError("this model has no conditioners; use CondEncoding.empty(batch)")
        return self.conditioning(cond)

    def as_encoding(self, cond: CondInput, batch: int) -> CondEncoding:
        """Normalise ``cond`` (raw inputs, an encoding or None) to a ``CondEncoding`` of ``batch`` items."""
        if cond is None:
            if self.conditioning is not None:
                raise ValueError(f"model expects conditioning {list(self.conditioning.kinds)}; pass it, or "
                                 "CondEncoding.empty(batch) to run it unconditionally on purpose")
            return CondEncoding.empty(batch)
        enc = cond if isinstance(cond, CondEncoding) else self.encode_conditioning(cond)
        if enc.batch != batch:
            raise ValueError(f"conditioning batch {enc.batch} != mesh batch {batch}")
        return enc

    def predict_rotcam(self, pooled: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Pooled conditioning features -> (rot6d (B, 6), cam (B, 3)); (None, None) when unconditioned."""
        if pooled is None or self.rotcam is None:
            return None, None
        return self.rotcam(pooled)

    def token_logits(self, tokens: torch.Tensor, visible: torch.Tensor, cond: CondEncoding,
                     use_cache: bool = True) -> torch.Tensor:
        """Logits (B, N, S) given already-encoded conditioning (the generation inner loop)."""
        return self.decode(self.encode(tokens, visible, use_cache), visible, cond.tokens)

    def token_features(self, tokens: torch.Tensor, visible: torch.Tensor, cond: CondEncoding,
                       use_cache: bool = True, slots: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder features (B, N, D) before the head: ``head`` of these = :meth:`token_logits`; with
        ``slots`` (B, m) only those slots' features (B, m, D) (see :meth:`decode_hidden`)."""
        return self.decode_hidden(self.encode(tokens, visible, use_cache), visible, cond.tokens, slots)

    def forward(self, tokens: torch.Tensor, visible: torch.Tensor, cond: CondInput = None,
                use_cache: bool = True) -> MegaOutput:
        enc = self.as_encoding(cond, tokens.shape[0])
        logits = self.token_logits(tokens, visible, enc, use_cache)
        rot6d, cam = self.predict_rotcam(enc.pooled)
        return MegaOutput(logits, rot6d, cam, self.lift_joints(enc.pooled))

    def lift_joints(self, pooled: torch.Tensor | None) -> torch.Tensor | None:
        """The keypoint conditioner's 3D joint read-out (B, K, 3), or None when it has none."""
        kp = self.conditioning.conditioners["keypoints"] if self.conditioning is not None and \
            "keypoints" in self.conditioning.kinds else None
        head = getattr(kp, "lift_head", None)
        if head is None or pooled is None:
            return None
        start = 0
        for kind, conditioner in self.conditioning.conditioners.items():  # pooled features in kind order
            if kind == "keypoints":
                break
            start += int(conditioner.pooled_dim)
        return head(pooled[:, start:start + kp.pooled_dim]).view(pooled.shape[0], -1, 3)

    # ------------------------------------------------------------------ bookkeeping
    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part; ``encoder`` + ``decoder`` is the pretraining model
        (docs/original-implementation.md §9)."""
        def count(*parts: nn.Module | torch.Tensor) -> int:
            tensors = [p if isinstance(p, torch.Tensor) else None for p in parts]
            modules = [p for p in parts if isinstance(p, nn.Module)]
            return (sum(t.numel() for t in tensors if t is not None)
                    + sum(q.numel() for m in modules for q in m.parameters()))

        return {
            "encoder": count(self.token_emb, self.enc_pos, self.cls_token, self.encoder, self.enc_norm),
            "decoder": count(self.mask_token, self.dec_pos, self.decoder, self.head),
            "conditioning": count(self.conditioning) if self.conditioning is not None else 0,
            "rotcam": count(self.rotcam) if self.rotcam is not None else 0,
        }


def save_mega(folder: str | Path, model: Mega) -> Path:
    """Checkpoint folder: ``config.json`` (MegaConfig) + ``model.safetensors``."""
    from megaviewer.io.checkpoint import save_checkpoint

    return save_checkpoint(folder, model, model.config.to_dict())


def load_mega(folder: str | Path, map_location: str | torch.device = "cpu") -> Mega:
    """Build the model from the folder's config and load its weights with name/shape checks."""
    from megaviewer.io.checkpoint import CheckpointError, load_checkpoint_tensors, load_config, load_state_into

    raw = load_config(folder, expected_kind=KIND)
    try:
        config = MegaConfig.from_dict(raw)
        # The checkpoint holds the backbone weights; do not require the original backbone file to exist.
        config.conditioning = replace(config.conditioning, backbone_weights=None)
        model = Mega(config)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # e.g. {"dim": "big"} in a hand-edited file
        raise CheckpointError(f"{Path(folder) / 'config.json'} does not describe a valid MEGA model: {exc}") from None
    tensors = {k: v.to(map_location) for k, v in load_checkpoint_tensors(folder).items()}
    load_state_into(model.to(map_location), tensors, folder, strict=True)
    model.invalidate_cache()
    return model.eval()
