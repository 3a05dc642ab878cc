"""Conditioned MEGA trained on a dataset folder of real images (paper Sec. 3.3, the image-conditioned HMR model).

Each step draws people of the training split with the step's generator, reads their crops with SPIN-style
augmentation (:class:`training.data.dataset.DatasetReader`, the crop the app makes at inference), turns
their bodies into targets (:mod:`training.data.body_targets`: tokens of the canonical mesh and the
camera-frame rotation), masks the tokens with the pre-training schedule and minimises the losses of
synthetic conditioned training (:func:`training.mega_losses.hmr_losses`): token cross-entropy, rotation MSE
and the confidence-weighted 2D loss against the dataset's keypoints in crop coordinates, as the original
trains on annotated keypoints.

The model reads the crop (``image``), the dataset's 2D keypoints (``keypoints``) or both. The image backbone
is any timm model, randomly initialised or from a local weights file (``backbone_weights``; nothing is ever
downloaded). On CUDA the forward pass runs in bfloat16 autocast (``amp``); under ``torchrun`` the loop wraps
the model in DDP and every rank draws its own people (:mod:`training.loop`). At the end the model is evaluated
on the held-out split -- the ``val`` people, or a fixed tenth of the images when the table has no splits --
with the synthetic benchmark's metrics (:func:`training.evaluate.evaluate`), written to ``final/metrics.json``.
"""

from __future__ import annotations

import json
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from megaviewer.body.assets import BodyAssets
from megaviewer.geometry import metrics
from megaviewer.io.atomic import atomic_write_text
from megaviewer.masking import sample_visible_mask
from megaviewer.model import Mega
from megaviewer.tokenizer.model import MeshVQVAE
from training.data.bodies import BodySpec
from training.data.body_targets import TargetMaker, mirror_permutation
from training.data.dataset import AugmentConfig, DatasetReader, ReaderConfig, draw_augmentation
from training.distributed import env_rank
from training.evaluate import EvalSet
from training.loop import check_run_config, train
from training.mega_conditioned import ConditionedConfig, load_pretrained
from training.mega_losses import hmr_losses
from training.mega_pretrain import (
    build_mega,
    check_tokenizer_body,
    finish,
    load_tokenizer,
    model_device,
)

DATASET_KINDS = (("image",), ("keypoints",), ("image", "keypoints"))
HELD_OUT_FRACTION = 0.1


@dataclass
class DatasetTrainConfig(ConditionedConfig):
    """A conditioned run on a dataset folder: the conditioned-training settings (``kinds`` default
    ``("image",)``; the pool and synthetic-observation fields are unused) plus the data and the backbone."""

    out_dir: str = "runs/mega_dataset"
    data: str = ""
    kinds: tuple[str, ...] | None = ("image",)
    train_split: str = "train"
    val_split: str = "val"
    backbone: str = "resnet50"
    backbone_weights: str | None = None  # local .safetensors state dict of the timm backbone
    image_size: int = 224
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(enabled=True))
    amp: bool = True  # bfloat16 autocast on CUDA; ignored on CPU
    workers: int = 2  # threads reading and warping images
    eval_people: int = 512  # at most this many held-out people are evaluated
    eval_q: tuple[int, ...] = (1, 5, 10, 25)
    head_dropout: float | None = None  # rotation/camera head dropout (None: the preset's)


# ------------------------------------------------------------------------------------------------- data
def split_indices(reader: DatasetReader, train_split: str, val_split: str) -> tuple[list[int], list[int]]:
    """Training and held-out rows of ``reader``: by the table's ``split`` when it has any ``val_split``
    people, else a fixed tenth of the *images* (a hash of the path, so people of one image stay together)."""
    splits = [r.split for r in reader.records]
    if val_split in splits:
        train_rows = [i for i, s in enumerate(splits) if s in (train_split, None)]
        return train_rows, [i for i, s in enumerate(splits) if s == val_split]
    held = [zlib.crc32(r.image.encode()) % 1000 < HELD_OUT_FRACTION * 1000 for r in reader.records]
    if not any(held) or all(held):  # tiny sets: every tenth person
        held = [i % 10 == 9 for i in range(len(reader.records))]
    return [i for i, h in enumerate(held) if not h], [i for i, h in enumerate(held) if h]


def read_batch(reader: DatasetReader, rows: list[int], augment: AugmentConfig, generator: torch.Generator,
               pool: ThreadPoolExecutor | None = None) -> list[dict[str, Any]]:
    """Samples of ``rows`` with augmentations drawn from ``generator`` (a pure function of it)."""
    seeds = torch.randint(0, 2**62, (len(rows),), generator=generator).tolist()
    augs = [draw_augmentation(augment, np.random.default_rng(s)) for s in seeds]
    jobs = list(zip(rows, augs, strict=True))
    if pool is None:
        return [reader.load(r, a) for r, a in jobs]
    return list(pool.map(lambda job: reader.load(*job), jobs))


def conditioning_of(samples: list[dict[str, Any]], kinds: tuple[str, ...]) -> dict[str, torch.Tensor]:
    inputs = {"image": lambda: torch.stack([s["image"] for s in samples]),
              "keypoints": lambda: torch.stack([s["keypoints"] for s in samples])}
    return {kind: inputs[kind]() for kind in kinds}


# ----------------------------------------------------------------------------------------------- training
def check_kinds(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """``kinds`` if a dataset can train a model reading them (no simulated landmarks here), else a ValueError."""
    if kinds not in DATASET_KINDS:
        raise ValueError(f"a dataset trains models reading {' or '.join('+'.join(k) for k in DATASET_KINDS)}; "
                         f"this one reads {list(kinds)}")
    return kinds


class DatasetTask:
    """:class:`training.loop.TrainTask` of conditioned MEGA on a dataset folder."""

    def __init__(self, model: Mega, reader: DatasetReader, rows: list[int], targets: TargetMaker,
                 tokenizer: MeshVQVAE, regressor: torch.Tensor, cfg: DatasetTrainConfig):
        kinds = check_kinds(tuple(model.config.conditioning.kinds))
        if not rows:
            raise ValueError(f"{reader.folder}: no people in the training split")
        self.model, self.reader, self.rows, self.targets = model, reader, rows, targets
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.regressor = regressor.float()
        self.cfg = cfg
        self.kinds = kinds
        self.pool = ThreadPoolExecutor(cfg.workers) if cfg.workers > 0 else None

    def config_dict(self) -> dict[str, Any]:
        return self.model.config.to_dict()

    def training_step(self, model: nn.Module, step: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        picks = torch.randint(0, len(self.rows), (self.cfg.batch_size,), generator=generator).tolist()
        samples = read_batch(self.reader, [self.rows[p] for p in picks], self.cfg.augment, generator, self.pool)
        visible = sample_visible_mask(len(samples), self.model.config.seq_len, self.cfg.masking, generator)
        device = model_device(model)
        self.tokenizer.to(device)
        body = self.targets.from_samples(samples)
        with torch.no_grad():
            tokens = self.tokenizer.encode(body.canonical.to(device)).long()
        cond = {k: v.to(device) for k, v in conditioning_of(samples, self.kinds).items()}
        keypoints = cond.get("keypoints")  # the 2D targets; already stacked when the model reads them
        if keypoints is None:
            keypoints = torch.stack([s["keypoints"] for s in samples]).to(device)
        visible = visible.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.cfg.amp and device.type == "cuda"):
            out = model(tokens, visible, cond)
        return hmr_losses(out.logits.float(), out.rot6d.float(), out.cam.float(), tokens, visible,
                          body.rot_cam.to(device), keypoints[..., :2], keypoints[..., 2],
                          self.tokenizer, self.regressor.to(device), self.cfg.weights, self.cfg.reprojection_rows)


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def build_dataset_eval_set(reader: DatasetReader, rows: list[int], targets: TargetMaker,
                           kinds: tuple[str, ...], limit: int | None = None) -> EvalSet:
    """The held-out people as an :class:`EvalSet` (plain crops, no augmentation; images only if read)."""
    rows = rows[:limit] if limit else rows
    samples = [reader.load(r) for r in rows]
    body = targets.from_samples(samples)
    keypoints = torch.stack([s["keypoints"] for s in samples])
    images = torch.stack([s["image"] for s in samples]) if "image" in kinds else None
    return EvalSet(body.oriented, keypoints, body.rot_cam, images=images)


def evaluate_on_dataset(model: Mega, tokenizer: MeshVQVAE, regressor: torch.Tensor, data: EvalSet,
                        q_values: tuple[int, ...] = (1, 5, 10, 25)) -> dict:
    """The benchmark's figures (deterministic, min-of-Q, mean-of-Q, SD) on the held-out people."""
    from training.evaluate import evaluate

    return evaluate(model, tokenizer, regressor, data, q_values=q_values, batch=16)


# ------------------------------------------------------------------------------------------------- run
def make_target_maker(tokenizer: MeshVQVAE, needs_params: bool, body: BodySpec | None = None,
                      assets: BodyAssets | None = None) -> tuple[TargetMaker, torch.Tensor]:
    """Targets for the tokenizer's mesh and its COCO regressor. The body model (``body``: the run's, by default
    the tokenizer's shipped body) is built only when the data gives parameters: building Anny costs minutes
    the first time, and SMPL needs the user's model file."""
    assets = assets if assets is not None else BodyAssets.for_tokenizer(tokenizer)
    spec = body if body is not None else BodySpec(tokenizer.config.body)
    model = spec.load() if needs_params else None
    if model is not None and model.num_vertices != tokenizer.num_vertices:
        raise ValueError(f"the {spec.name} model file poses {model.num_vertices} vertices, the tokenizer encodes "
                         f"{tokenizer.num_vertices}: not the model file it was trained with")
    return TargetMaker(assets.template, assets.coco_regressor, model, spec.name), assets.coco_regressor


def run_settings(cfg: DatasetTrainConfig, reader: DatasetReader) -> dict[str, Any]:
    """What defines a dataset run besides the model config (checked on resume)."""
    return {"stage": "dataset", "data": str(Path(cfg.data).resolve()), "people": len(reader),
            "masking": cfg.masking, "preset": cfg.preset, "init": str(Path(cfg.init).resolve()) if cfg.init else None,
            "augment": asdict(cfg.augment), "weights": asdict(cfg.weights), "image_size": cfg.image_size,
            "reprojection_rows": cfg.reprojection_rows, "splits": [cfg.train_split, cfg.val_split]}


def train_on_dataset(cfg: DatasetTrainConfig, tokenizer: MeshVQVAE | None = None) -> Path:
    """Run (or resume) training on ``cfg.data``; evaluate the final model on the held-out people and write
    ``final/metrics.json``. Returns ``out_dir/final`` (or the ``stop_at`` checkpoint)."""
    kinds = check_kinds(tuple(cfg.kinds or ("image",)))
    if not cfg.data or not Path(cfg.data).is_dir():
        raise FileNotFoundError(f"dataset folder not found: {cfg.data!r} (docs/dataset.md)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.tokenizer)
    check_tokenizer_body(cfg, tokenizer)
    reader_cfg = ReaderConfig(crop_size=cfg.image_size, seed=cfg.seed)
    assets = BodyAssets.for_tokenizer(tokenizer)
    reader = DatasetReader(cfg.data, reader_cfg, vertex_flip=mirror_permutation(metrics.center(assets.template)))
    needs_params = any(r.vertices is None and r.params is not None for r in reader.records)
    targets, regressor = make_target_maker(tokenizer, needs_params, BodySpec(cfg.body, cfg.model_path, cfg.gender),
                                           assets)
    train_rows, val_rows = split_indices(reader, cfg.train_split, cfg.val_split)
    check_run_config(cfg.out_dir, run_settings(cfg, reader))
    torch.manual_seed(cfg.seed)
    conditioning = {"image_backbone": cfg.backbone, "image_size": (cfg.image_size, cfg.image_size),
                    "backbone_weights": cfg.backbone_weights} if "image" in kinds else None
    overrides = {"head_dropout": cfg.head_dropout} if cfg.head_dropout is not None else {}
    model = build_mega(cfg.preset, tokenizer, kinds=kinds, conditioning=conditioning, **overrides)
    if cfg.init:
        report = load_pretrained(model, cfg.init)
        if env_rank() == 0:
            print(f"megaviewer-train: initialised {len(report.loaded)} tensors from {cfg.init}; "
                  f"{len(report.fresh)} new", flush=True)
    if env_rank() == 0:
        print(f"megaviewer-train: {len(train_rows)} training and {len(val_rows)} held-out people from {cfg.data}",
              flush=True)
    task = DatasetTask(model, reader, train_rows, targets, tokenizer, regressor, cfg)
    final = finish(train(task, cfg.loop_config()), tokenizer)
    if final.name == "final" and env_rank() == 0 and val_rows:
        data = build_dataset_eval_set(reader, val_rows, targets, kinds, cfg.eval_people)
        model.to("cpu")
        result = evaluate_on_dataset(model, tokenizer.to("cpu"), regressor, data, cfg.eval_q)
        result.update(data=str(cfg.data), held_out_people=len(data.vertices), training_people=len(train_rows))
        atomic_write_text(final / "metrics.json", json.dumps(result, indent=2))
        print(json.dumps({"held_out_people": result["held_out_people"], "deterministic": result["deterministic"],
                          f"min_of_{max(cfg.eval_q)}": result["min_of_q"][str(max(cfg.eval_q))]}, indent=2))
    return final
