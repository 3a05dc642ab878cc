"""Conditioned MEGA training (paper Sec. 3.3 "Masked generative modeling for HMR"; docs/original-implementation.md §5).

Each step draws pool meshes, synthesises 2D-keypoint observations of them (fresh random cameras, crops
and detector noise: :mod:`training.data.observations`), masks the mesh tokens with the same schedule as
pre-training (the conditioning stays fully visible) and minimises, with weights 1.0 as the original,

* cross-entropy on the masked tokens,
* MSE between the predicted rotation matrix and the camera-frame GT rotation,
* confidence-weighted L1 of the 2D joints of the no-grad decoded mesh, rotated and projected with the
  predicted rotation and weak-perspective camera (so it trains the rotation/camera head only).

Initialisation from a pre-trained checkpoint copies every tensor whose name and shape match (encoder,
decoder, token head); the conditioners and the rotation/camera head start fresh, as the original's
non-strict load. Ablations: ``masking="linear"``/``"full"`` and ``init=None`` ("w/o pre-training").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from megaviewer.io.checkpoint import CheckpointError, load_checkpoint_tensors, load_config
from megaviewer.masking import sample_visible_mask
from megaviewer.model import Mega
from megaviewer.model.config import KIND as MEGA_KIND
from megaviewer.model.lifter import load_lifter
from megaviewer.tokenizer.model import MeshVQVAE
from training.data.observations import ObservationBatch, ObservationConfig, synthesize
from training.data.pool import MeshPool
from training.distributed import env_rank
from training.lifter import lifter_conditioning
from training.loop import check_run_config, train
from training.mega_losses import LossWeights, code_neighbour_targets, hmr_losses, lifting_loss
from training.mega_pretrain import (
    PretrainConfig,
    build_mega,
    check_tokenizer_body,
    finish,
    load_tokenizer,
    model_device,
    pool_meshes,
    prepare_pool,
)

# Transformer settings that must agree between the pre-trained checkpoint and the conditioned model.
_SHAPE_KEYS = ("seq_len", "vocab", "dim", "enc_depth", "dec_depth", "heads", "mlp_ratio", "qkv_bias")


@dataclass
class ConditionedConfig(PretrainConfig):
    """A conditioned run: the pre-training settings plus the init checkpoint, conditioners, data and
    loss weights. ``kinds=None`` keeps the preset's conditioners (``cpu_small``: keypoints)."""

    out_dir: str = "runs/mega"
    init: str | None = None
    kinds: tuple[str, ...] | None = None
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    weights: LossWeights = field(default_factory=LossWeights)
    # 2D loss on this many samples of each batch (None: all, as the original); see training.mega_losses.
    reprojection_rows: int | None = None
    # A trained keypoint lifter's folder (megaviewer-train lifter): frozen inside the model, it answers for the
    # landmarks of people who have none (a landmark model only).
    lifter: str | None = None
    # Learning rate of the tensors the init checkpoint lacks (the conditioners, the rotation/camera head), as a
    # multiple of the schedule's: they start from scratch while the transformer is already trained.
    fresh_lr_scale: float = 1.0


@dataclass
class InitReport:
    """What :func:`load_pretrained` copied (``loaded``) and what stays freshly initialised (``fresh``)."""

    loaded: list[str]
    fresh: list[str]
    ignored: list[str]  # checkpoint tensors the model has no slot for


def load_pretrained(model: Mega, folder: str | Path) -> InitReport:
    """Copy the matching tensors of a pre-trained (or any MEGA) checkpoint into ``model``, non-strictly.

    Transformer sizes must match (a different ``dim`` is a different model, not a partial init); every
    shared tensor name must have the same shape. Tensors only the model has (conditioners, rotation/camera
    head) keep their fresh initialisation.
    """
    saved = load_config(folder, expected_kind=MEGA_KIND)
    mine = model.config.to_dict()
    wrong = [f"{k}: checkpoint {saved.get(k)!r} vs model {mine[k]!r}" for k in _SHAPE_KEYS
             if saved.get(k) != mine[k]]
    if wrong:
        raise CheckpointError(f"{folder} does not fit this model: {'; '.join(wrong)}")
    tensors = load_checkpoint_tensors(folder)
    own = model.state_dict()
    for name in GROWN_INPUTS:  # a conditioner added to a trained model widens the head's input
        if name in tensors and name in own and _grows_input(tensors[name], own[name]):
            grown = torch.zeros_like(own[name])
            grown[:, :tensors[name].shape[1]] = tensors[name]
            tensors[name] = grown
    mismatched = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in tensors.items()
                  if k in own and v.shape != own[k].shape]
    if mismatched:
        raise CheckpointError(f"{folder}: tensor shapes differ from the model: {'; '.join(mismatched[:8])}")
    shared = {k: v for k, v in tensors.items() if k in own}
    if not shared:
        raise CheckpointError(f"{folder} shares no tensor with the model")
    model.load_state_dict(shared, strict=False)
    return InitReport(sorted(shared), sorted(set(own) - set(shared)), sorted(set(tensors) - set(own)))


GROWN_INPUTS = ("rotcam.fc1.weight",)
"""Weights that read the pooled conditioning features. Conditioners append their pooled features in kind order,
so a model with one more conditioner than the checkpoint (keypoints -> keypoints + landmarks) reads the old
features first: the checkpoint's columns are copied and the new ones start at zero, so the rotation/camera head
starts from the checkpoint's mapping and training teaches it to use the new input."""


def _grows_input(saved: torch.Tensor, mine: torch.Tensor) -> bool:
    return saved.ndim == 2 and mine.ndim == 2 and saved.shape[0] == mine.shape[0] and saved.shape[1] < mine.shape[1]


def keypoint_regressor(body: str = "anny", tokenizer: MeshVQVAE | None = None) -> torch.Tensor:
    """The COCO-17 regressor (17, V) of the working mesh without building the body: the body data of
    ``tokenizer`` when given (for SMPL the ``body.safetensors`` of its folder, made from the SMPL body's own
    regressor), else the shipped assets of ``body``."""
    from megaviewer.body.assets import BodyAssets

    if tokenizer is not None:
        return BodyAssets.for_tokenizer(tokenizer).coco_regressor.float()
    return BodyAssets.load(body).coco_regressor.float()


def check_synthetic_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """``kinds`` if synthetic observations can teach them (keypoints, and landmarks), else a ValueError."""
    if tuple(kinds) not in (("keypoints",), ("keypoints", "landmarks")):
        raise ValueError(f"synthetic training teaches keypoint (and landmark) conditioning; the model reads "
                         f"{list(kinds)}: a model that reads images trains on photos, --data FOLDER "
                         "(docs/dataset.md)")
    return tuple(kinds)


class ConditionedTask:
    """:class:`training.loop.TrainTask` of keypoint-conditioned MEGA on synthetic observations."""

    def __init__(self, model: Mega, pool: MeshPool, tokenizer: MeshVQVAE, regressor: torch.Tensor,
                 batch_size: int, masking: str = "cosine", observation: ObservationConfig | None = None,
                 weights: LossWeights | None = None, reprojection_rows: int | None = None):
        kinds = check_synthetic_kinds(model.conditioning.kinds if model.conditioning is not None else ())
        if "landmarks" in kinds and (observation is None or observation.landmarks is None):
            raise ValueError("a landmark-conditioned model needs observations with a landmark noise model "
                             "(ObservationConfig.landmarks)")
        if pool.tokens.shape[1] != model.config.seq_len or tokenizer.num_tokens != model.config.seq_len:
            raise ValueError("pool, tokenizer and model disagree on the number of tokens per mesh")
        if regressor.shape[1] != tokenizer.num_vertices:
            raise ValueError(f"regressor has {regressor.shape[1]} vertices, the tokenizer "
                             f"{tokenizer.num_vertices}")
        self.model = model
        self.pool = pool
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.regressor = regressor.float()
        self.batch_size = batch_size
        self.masking = masking
        self.observation = observation or ObservationConfig()
        self.weights = weights or LossWeights()
        self.reprojection_rows = reprojection_rows
        self.soft_targets = (code_neighbour_targets(tokenizer.quantizer.codebook, self.weights.code_smoothing)
                             if self.weights.code_smoothing > 0 else None)

    def config_dict(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    def sample(self, generator: torch.Generator) -> tuple[ObservationBatch, torch.Tensor]:
        """Observations and the visible mask, a pure function of ``generator``."""
        idx = torch.randint(0, len(self.pool), (self.batch_size,), generator=generator)
        obs = synthesize(self.pool.batch(idx), self.observation, generator)
        visible = sample_visible_mask(self.batch_size, self.model.config.seq_len, self.masking, generator)
        return obs, visible

    def _frozen_on(self, device: torch.device) -> tuple[MeshVQVAE, torch.Tensor]:
        if model_device(self.tokenizer) != device:
            self.tokenizer.to(device)
        if self.regressor.device != device:
            self.regressor = self.regressor.to(device)
        return self.tokenizer, self.regressor

    def losses(self, model: nn.Module, obs: ObservationBatch,
               visible: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        device = model_device(model)
        tokens, visible = obs.tokens.to(device), visible.to(device)
        out = model(tokens, visible, observation_conditioning(obs, self.model.conditioning.kinds, device))
        tokenizer, regressor = self._frozen_on(device)
        total, logs = hmr_losses(out.logits, out.rot6d, out.cam, tokens, visible, obs.rot_cam.to(device),
                                 obs.joints2d.to(device), obs.joints2d_conf.to(device), tokenizer, regressor,
                                 self.weights, self.reprojection_rows, self.soft_targets)
        if self.weights.lifting > 0 and out.lifted is not None:
            lift = lifting_loss(out.lifted, obs.joints3d.to(device))
            total = total + self.weights.lifting * lift
            logs["lift_m"] = float(lift.detach())
        return total, logs

    def training_step(self, model: nn.Module, step: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        obs, visible = self.sample(generator)
        return self.losses(model, obs, visible)


def observation_conditioning(obs: ObservationBatch, kinds: tuple[str, ...],
                             device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The model inputs of ``kinds`` from a batch of observations."""
    return {kind: getattr(obs, kind).to(device) for kind in kinds}


def run_settings(cfg: ConditionedConfig, pool: MeshPool) -> dict[str, Any]:
    """What defines a conditioned run besides the model config (checked on resume)."""
    return {"stage": "conditioned", "masking": cfg.masking, "pool_tokenizer": pool.tokenizer_id,
            "pool_seed": pool.seed, "pool_size": len(pool), "preset": cfg.preset,
            "init": str(Path(cfg.init).resolve()) if cfg.init else None,
            "observation": asdict(cfg.observation), "weights": asdict(cfg.weights),
            "reprojection_rows": cfg.reprojection_rows,
            **({"lifter": str(Path(cfg.lifter).resolve())} if cfg.lifter else {}),
            **({"fresh_lr_scale": cfg.fresh_lr_scale} if cfg.fresh_lr_scale != 1.0 else {})}


def train_conditioned(cfg: ConditionedConfig, tokenizer: MeshVQVAE | None = None,
                      pool: MeshPool | None = None, regressor: torch.Tensor | None = None) -> Path:
    """Run (or resume) conditioned training; returns ``out_dir/final`` (or the ``stop_at`` checkpoint).

    The init checkpoint is loaded before the loop; on resume the loop's checkpoint then overwrites it.
    """
    if cfg.kinds is not None:
        check_synthetic_kinds(cfg.kinds)  # before minutes of building a pool
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.tokenizer)
    check_tokenizer_body(cfg, tokenizer)
    if pool is None:
        pool = prepare_pool(cfg.pool, tokenizer, cfg.pool_size, cfg.pool_seed, meshes=pool_meshes(cfg, tokenizer),
                            progress=cfg.progress)
    regressor = regressor if regressor is not None else keypoint_regressor(cfg.body, tokenizer)
    check_run_config(cfg.out_dir, run_settings(cfg, pool))
    torch.manual_seed(cfg.seed)
    lifter = load_lifter(cfg.lifter) if cfg.lifter else None
    model = build_mega(cfg.preset, tokenizer, kinds=cfg.kinds, conditioning=lifter_conditioning(lifter))
    loop = cfg.loop_config()
    if cfg.init:
        report = load_pretrained(model, cfg.init)
        if env_rank() == 0:
            print(f"megaviewer-train: initialised {len(report.loaded)} tensors from {cfg.init}; "
                  f"{len(report.fresh)} new", flush=True)
        if cfg.fresh_lr_scale != 1.0:
            trained = {name for name, param in model.named_parameters() if param.requires_grad}
            loop = replace(loop, lr_scale={name: cfg.fresh_lr_scale for name in report.fresh if name in trained})
    if lifter is not None:
        model.conditioning.lifter.load_state_dict(lifter.state_dict())
    task = ConditionedTask(model, pool, tokenizer, regressor, cfg.batch_size, cfg.masking, cfg.observation,
                           cfg.weights, cfg.reprojection_rows)
    return finish(train(task, loop), tokenizer)
