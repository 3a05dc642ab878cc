"""Carry a long training run from one machine to the next through a folder kept in the repository.

Why: a recipe of many hours runs over several working periods, possibly on a fresh machine each time, and
its run folders (``runs/``) are not versioned. :func:`snapshot` copies the latest complete checkpoint of a
run (weights, optimizer moments, trainer state; safetensors + JSON) into ``state_dir/<stage>/`` and keeps
only that one; :func:`restore` puts it back into an empty run folder, after which :func:`training.loop.train`
continues exactly where it stopped (batches and noise are functions of the step). Both write atomically:
a half-copied state is never taken for a checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from megaviewer.io.atomic import atomic_write_text
from training.loop import LAST_NAME, TRAINER_STATE_NAME, find_last_checkpoint


def checkpoint_step(folder: Path) -> int:
    return int(json.loads((folder / TRAINER_STATE_NAME).read_text())["step"])


def _copy_folder(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` through a temporary sibling and one rename."""
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
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
    _copy_folder(last, dest)
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
