"""Process-group setup for single-process and ``torchrun`` (DDP) training.

Why a tiny wrapper: every trainer needs the same four facts (rank, world size, local rank, device) and the
same rules (gloo on CPU, nccl on CUDA, only rank 0 writes files, barriers around checkpoints). A plain
``python train.py`` run is world size 1 with no process group at all, so nothing here costs anything then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job; ``device`` is ``cuda:{local_rank}`` when CUDA exists, else CPU."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 is the only process that writes files, logs or shows a progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from exc


def env_rank() -> int:
    """This process's rank from torchrun's ``RANK`` (0 when run alone): readable before, or without, a process
    group, e.g. to let only rank 0 write a file."""
    return _env_int("RANK", 0)


def init_distributed() -> DistInfo:
    """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and join the process group when world size > 1.

    Reuses a process group the caller already initialised. Backend: nccl when CUDA is available, gloo
    otherwise (gloo is what CI and laptops have).
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                **kwargs)
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def barrier(info: DistInfo) -> None:
    """Wait for every rank; a no-op in a single-process run."""
    if info.distributed and dist.is_initialized():
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def cleanup_distributed() -> None:
    """Leave the process group (if any) so the process can exit cleanly and tests can start another."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
