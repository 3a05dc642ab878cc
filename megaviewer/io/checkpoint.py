"""Checkpoints are a folder with ``model.safetensors`` + ``config.json`` (+ optional extras).

Why: pickle files execute code when loaded, so a model file passed between people must never be
unpickled. We read only safetensors (pure tensors) and JSON, check the config's ``kind``, and compare
every tensor's shape against the model built from that config before loading, naming any mismatch.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from megaviewer.io.atomic import atomic_path, atomic_write_text

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted or does not fit the model; the message names the problem."""


def _has_safetensors_header(path: Path, handle) -> bool:
    """Whether the open file ``handle`` (at its first byte) starts as a safetensors file does: a little-endian u64
    length, then that many bytes of JSON object within the file. Checked first because the pickle and zip
    signatures below can occur by chance in a safetensors file (a header of 640 bytes starts with
    b"\\x80\\x02"; tensor bytes can hold a zip directory)."""
    head = handle.read(8)
    if len(head) < 8:
        return False
    size = int.from_bytes(head, "little")
    if not 2 <= size <= min(path.stat().st_size - 8, 100_000_000):
        return False
    try:
        return isinstance(json.loads(handle.read(size)), dict)
    except (UnicodeDecodeError, ValueError):
        return False


def _refuse_pickle(path: Path) -> None:
    if not path.is_file():
        return
    with open(path, "rb") as handle:
        if _has_safetensors_header(path, handle):
            return
        handle.seek(0)
        head = handle.read(8)
    if head.startswith(_PICKLE_MAGIC) or zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} looks like a pickle/PyTorch .pt file; megaviewer only loads .safetensors + JSON "
            "checkpoints and never unpickles (pickle can run arbitrary code)."
        )


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors as safetensors, atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def to_half(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors as float16, others unchanged: how the shipped default's weights are stored, which halves
    the bytes every clone of the repository carries for each release of them. :func:`load_tensors` reads them back
    as float32, so a model loaded from them computes exactly as one whose float32 weights were rounded this way."""
    return {name: value.half() if value.is_floating_point() else value for name, value in tensors.items()}


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; refuse pickles and name corrupt files. Half-precision floating tensors (shipped
    weights, :func:`to_half`) come back as float32, the precision every model here computes in."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    _refuse_pickle(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from exc
    return {name: value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
            for name, value in tensors.items()}


def save_checkpoint(folder: str | Path, module_or_tensors: nn.Module | dict[str, torch.Tensor],
                    config: dict[str, Any], extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``config.json`` then ``model.safetensors`` (each atomically) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = module_or_tensors.state_dict() if isinstance(module_or_tensors, nn.Module) else module_or_tensors
    tensors = dict(tensors)
    if extra:
        tensors.update(extra)
    atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True))
    save_tensors(folder / WEIGHTS_NAME, tensors)
    return folder


def load_config(folder: str | Path, expected_kind: str | None = None) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if folder.is_file():
        _refuse_pickle(folder)  # a .pt/.bin given for the folder: say "pickle", and never open it further
        raise CheckpointError(f"{folder} is a file; pass the checkpoint folder holding {WEIGHTS_NAME} + {CONFIG_NAME}")
    if not path.exists():
        raise CheckpointError(f"{folder} has no {CONFIG_NAME}; expected a megaviewer checkpoint folder")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    if expected_kind is not None and config.get("kind") != expected_kind:
        raise CheckpointError(f"{folder} holds a {config.get('kind')!r} checkpoint, expected {expected_kind!r}")
    return config


def load_state_into(module: nn.Module, tensors: dict[str, torch.Tensor], source: str | Path,
                    strict: bool = True) -> None:
    """Load tensors into ``module`` after checking names and shapes; mismatches are named, not guessed."""
    own = module.state_dict()
    problems = []
    for name, value in tensors.items():
        if name in own and tuple(own[name].shape) != tuple(value.shape):
            problems.append(f"{name}: checkpoint {tuple(value.shape)} vs model {tuple(own[name].shape)}")
    if strict:
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        if missing:
            problems.append(f"missing tensors: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            problems.append(f"unexpected tensors: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
    if problems:
        raise CheckpointError(f"{source} does not match the model built from its config: " + "; ".join(problems))
    module.load_state_dict({k: v for k, v in tensors.items() if k in own}, strict=strict)


def load_checkpoint_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    folder = Path(folder)
    if folder.is_file():
        _refuse_pickle(folder)
        raise CheckpointError(f"{folder} is a file; pass the checkpoint folder holding {WEIGHTS_NAME} + {CONFIG_NAME}")
    return load_tensors(folder / WEIGHTS_NAME)
