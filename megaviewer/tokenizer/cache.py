"""Build the hierarchy once per (topology, level sizes, region density) and cache it in ``resources/tokenizer/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from megaviewer.tokenizer.hierarchy import (
    MeshHierarchy,
    build_hierarchy,
    level_vertices_from_pool,
    mesh_fingerprint,
)


def hierarchy_cache_path(folder: Path, fingerprint: str) -> Path:
    return folder / f"hierarchy-{fingerprint}.safetensors"


def load_or_build_hierarchy(template: np.ndarray, faces: np.ndarray, level_sizes: list[int],
                            cache_folder: Path | None = None, dense_region: np.ndarray | None = None,
                            density: float = 1.0) -> MeshHierarchy:
    """Return the cached hierarchy for this mesh/layout, building (and caching) it if needed; ``dense_region`` and
    ``density`` as :func:`~megaviewer.tokenizer.hierarchy.build_hierarchy`."""
    from megaviewer.io.checkpoint import load_tensors, save_tensors
    from megaviewer.paths import tokenizer_dir

    folder = Path(cache_folder) if cache_folder is not None else tokenizer_dir()
    fingerprint = mesh_fingerprint(np.asarray(faces), int(template.shape[0]), list(level_sizes), density)
    path = hierarchy_cache_path(folder, fingerprint)
    if path.exists():
        arrays = {k: v.numpy() for k, v in load_tensors(path).items()}
        return MeshHierarchy.from_arrays(arrays, fingerprint)
    hierarchy = build_hierarchy(np.asarray(template), np.asarray(faces), list(level_sizes), dense_region, density)
    save_tensors(path, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in hierarchy.to_arrays().items()})
    return hierarchy


def hierarchy_from_state(tensors: dict[str, torch.Tensor], config) -> MeshHierarchy:
    """Rebuild the neighbour tables and level vertices from a checkpoint's buffers (checkpoints are
    self-contained)."""
    from megaviewer.io.checkpoint import CheckpointError

    sizes = list(config.level_sizes)
    levels = len(sizes)
    arrays: dict[str, np.ndarray] = {"level_sizes": np.asarray(sizes)}
    # Encoder layer order: [conv_l, pool_l] per level, then the last conv; decoder: conv, [unpool, conv]...
    enc = [f"encoder.{i}" for i in range(2 * (levels - 1) + 1)]
    dec_count = 1 + 2 * (levels - 1)
    dec = [f"decoder.{i}" for i in range(dec_count)]
    try:
        for level in range(levels - 1):
            arrays[f"conv{level}_index"] = tensors[f"{enc[2 * level]}.index"].numpy()
            arrays[f"conv{level}_mask"] = tensors[f"{enc[2 * level]}.mask"].numpy()
            arrays[f"pool{level}_index"] = tensors[f"{enc[2 * level + 1]}.index"].numpy()
            arrays[f"pool{level}_mask"] = tensors[f"{enc[2 * level + 1]}.mask"].numpy()
            unpool_layer = dec[1 + 2 * (levels - 2 - level)]
            arrays[f"unpool{level}_index"] = tensors[f"{unpool_layer}.index"].numpy()
            arrays[f"unpool{level}_mask"] = tensors[f"{unpool_layer}.mask"].numpy()
        arrays[f"conv{levels - 1}_index"] = tensors[f"{enc[-1]}.index"].numpy()
        arrays[f"conv{levels - 1}_mask"] = tensors[f"{enc[-1]}.mask"].numpy()
    except KeyError as exc:
        raise CheckpointError(f"tokenizer checkpoint lacks neighbour table {exc}; wrong checkpoint?") from exc
    pools = [arrays[f"pool{level}_index"] for level in range(levels - 1)]
    for i, ids in enumerate(level_vertices_from_pool(pools, sizes[0])):
        arrays[f"level{i}_vertices"] = ids
    return MeshHierarchy.from_arrays(arrays, config.hierarchy_fingerprint)
