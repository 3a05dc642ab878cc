"""The generic training loop of every trainer: AdamW, LR schedule, logging, resumable checkpoints, DDP.

Why it is built this way:

* **Exact resume.** Everything random in a step is derived from ``(seed, step, rank)``: the generator handed
  to :meth:`TrainTask.training_step` and the global torch RNG (dropout) are reseeded every step, and the
  learning rate is a pure function of the step. A checkpoint therefore only needs the weights, the AdamW
  moments and the step number, and a run killed at any moment (even ``SIGKILL`` mid-write) and restarted
  ends bit-identical to an uninterrupted one on deterministic hardware/ops.
* **Crash-safe checkpoints.** ``out_dir/checkpoints/step-{N:08d}/`` holds ``model.safetensors`` +
  ``config.json`` (a normal megaviewer checkpoint), ``optimizer.safetensors``, optional
  ``extra_state.safetensors`` and ``trainer_state.json``; each file is written atomically. The folder only
  becomes *the* checkpoint when ``checkpoints/last.json`` is atomically replaced after all its files exist,
  and older folders are pruned only after that, so a kill leaves either the old or the new checkpoint.
* **Never pickle.** Only safetensors + JSON are written or read.
* **Refuse silent mismatches.** Resuming with a different task config (fingerprinted) raises
  :class:`~megaviewer.io.checkpoint.CheckpointError` naming the changed keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from megaviewer.io.atomic import atomic_write_text
from megaviewer.io.checkpoint import (
    WEIGHTS_NAME,
    CheckpointError,
    load_config,
    load_state_into,
    load_tensors,
    save_checkpoint,
    save_tensors,
)
from training.distributed import DistInfo, barrier, cleanup_distributed, env_rank, init_distributed
from training.optim import SCHEDULES, load_optimizer_tensors, lr_at, make_optimizer, optimizer_tensors, set_lr

OPTIMIZER_NAME = "optimizer.safetensors"
RUN_CONFIG_NAME = "run_config.json"
EXTRA_STATE_NAME = "extra_state.safetensors"
TRAINER_STATE_NAME = "trainer_state.json"
LAST_NAME = "last.json"
TRAINING_SUMMARY_NAME = "training.json"  # in final/: steps and wall-clock seconds over all invocations
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{8,})$")
# Loop settings that do not change the maths; a resume may change them without a warning.
_COSMETIC = {"out_dir", "progress", "log_every", "ckpt_every", "keep_last", "stop_at"}


@dataclass
class LoopConfig:
    """Settings of one training run (saved in every ``trainer_state.json``).

    ``batch_size`` is the per-rank batch size; the loop does not build batches (the task does, from the
    step's generator) but records it and logs samples/s. ``stop_at`` ends this invocation after that many
    steps, with a checkpoint and without ``final/`` (for preemptible job slots; the next ``train()`` call
    continues). ``find_unused_parameters`` is passed to DDP for models with branches unused in some steps.
    """

    out_dir: str
    total_steps: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 1.0
    log_every: int = 50
    ckpt_every: int = 500
    keep_last: int = 2
    seed: int = 0
    progress: bool = True
    stop_at: int | None = None
    find_unused_parameters: bool = False
    # learning-rate multipliers by parameter name (e.g. the freshly initialised conditioners of a model warm-started
    # from a pre-trained one); the rest train at the schedule's rate
    lr_scale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out_dir = str(self.out_dir)
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        for name in ("total_steps", "batch_size", "log_every", "ckpt_every", "keep_last"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"LoopConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"LoopConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"LoopConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"LoopConfig.grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.stop_at is not None and self.stop_at < 1:
            raise ValueError(f"LoopConfig.stop_at must be >= 1 or None, got {self.stop_at}")
        bad = {name: scale for name, scale in self.lr_scale.items() if not scale > 0}
        if bad:
            raise ValueError(f"LoopConfig.lr_scale factors must be > 0, got {bad}")


class TrainTask(Protocol):
    """What a trainer supplies to :func:`train`.

    ``training_step`` builds its batch from ``generator`` (a CPU generator seeded from ``(seed, step, rank)``;
    move the batch to ``next(model.parameters()).device``), so batches are a pure function of the step.
    ``model`` may be the DDP wrapper: call it for the forward pass so gradients are synchronised.

    Optional hooks, looked up with ``getattr``:

    * ``after_step(step, generator)``: after each optimizer step (e.g. a quantiser's dead-code restart).
      The generator is the same on every rank; data-dependent choices must be broadcast by the task.
    * ``extra_state() -> dict[str, Tensor]`` / ``load_extra_state(tensors)``: training state that is not in
      the model's ``state_dict`` (saved as ``extra_state.safetensors``).
    """

    model: nn.Module

    def config_dict(self) -> dict[str, Any]: ...

    def training_step(self, model: nn.Module, step: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]: ...


_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def step_seed(seed: int, step: int, rank: int, stream: int = 0) -> int:
    """A 63-bit seed mixing ``(seed, step, rank, stream)``; nearby inputs give unrelated streams."""
    h = _splitmix64(seed & _M64)
    for value in (step, rank, stream):
        h = _splitmix64(h ^ (value & _M64))
    return h >> 1


def task_fingerprint(config: dict[str, Any]) -> str:
    """SHA-256 of the task config as canonical JSON; equal configs give equal fingerprints."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def checkpoint_dir(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"step-{step:08d}"


def training_record(folder: str | Path) -> tuple[int | None, float | None]:
    """(steps, wall-clock training seconds over all invocations) of a ``final/`` folder or a checkpoint folder;
    ``None`` for what the folder does not record."""
    folder = Path(folder)
    for name in (TRAINING_SUMMARY_NAME, TRAINER_STATE_NAME):
        path = folder / name
        if path.exists():
            data = json.loads(path.read_text())
            return data.get("steps", data.get("step")), data.get("train_seconds")
    return None, None


def find_last_checkpoint(out_dir: str | Path) -> Path | None:
    """The folder ``checkpoints/last.json`` points at, or ``None`` when no checkpoint was completed."""
    pointer = Path(out_dir) / "checkpoints" / LAST_NAME
    if not pointer.exists():
        return None
    try:
        folder = pointer.parent / json.loads(pointer.read_text())["folder"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{pointer} is not a valid checkpoint pointer: {exc}") from exc
    if not folder.is_dir():
        raise CheckpointError(f"{pointer} points at {folder}, which does not exist; "
                              "restore it or delete the pointer to start over")
    return folder


def check_run_config(out_dir: str | Path, settings: dict[str, Any]) -> None:
    """Refuse to resume ``out_dir`` with different data/loss settings; record them on a fresh run.

    Why: the loop's fingerprint covers the model config only (``final/config.json`` must stay a plain model
    config), so a resume with another pool, prior, masking schedule or loss weight would otherwise continue
    silently. Every stage (tokenizer, decoder fine-tune, lifter, MEGA) passes the settings it depends on.
    """
    out_dir = Path(out_dir)
    path = out_dir / RUN_CONFIG_NAME
    current = json.loads(json.dumps(settings, default=str))
    if path.exists() and find_last_checkpoint(out_dir) is not None:
        saved = json.loads(path.read_text())
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if changed:
            diff = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:8])
            raise CheckpointError(f"cannot resume {out_dir}: it was trained with other settings ({diff}). "
                                  "Use a new --out folder, or restore the original settings.")
        return
    if env_rank() == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(current, indent=2, sort_keys=True))


def _normalised(config: LoopConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config)))


def _fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (power loss, not just a killed process). Best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stray_temps(folder: Path) -> None:
    """Drop temp files a killed writer left behind (atomic writes use hidden ``.name.*`` files)."""
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.startswith(".") and entry.is_file():
                entry.unlink(missing_ok=True)


def _save_training_checkpoint(task: TrainTask, model: nn.Module, optimizer: torch.optim.Optimizer,
                              cfg: LoopConfig, step: int, fingerprint: str, info: DistInfo,
                              train_seconds: float = 0.0) -> Path:
    root = Path(cfg.out_dir) / "checkpoints"
    folder = checkpoint_dir(cfg.out_dir, step)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stray_temps(folder)
    save_checkpoint(folder, model, task.config_dict())
    tensors, metadata = optimizer_tensors(optimizer)
    save_tensors(folder / OPTIMIZER_NAME, tensors, metadata)
    extra_state = getattr(task, "extra_state", None)
    if extra_state is not None:
        save_tensors(folder / EXTRA_STATE_NAME, dict(extra_state()))
    state = {"format": FORMAT_VERSION, "step": step, "task_fingerprint": fingerprint,
             "world_size": info.world_size, "loop_config": _normalised(cfg), "train_seconds": train_seconds}
    atomic_write_text(folder / TRAINER_STATE_NAME, json.dumps(state, indent=2, sort_keys=True))
    _fsync_dir(folder)
    # The commit point: only now does this folder become the one a restart resumes from.
    atomic_write_text(root / LAST_NAME, json.dumps({"step": step, "folder": folder.name}))
    _fsync_dir(root)
    _prune(root, cfg.keep_last, step)
    return folder


def _prune(root: Path, keep_last: int, newest: int) -> None:
    """Delete step folders older than the ``keep_last`` newest ones up to ``newest`` (the committed one)."""
    steps = sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name)))
    older = [s for s in steps if s <= newest]
    for step in older[:-keep_last]:
        shutil.rmtree(root / f"step-{step:08d}", ignore_errors=True)


def _config_diff(saved: dict[str, Any], current: dict[str, Any]) -> str:
    keys = sorted(set(saved) | set(current))
    changed = [f"{k}: {saved.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}"
               for k in keys if saved.get(k, "<absent>") != current.get(k, "<absent>")]
    return "; ".join(changed[:10]) + (" ..." if len(changed) > 10 else "")


def _resume(task: TrainTask, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: LoopConfig,
            fingerprint: str, info: DistInfo) -> tuple[int, float]:
    """Restore the last committed checkpoint into model, optimizer and task; return its step (0 if none)
    and the wall-clock seconds of training it took, summed over every invocation that led to it."""
    folder = find_last_checkpoint(cfg.out_dir)
    if folder is None:
        return 0, 0.0
    state_path = folder / TRAINER_STATE_NAME
    try:
        state = json.loads(state_path.read_text())
        step = int(state["step"])
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{state_path} is missing or invalid: {exc}") from exc
    if state.get("task_fingerprint") != fingerprint:
        current = task.config_dict()
        try:
            diff = _config_diff(load_config(folder), current)
        except CheckpointError:
            diff = ""
        raise CheckpointError(
            f"cannot resume from {folder}: it was trained with a different task config "
            f"({diff or 'fingerprint ' + str(state.get('task_fingerprint')) + ' vs ' + fingerprint}). "
            f"Use a new out_dir for the new config, or restore the original config to continue.")
    load_state_into(model, load_tensors(folder / WEIGHTS_NAME), folder / WEIGHTS_NAME)
    load_optimizer_tensors(optimizer, load_tensors(folder / OPTIMIZER_NAME), str(folder / OPTIMIZER_NAME))
    loader = getattr(task, "load_extra_state", None)
    if loader is not None:
        extra_path = folder / EXTRA_STATE_NAME
        if not extra_path.exists():
            raise CheckpointError(f"{folder} lacks {EXTRA_STATE_NAME}, yet the task defines load_extra_state")
        loader(load_tensors(extra_path))
    if info.is_main:
        # a setting that a checkpoint predates was at its default then
        defaults = _normalised(LoopConfig(out_dir="", total_steps=1, batch_size=1))
        saved_cfg, now_cfg = {**defaults, **state.get("loop_config", {})}, _normalised(cfg)
        changed = {k for k in set(saved_cfg) | set(now_cfg) if k not in _COSMETIC
                   and saved_cfg.get(k) != now_cfg.get(k)}
        if changed:
            diff = _config_diff({k: saved_cfg.get(k) for k in changed}, {k: now_cfg.get(k) for k in changed})
            warnings.warn(f"resuming {folder} with a changed loop config ({diff}); the result will differ "
                          "from an uninterrupted run", stacklevel=4)
        if state.get("world_size", info.world_size) != info.world_size:
            warnings.warn(f"resuming {folder} (world size {state.get('world_size')}) with world size "
                          f"{info.world_size}; batches differ from an uninterrupted run", stacklevel=4)
    return step, float(state.get("train_seconds", 0.0))


def train(task: TrainTask, cfg: LoopConfig) -> Path:
    """Train ``task.model`` for ``cfg.total_steps`` optimizer steps, resuming from ``out_dir`` if possible.

    Returns ``out_dir/final`` (``model.safetensors`` + ``config.json``), or with ``cfg.stop_at`` before the
    end, the checkpoint folder of that step. Under ``torchrun`` the model is wrapped in DDP and only rank 0
    writes files; a process group this call creates is destroyed before it returns.
    """
    import torch.distributed as dist

    owns_group = not (dist.is_available() and dist.is_initialized())
    info = init_distributed()
    try:
        return _train(task, cfg, info)
    finally:
        if owns_group:
            cleanup_distributed()


def _train(task: TrainTask, cfg: LoopConfig, info: DistInfo) -> Path:
    out_dir = Path(cfg.out_dir)
    raw_model = task.model.to(info.device)
    config = task.config_dict()
    fingerprint = task_fingerprint(config)
    optimizer = make_optimizer(raw_model, cfg)
    start, seconds_before = _resume(task, raw_model, optimizer, cfg, fingerprint, info)
    invocation_start = time.perf_counter()
    barrier(info)  # every rank has read the checkpoint before rank 0 may write or prune any
    end = cfg.total_steps if cfg.stop_at is None else min(cfg.total_steps, cfg.stop_at)
    if start > cfg.total_steps and info.is_main:
        warnings.warn(f"{out_dir} is already at step {start} > total_steps={cfg.total_steps}", stacklevel=3)
    model: nn.Module = raw_model
    if info.distributed and start < end:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            raw_model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=cfg.find_unused_parameters)
    writer, bar = None, None
    if info.is_main and start < end:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        # purge_step drops events a killed run logged after its last checkpoint, so curves do not double.
        writer = SummaryWriter(str(out_dir / "tb"), purge_step=start if start > 0 else None)
        if cfg.progress:
            bar = tqdm(total=end, initial=start, desc=out_dir.name, dynamic_ncols=True)
    after_step = getattr(task, "after_step", None)
    last_folder = find_last_checkpoint(out_dir)
    loss_sum = torch.zeros((), device=info.device, dtype=torch.float64)
    norm_sum = torch.zeros((), device=info.device, dtype=torch.float64)
    log_sums: dict[str, float] = {}
    window, window_start = 0, time.perf_counter()
    try:
        for step in range(start, end):
            generator = torch.Generator().manual_seed(step_seed(cfg.seed, step, info.rank, 0))
            torch.manual_seed(step_seed(cfg.seed, step, info.rank, 1))  # dropout & co. follow the step too
            lr = lr_at(step, cfg)
            set_lr(optimizer, lr)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss, logs = task.training_step(model, step, generator)
            loss.backward()
            if cfg.grad_clip is not None:
                norm_sum += torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip).double()
            optimizer.step()
            if after_step is not None:
                after_step(step, torch.Generator().manual_seed(step_seed(cfg.seed, step, 0, 2)))
            done = step + 1
            loss_sum += loss.detach().double()
            for key, value in logs.items():
                log_sums[key] = log_sums.get(key, 0.0) + float(value)
            window += 1
            if bar is not None:
                bar.update(1)
            if done % cfg.log_every == 0 or done == end:
                mean_loss = loss_sum.item() / window
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(
                        f"loss became {mean_loss} by step {done}; the last checkpoint is intact "
                        f"({last_folder}); lower lr or raise warmup_steps and resume")
                if info.is_main:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    scalars = {"loss": mean_loss, "lr": lr, "steps_per_s": window / elapsed,
                               "samples_per_s": window * cfg.batch_size * info.world_size / elapsed}
                    if cfg.grad_clip is not None:
                        scalars["grad_norm"] = norm_sum.item() / window
                    scalars.update({k: v / window for k, v in log_sums.items()})
                    for key, value in scalars.items():
                        writer.add_scalar(f"train/{key}", value, done)
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean_loss:.4g}", lr=f"{lr:.2e}")
                loss_sum.zero_()
                norm_sum.zero_()
                log_sums.clear()
                window, window_start = 0, time.perf_counter()
            if done % cfg.ckpt_every == 0 or done == end:
                if info.is_main:
                    seconds = seconds_before + time.perf_counter() - invocation_start
                    _save_training_checkpoint(task, raw_model, optimizer, cfg, done, fingerprint, info, seconds)
                    writer.flush()
                barrier(info)
                last_folder = checkpoint_dir(out_dir, done)
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    if end < cfg.total_steps:
        return last_folder if last_folder is not None else checkpoint_dir(out_dir, end)
    final = out_dir / "final"
    if info.is_main:
        final.mkdir(parents=True, exist_ok=True)
        _remove_stray_temps(final)
        save_checkpoint(final, raw_model, config)
        last = find_last_checkpoint(out_dir)
        seconds = json.loads((last / TRAINER_STATE_NAME).read_text()).get("train_seconds") if last else None
        atomic_write_text(final / TRAINING_SUMMARY_NAME,
                          json.dumps({"steps": cfg.total_steps, "train_seconds": seconds}, indent=2))
    barrier(info)
    return final
