"""AdamW construction, the learning-rate schedule, and optimizer state as plain tensors.

Why a pure-function schedule: ``lr_at(step, cfg)`` depends on nothing but the step, so a resumed run needs no
scheduler state and cannot drift from an uninterrupted one. Why tensors: checkpoints are safetensors + JSON
only (never pickle), so the AdamW state dict is flattened to ``state.{param_index}.{name}`` tensors.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from megaviewer.io.checkpoint import CheckpointError

if TYPE_CHECKING:  # pragma: no cover - only for type hints (avoids an import cycle with loop.py)
    from training.loop import LoopConfig

SCHEDULES = ("cosine", "constant")


def make_optimizer(model: nn.Module, cfg: LoopConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only, and the learning rate of the parameters that
    ``cfg.lr_scale`` names multiplied by their factor.

    Why: decaying biases, norm gains and 1-d embeddings-of-scale pulls them towards zero for no benefit; the
    usual split is "ndim >= 2 decays, the rest does not". The group order (decay, then no-decay; then the same
    for each scaled factor, in increasing order) and the parameter order inside each group follow
    ``model.named_parameters()``, so parameter indices in a saved optimizer state are stable for a given model
    and config (a run without scaled parameters has the two groups it always had).
    """
    unknown = set(cfg.lr_scale) - {name for name, _ in model.named_parameters()}
    if unknown:
        raise ValueError(f"LoopConfig.lr_scale names no parameter of the model: {sorted(unknown)[:4]}")
    buckets: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            buckets.setdefault((float(cfg.lr_scale.get(name, 1.0)), param.ndim >= 2), []).append(param)
    groups: list[dict[str, Any]] = []
    lr = lr_at(0, cfg)
    for scale in sorted({s for s, _ in buckets}, key=lambda s: (s != 1.0, s)):
        for decays in (True, False):
            params = buckets.get((scale, decays))
            if params:
                groups.append({"params": params, "weight_decay": cfg.weight_decay if decays else 0.0,
                               "lr_scale": scale, "lr": lr * scale})
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas))


def lr_at(step: int, cfg: LoopConfig) -> float:
    """Learning rate for the optimizer step with 0-based index ``step``.

    Linear warmup over ``warmup_steps`` (step 0 already gets ``lr / warmup_steps``: a zero-lr step would be
    wasted), then either constant or a cosine decay that reaches exactly ``min_lr_ratio * lr`` on the last
    step (``total_steps - 1``) and stays there.
    """
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; expected one of {SCHEDULES}")
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.total_steps - 1 - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's ``lr`` for every group, times the group's ``lr_scale`` (:func:`make_optimizer`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Flatten an optimizer state to ``(tensors, metadata)`` for :func:`save_tensors`.

    Tensors: ``state.{i}.{name}`` for every per-parameter state tensor (AdamW: ``step``, ``exp_avg``,
    ``exp_avg_sq``) and ``group.{g}.lr`` as a float64 scalar. Metadata: the group hyper-parameters as JSON,
    kept for inspection only (they are rebuilt from the loop config on load).
    """
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, per_param in state["state"].items():
        for name, value in per_param.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer state {index}.{name} is {type(value).__name__}, not a tensor")
            tensors[f"state.{index}.{name}"] = value
    groups = []
    for g, group in enumerate(state["param_groups"]):
        tensors[f"group.{g}.lr"] = torch.tensor(float(group["lr"]), dtype=torch.float64)
        groups.append({k: v for k, v in group.items() if k != "params" and _jsonable(v)} | {
            "num_params": len(group["params"])})
    return tensors, {"param_groups": json.dumps(groups, sort_keys=True)}


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           source: str) -> None:
    """Restore what :func:`optimizer_tensors` wrote into a freshly built optimizer for the same model.

    Every moment tensor's shape is checked against its parameter so a checkpoint from a different model is
    refused with a named mismatch instead of silently broadcasting.
    """
    current = optimizer.state_dict()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    group_lr: dict[int, float] = {}
    problems = []
    for key, value in tensors.items():
        parts = key.split(".")
        if parts[0] == "state" and len(parts) == 3 and parts[1].isdigit():
            index = int(parts[1])
            if index >= len(params):
                problems.append(f"{key}: no parameter {index} (the optimizer has {len(params)})")
                continue
            expected = tuple(params[index].shape)
            if parts[2] != "step" and tuple(value.shape) != expected:
                problems.append(f"{key}: shape {tuple(value.shape)} vs parameter {expected}")
            per_param.setdefault(index, {})[parts[2]] = value
        elif parts[0] == "group" and len(parts) == 3 and parts[1].isdigit() and parts[2] == "lr":
            group_lr[int(parts[1])] = float(value.item())
        else:
            problems.append(f"unexpected tensor {key}")
    if group_lr and max(group_lr) >= len(current["param_groups"]):
        problems.append(f"{len(group_lr)} parameter groups saved, the optimizer has "
                        f"{len(current['param_groups'])}")
    if problems:
        raise CheckpointError(f"{source} does not match this optimizer: " + "; ".join(problems[:8]))
    for g, lr in group_lr.items():
        current["param_groups"][g]["lr"] = lr
    optimizer.load_state_dict({"state": per_param, "param_groups": current["param_groups"]})


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True
