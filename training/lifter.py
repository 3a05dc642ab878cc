"""Train the keypoint lifter (:mod:`megaviewer.model.lifter`) on the synthetic observations MEGA trains on.

Each step draws pool meshes, synthesises detector observations of them (:mod:`training.data.observations`,
the same simulated detector as the conditioned stage) and minimises the mean distance (metres) between the
lifted joints and the true camera-frame joints, both around the midpoint of the hips. The loop is
:func:`training.loop.train`: resumable, checkpointed, DDP under ``torchrun``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from megaviewer.model.lifter import KeypointLifter, LifterConfig, hip_centred
from megaviewer.model.mega import Mega
from training.data.observations import ObservationConfig, synthesize
from training.data.pool import MeshPool
from training.loop import LoopConfig, check_run_config, train
from training.mega_pretrain import DEFAULT_POOL


@dataclass
class LifterTrainConfig:
    out_dir: str = "runs/lifter"
    pool: str = DEFAULT_POOL
    steps: int = 10_000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lifter: LifterConfig = field(default_factory=LifterConfig)
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    seed: int = 0
    ckpt_every: int = 2_000
    threads: int = 0
    progress: bool = True
    stop_at: int | None = None

    def loop_config(self) -> LoopConfig:
        return LoopConfig(out_dir=self.out_dir, total_steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                          weight_decay=self.weight_decay, betas=(0.9, 0.999), schedule="cosine",
                          min_lr_ratio=0.0, ckpt_every=self.ckpt_every, log_every=500, seed=self.seed,
                          progress=self.progress, stop_at=self.stop_at)


def lifter_conditioning(lifter: KeypointLifter | None) -> dict[str, Any]:
    """The ``ConditioningConfig`` fields of a model that carries ``lifter`` (none without one)."""
    if lifter is None:
        return {}
    return {"landmark_lifter_hidden": lifter.config.hidden, "landmark_lifter_depth": lifter.config.depth}


def attach_lifter(model: Mega, lifter: KeypointLifter) -> Mega:
    """A copy of the landmark model ``model`` carrying ``lifter`` (frozen), without further training: what the
    lifter alone buys a trained model."""
    conditioning = replace(model.config.conditioning, **lifter_conditioning(lifter))
    carrier = Mega(replace(model.config, conditioning=conditioning))
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("conditioning.lifter.")}
    carrier.load_state_dict(own, strict=False)
    carrier.conditioning.lifter.load_state_dict(lifter.state_dict())
    return carrier.eval()


def lifting_error(lifter: nn.Module, keypoints: torch.Tensor, joints_cam: torch.Tensor) -> torch.Tensor:
    """Per-person mean distance (m) between lifted and true joints, both around the midpoint of the hips."""
    return (lifter(keypoints) - hip_centred(joints_cam)).norm(dim=-1).mean(dim=-1)


class LifterTask:
    """:class:`training.loop.TrainTask` of the keypoint lifter."""

    def __init__(self, lifter: KeypointLifter, pool: MeshPool, batch_size: int, observation: ObservationConfig):
        self.model = lifter
        self.pool = pool
        self.batch_size = batch_size
        self.observation = observation

    def config_dict(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    def training_step(self, model: nn.Module, step: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        idx = torch.randint(0, len(self.pool), (self.batch_size,), generator=generator)
        obs = synthesize(self.pool.batch(idx), self.observation, generator)
        device = next(model.parameters()).device
        loss = lifting_error(model, obs.keypoints.to(device), obs.joints3d.to(device)).mean()
        return loss, {"joint_mm": float(loss.detach()) * 1000}


def train_lifter(cfg: LifterTrainConfig, pool: MeshPool | None = None) -> Path:
    """Run (or resume) lifter training; returns ``out_dir/final`` (or the ``stop_at`` checkpoint)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pool = pool if pool is not None else MeshPool.load(cfg.pool)
    check_run_config(cfg.out_dir, {"stage": "lifter", "pool_seed": pool.seed, "pool_size": len(pool),
                                   "observation": asdict(cfg.observation), "weight_decay": cfg.weight_decay})
    torch.manual_seed(cfg.seed)
    return train(LifterTask(KeypointLifter(cfg.lifter), pool, cfg.batch_size, cfg.observation), cfg.loop_config())
