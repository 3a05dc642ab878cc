"""Carry a long training run from one machine to the next through a folder kept in the repository.

Why: a recipe of many hours runs over several working periods, possibly on a fresh machine each time, and
its run folders (``runs/``) are not versioned. :func:`snapshot` copies the latest complete checkpoint of a
run (weights, optimizer moments, trainer state; safetensors + JSON) into ``state_dir/<stage>/`` and keeps
only that one; :func:`restore` puts it back into an empty run folder, after which :func:`training.loop.train`
continues exactly where it stopped (batches and noise are functions of the step). Both write atomically:
a half-copied state is never taken for a checkpoint.

A stage that has finished (its checkpoint is at the stage's last step) takes no more optimizer steps: on resume
the loop only writes its ``final/``. Its optimizer moments are never read again, so the snapshot keeps them as
zeros of the same shapes (the loader still checks them), which git stores in almost no space; the weights, and so
everything that follows, stay bit-identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from megaviewer.io.atomic import atomic_write_text
from megaviewer.io.checkpoint import load_tensors, save_tensors
from training.loop import LAST_NAME, OPTIMIZER_NAME, TRAINER_STATE_NAME, find_last_checkpoint


def checkpoint_step(folder: Path) -> int:
    return int(json.loads((folder / TRAINER_STATE_NAME).read_text())["step"])


def is_finished(folder: Path) -> bool:
    """Whether a checkpoint is at its stage's last step (nothing more to train)."""
    state = json.loads((folder / TRAINER_STATE_NAME).read_text())
    total = state.get("loop_config", {}).get("total_steps")
    return total is not None and int(state["step"]) >= int(total)


def _copy_folder(src: Path, dest: Path, zero_moments: bool = False) -> None:
    """Copy ``src`` to ``dest`` through a temporary sibling and one rename; ``zero_moments`` writes the optimizer
    tensors as zeros (module docstring)."""
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    moments = tmp / OPTIMIZER_NAME
    if zero_moments and moments.exists():
        from safetensors import safe_open

        with safe_open(str(moments), framework="pt") as f:
            metadata = f.metadata()
        tensors = load_tensors(moments)
        save_tensors(moments, {k: v if k.endswith(".step") or k.startswith("group.") else torch.zeros_like(v)
                               for k, v in tensors.items()}, metadata)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def _point_at(root: Path, folder: Path) -> None:
    atomic_write_text(root / LAST_NAME, json.dumps({"folder": folder.name}))


def snapshot(run_dir: str | Path, state_dir: str | Path) -> Path | None:
    """Copy the latest checkpoint of ``run_dir`` into ``state_dir`` (replacing an older one); returns the copy,
    or ``None`` when the run has no checkpoint yet. A state newer than the run's is left alone."""
    last = find_last_checkpoint(run_dir)
    if last is None:
        return None
    state_dir = Path(state_dir)
    held = _held(state_dir)
    if held is not None and checkpoint_step(held) >= checkpoint_step(last):
        return held
    state_dir.mkdir(parents=True, exist_ok=True)
    dest = state_dir / last.name
    _copy_folder(last, dest, zero_moments=is_finished(last))
    _point_at(state_dir, dest)
    for old in state_dir.iterdir():
        if old.is_dir() and old.name != dest.name:
            shutil.rmtree(old)
    return dest


def _held(state_dir: Path) -> Path | None:
    """The checkpoint a state folder holds (``state_dir/last.json``), if any."""
    pointer = state_dir / LAST_NAME
    if not pointer.exists():
        return None
    folder = state_dir / json.loads(pointer.read_text())["folder"]
    return folder if folder.is_dir() else None


def restore(state_dir: str | Path, run_dir: str | Path) -> Path | None:
    """Put the state's checkpoint into ``run_dir`` when it is further along than the run's own (or the run has
    none); returns the restored folder, or ``None`` when nothing was restored."""
    held = _held(Path(state_dir))
    if held is None:
        return None
    last = find_last_checkpoint(run_dir)
    if last is not None and checkpoint_step(last) >= checkpoint_step(held):
        return None
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    dest = root / held.name
    _copy_folder(held, dest)
    _point_at(root, dest)
    return dest
