"""Sharpen a trained tokenizer's decoder on the hands and feet without changing a single token.

Why: the hands and feet are a few hundred of the mesh's vertices, so a plain per-vertex loss spends little on
them, and a coarse token grid errs most there (crumpled fingers and toes). Retraining the whole tokenizer with a
heavier weight on them would change every token id and with it every MEGA model trained on those ids. Here the
encoder and the codebook stay frozen (``MeshVQVAE.forward(..., frozen_codes=True)``): each mesh keeps its ids, the
pool fingerprint (hierarchy + codebook) is unchanged, and only the decoder learns to turn the same codes into
sharper extremities. Any MEGA trained on the original tokenizer decodes through the fine-tuned one as is.

The loss is the per-vertex Euclidean error with the hand and foot vertices weighted ``extremity_weight`` times
the rest, normalised to a mean weight of 1 so the learning rate keeps its meaning. Resumable and DDP-capable
through :mod:`training.loop`; the run's settings are guarded like MEGA's (:func:`check_run_config`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from megaviewer.geometry import metrics
from megaviewer.tokenizer.model import MeshVQVAE
from training.data.meshes import ChunkedMeshStream, SyntheticMeshes
from training.loop import LoopConfig, check_run_config, train
from training.tokenizer import check_body_matches, vertex_weights
from training.tokenizer_bundle import copy_topology


@dataclass
class DecoderTrainConfig:
    out_dir: str = "runs/decoder"
    init: str | None = None  # the tokenizer folder whose decoder is fine-tuned (None: the shipped one)
    steps: int = 20_000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    extremity_weight: float = 8.0  # loss weight of a hand/foot vertex relative to any other
    prior: str = "motion"
    chunk_size: int = 4096  # meshes posed per chunk (ChunkedMeshStream)
    chunk_reuse: int = 4
    ckpt_every: int = 1000
    seed: int = 0
    threads: int = 0
    stop_at: int | None = None
    progress: bool = True


class DecoderTask:
    """The :class:`training.loop.TrainTask` of the decoder fine-tune."""

    def __init__(self, model: MeshVQVAE, stream: ChunkedMeshStream, batch_size: int, weights: torch.Tensor):
        self.model = model
        self.stream = stream
        self.batch_size = batch_size
        self.weights = weights

    def config_dict(self) -> dict:
        return self.model.config.to_dict()

    def training_step(self, model: nn.Module, step: int, generator: torch.Generator):
        target = self.stream.batch(step, self.batch_size, generator)
        device = next(self.model.decoder.parameters()).device
        target = metrics.center(target.to(device))
        out = model(target, frozen_codes=True)
        error = (out.vertices - target).norm(dim=-1)
        loss = (error * self.weights.to(device)).mean()
        return loss, {"pve_mm": error.mean().item() * 1000}


def freeze_all_but_decoder(model: MeshVQVAE) -> MeshVQVAE:
    model.requires_grad_(False)
    model.decoder.requires_grad_(True)
    return model


def train_decoder(cfg: DecoderTrainConfig, data: SyntheticMeshes | None = None) -> Path:
    """Fine-tune (or resume fine-tuning) the decoder of ``cfg.init``; returns ``out_dir/final`` (a complete
    tokenizer folder, with the cached hierarchy beside it) or the ``stop_at`` checkpoint. ``data``: the meshes
    to train on (default: Anny posed from ``cfg.prior``)."""
    from megaviewer.paths import tokenizer_dir

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    init = Path(cfg.init) if cfg.init is not None else tokenizer_dir()
    model = freeze_all_but_decoder(MeshVQVAE.from_pretrained(init))
    data = data or SyntheticMeshes(prior_kind=cfg.prior)
    check_body_matches(model, data.body)
    settings = asdict(cfg) | {"init": str(init)}
    check_run_config(cfg.out_dir, {k: v for k, v in settings.items()
                                   if k not in ("out_dir", "ckpt_every", "threads", "stop_at", "progress")})
    steps_per_chunk = max(1, cfg.chunk_size * cfg.chunk_reuse // cfg.batch_size)
    stream = ChunkedMeshStream(data, cfg.chunk_size, steps_per_chunk, seed=cfg.seed)
    loop = LoopConfig(out_dir=cfg.out_dir, total_steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                      warmup_steps=cfg.warmup_steps, schedule="cosine", ckpt_every=cfg.ckpt_every, seed=cfg.seed,
                      betas=(0.9, 0.99), log_every=100, stop_at=cfg.stop_at, progress=cfg.progress)
    final = train(DecoderTask(model, stream, cfg.batch_size, vertex_weights(data.body, cfg.extremity_weight)), loop)
    if final.name == "final":
        copy_topology(model, init, final)
    return final

