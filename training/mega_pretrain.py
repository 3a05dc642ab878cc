"""Self-supervised MEGA pre-training on tokenised meshes (paper Sec. 3.3; docs/original-implementation.md §5).

Each step draws pool rows with the step's generator, masks them with ONE τ per batch (cosine schedule
by default; ``linear`` and ``full`` are the paper's ablations) and trains the unconditioned model with
cross-entropy on the masked positions only. Optimiser as the original: AdamW, betas (0.9, 0.95), weight
decay 0.05, lr = 1e-3 · batch / 256 unless an absolute lr is given (the original's tiny lr suits 500
epochs on 4 GPUs, not a short CPU run).

Also home to what pre-training and conditioned training share: loading the frozen tokenizer, building
(or loading) the mesh pool -- once, on rank 0 under torchrun --, building a MEGA sized to the tokenizer
and guarding a resumed run against a changed data/masking setup (the loop only fingerprints the model
config, which is what ``final/config.json`` must hold for ``load_mega``).

Bodies: the pool's meshes are posed through the tokenizer's body. Anny is shipped; for a tokenizer trained on
the user's SMPL / SMPL-H file (``megaviewer-train tokenizer --body smpl``) the config names that body and file
(``body``, ``model_path``, ``gender``), which is needed only when the pool must be built. Every finished run
keeps a copy of its tokenizer in ``final/tokenizer/`` (:mod:`training.tokenizer_bundle`), which
``Engine.from_pretrained`` reads, so the checkpoint folder is self-contained.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from megaviewer.masking import SCHEDULES as MASKINGS
from megaviewer.masking import sample_visible_mask
from megaviewer.model import Mega, get_preset
from megaviewer.tokenizer.model import MeshVQVAE
from training.data.bodies import BodySpec
from training.data.pool import MeshPool
from training.distributed import env_rank
from training.loop import LoopConfig, check_run_config, train
from training.mega_losses import masked_token_loss

DEFAULT_POOL_SIZE = 100_000
DEFAULT_POOL = "runs/pool.safetensors"
POOL_WAIT_S = 4 * 3600.0


@dataclass
class PretrainConfig:
    """One pre-training run. ``lr=None`` means ``base_lr · batch_size / 256`` (the original's rule).

    ``pool_size=None`` uses an existing pool file as it is, or builds ``DEFAULT_POOL_SIZE`` meshes;
    ``tokenizer=None`` is the shipped ``resources/tokenizer``.
    """

    out_dir: str = "runs/pretrain"
    preset: str = "cpu_small"
    steps: int = 20_000
    batch_size: int = 64
    lr: float | None = None
    base_lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_steps: int = 500
    masking: str = "cosine"
    pool: str = DEFAULT_POOL
    pool_size: int | None = None
    pool_seed: int = 0
    tokenizer: str | None = None
    seed: int = 0
    ckpt_every: int = 1000
    log_every: int = 50
    threads: int = 0
    progress: bool = True
    stop_at: int | None = None
    # The tokenizer's body; smpl / smplh: pool meshes are posed through the user's model file (or its folder).
    body: str = "anny"
    model_path: str | None = None
    gender: str = "neutral"

    def __post_init__(self) -> None:
        if self.masking not in MASKINGS:
            raise ValueError(f"masking must be one of {sorted(MASKINGS)}, got {self.masking!r}")
        BodySpec(self.body, self.model_path, self.gender)  # an unknown body name fails here

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else self.base_lr * self.batch_size / 256.0

    def loop_config(self) -> LoopConfig:
        return LoopConfig(out_dir=self.out_dir, total_steps=self.steps, batch_size=self.batch_size,
                          lr=self.effective_lr, weight_decay=self.weight_decay, betas=self.betas,
                          warmup_steps=self.warmup_steps, schedule="cosine", ckpt_every=self.ckpt_every,
                          log_every=self.log_every, seed=self.seed, progress=self.progress,
                          stop_at=self.stop_at, find_unused_parameters=True)


# ---------------------------------------------------------------------------------------------- shared
def load_tokenizer(folder: str | Path | None = None) -> MeshVQVAE:
    """The frozen tokenizer (eval mode, no gradients); default: the shipped one."""
    tokenizer = MeshVQVAE.from_pretrained(folder)
    tokenizer.requires_grad_(False)
    return tokenizer.eval()


def build_mega(preset: str, tokenizer: MeshVQVAE, kinds: tuple[str, ...] | None = None,
               conditioning: dict[str, Any] | None = None, **overrides: Any) -> Mega:
    """A fresh MEGA from ``preset`` with vocabulary and sequence length taken from the tokenizer.

    ``kinds`` replaces the preset's conditioners (``()`` = the unconditioned pre-training model) while
    keeping its other conditioning settings, so the pre-trained and conditioned models of one preset share
    every transformer shape; ``conditioning`` overrides further ``ConditioningConfig`` fields.
    """
    config = get_preset(preset, **overrides)
    config = replace(config, vocab=int(tokenizer.config.num_codes), seq_len=int(tokenizer.num_tokens))
    cond = dict(conditioning or {})
    if kinds is not None:
        cond["kinds"] = tuple(kinds)
    if cond:
        config = replace(config, conditioning=replace(config.conditioning, **cond))
    return Mega(config)


def default_pool_path(body: str = "anny") -> str:
    """Where a run caches its pool by default: one file per body, so an SMPL run never meets an Anny pool."""
    return DEFAULT_POOL if body == "anny" else str(Path(DEFAULT_POOL).with_name(f"pool_{body}.safetensors"))


def check_tokenizer_body(cfg: PretrainConfig, tokenizer: MeshVQVAE) -> None:
    """The run's ``body`` must be the tokenizer's: its tokens encode that body's topology only."""
    if tokenizer.config.body != cfg.body:
        where = cfg.tokenizer or "the shipped tokenizer"
        hint = f"--body {tokenizer.config.body}" + (" --model-path FILE" if tokenizer.config.body != "anny" else "")
        raise ValueError(f"{where} encodes {tokenizer.config.body!r} meshes but the run is for {cfg.body!r} "
                         f"bodies; pass {hint}")


def pool_meshes(cfg: PretrainConfig, tokenizer: MeshVQVAE):
    """What :func:`prepare_pool` poses when the pool is missing: ``None`` (its default, Anny) for Anny, else a
    function loading the user's body (so the SMPL file is needed only when a pool is built), checked against
    the tokenizer's topology."""
    spec = BodySpec(cfg.body, cfg.model_path, cfg.gender)
    if not spec.needs_model_file:
        return None

    def load():
        from training.tokenizer import check_body_matches

        meshes = spec.meshes()
        check_body_matches(tokenizer, meshes.body)
        return meshes

    return load


def prepare_pool(path: str | Path, tokenizer: MeshVQVAE, size: int | None = None, seed: int = 0,
                 meshes=None, progress: bool = True) -> MeshPool:
    """Load the pool at ``path`` (checked against ``tokenizer``), building and caching it if missing.

    ``meshes``: a :class:`~training.data.meshes.SyntheticMeshes` to pose (default: Anny's), or a function
    returning one, called only when the pool is built.

    Under torchrun only rank 0 builds (posing ~100k meshes takes minutes); the other ranks wait for the
    pool's JSON side file, which :meth:`MeshPool.save` writes last, then load the same file, so every rank
    trains on identical data. A pool whose size differs from an explicit ``size`` is refused rather than
    silently used.
    """
    path = Path(path)
    meta = path.with_name(path.name + ".json")
    if not meta.exists():
        if env_rank() == 0:
            from training.data.meshes import SyntheticMeshes

            count = size if size is not None else DEFAULT_POOL_SIZE
            if callable(meshes):
                meshes = meshes()
            pool = MeshPool.build(tokenizer, meshes or SyntheticMeshes(), count, seed, progress=progress)
            pool.save(path)
            print(f"megaviewer-train: built a pool of {count} meshes at {path}", flush=True)
        else:
            deadline = time.monotonic() + POOL_WAIT_S
            while not meta.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"rank {env_rank()}: rank 0 did not write the pool {path} in time")
                time.sleep(1.0)
    pool = MeshPool.load(path, tokenizer=tokenizer)
    if size is not None and len(pool) != size:
        raise ValueError(f"{path} holds {len(pool)} meshes but --pool-size {size} was asked; "
                         "omit --pool-size to use it, or choose another --pool path")
    if pool.tokens.shape[1] != tokenizer.num_tokens:
        raise ValueError(f"{path} has {pool.tokens.shape[1]} tokens per mesh, the tokenizer "
                         f"{tokenizer.num_tokens}")
    return pool


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------------------------------------- task
class PretrainTask:
    """:class:`training.loop.TrainTask` of the unconditioned model: masked-token reconstruction."""

    def __init__(self, model: Mega, pool_tokens: torch.Tensor, batch_size: int, masking: str = "cosine"):
        if model.conditioning is not None:
            raise ValueError("pre-training uses an unconditioned model (conditioning kinds = ())")
        if pool_tokens.shape[1] != model.config.seq_len:
            raise ValueError(f"pool has {pool_tokens.shape[1]} tokens per mesh, model {model.config.seq_len}")
        if int(pool_tokens.max()) >= model.config.vocab:
            raise ValueError(f"pool token ids reach {int(pool_tokens.max())} >= model vocab "
                             f"{model.config.vocab}")
        self.model = model
        self.tokens = pool_tokens.long()
        self.batch_size = batch_size
        self.masking = masking

    def config_dict(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, N), visible (B, N)) drawn from ``generator`` only."""
        idx = torch.randint(0, self.tokens.shape[0], (self.batch_size,), generator=generator)
        visible = sample_visible_mask(self.batch_size, self.tokens.shape[1], self.masking, generator)
        return self.tokens[idx], visible

    def training_step(self, model: nn.Module, step: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        tokens, visible = self.sample(generator)
        device = model_device(model)
        tokens, visible = tokens.to(device), visible.to(device)
        out = model(tokens, visible)
        tok = masked_token_loss(out.logits, tokens, visible)
        logs = {"masked_fraction": tok.masked / tokens.numel()}
        if tok.masked:
            logs["masked_acc"] = tok.accuracy
        return tok.loss, logs


def run_settings(cfg: PretrainConfig, pool: MeshPool) -> dict[str, Any]:
    """What defines a pre-training run besides the model config (checked on resume)."""
    return {"stage": "pretrain", "masking": cfg.masking, "pool_tokenizer": pool.tokenizer_id,
            "pool_seed": pool.seed, "pool_size": len(pool), "preset": cfg.preset}


def pretrain(cfg: PretrainConfig, tokenizer: MeshVQVAE | None = None, pool: MeshPool | None = None) -> Path:
    """Run (or resume) pre-training; returns ``out_dir/final`` (or the ``stop_at`` checkpoint).

    ``tokenizer``/``pool`` may be passed in memory (tests); otherwise they come from ``cfg``.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.tokenizer)
    check_tokenizer_body(cfg, tokenizer)
    if pool is None:
        pool = prepare_pool(cfg.pool, tokenizer, cfg.pool_size, cfg.pool_seed, meshes=pool_meshes(cfg, tokenizer),
                            progress=cfg.progress)
    check_run_config(cfg.out_dir, run_settings(cfg, pool))
    torch.manual_seed(cfg.seed)
    model = build_mega(cfg.preset, tokenizer, kinds=())
    task = PretrainTask(model, pool.tokens, cfg.batch_size, cfg.masking)
    return finish(train(task, cfg.loop_config()), tokenizer)


def finish(final: Path, tokenizer: MeshVQVAE) -> Path:
    """After a finished run (not a ``stop_at`` checkpoint), keep the tokenizer it used in ``final/tokenizer/``."""
    from training.tokenizer_bundle import bundle_tokenizer

    if final.name == "final" and env_rank() == 0:
        bundle_tokenizer(tokenizer, final)
    return final


def describe(cfg: Any) -> str:
    return json.dumps(asdict(cfg), indent=2, default=str)
