"""Precomputed, Anny-free data of the working topology, shipped in ``resources/body/<name>.safetensors``.

Holds what inference and the app need without building Anny (which costs ~2 minutes cold):
working faces, rest template, the COCO-17 regressor fitted for the working mesh, and a fixed sparse
linear upsampling to the smooth display mesh (``display_idx``/``display_weights``: each display vertex is
an affine combination of nearby working vertices) with its faces. Built by ``scripts/build_body_assets.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from megaviewer.paths import body_assets_path


@dataclass
class BodyAssets:
    faces: torch.Tensor  # (F, 3) long, working topology
    template: torch.Tensor  # (V, 3) canonical rest mesh (mean shape), metres
    coco_regressor: torch.Tensor  # (17, V)
    display_faces: torch.Tensor  # (Fd, 3) long
    display_idx: torch.Tensor  # (Vd, K) long into working vertices
    display_weights: torch.Tensor  # (Vd, K), rows sum to 1

    @property
    def num_vertices(self) -> int:
        return int(self.template.shape[0])

    @property
    def num_display_vertices(self) -> int:
        return int(self.display_idx.shape[0])

    def upsample(self, vertices: torch.Tensor) -> torch.Tensor:
        """Working (..., V, 3) -> display (..., Vd, 3) vertices."""
        gathered = vertices[..., self.display_idx, :]  # (..., Vd, K, 3)
        return (gathered * self.display_weights.to(vertices.dtype)[..., None]).sum(dim=-2)

    def save(self, path: Path) -> None:
        from megaviewer.io.checkpoint import save_tensors

        save_tensors(path, {k: v.contiguous() for k, v in self.__dict__.items()})

    @classmethod
    def load(cls, name: str = "anny", path: Path | None = None) -> BodyAssets:
        from megaviewer.io.checkpoint import load_tensors

        path = Path(path) if path is not None else body_assets_path(name)
        if not path.exists():
            raise FileNotFoundError(f"body assets not found: {path} (run scripts/build_body_assets.py)")
        tensors = load_tensors(path)
        return cls(**{k: tensors[k] for k in cls.__dataclass_fields__})
