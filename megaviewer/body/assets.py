"""Precomputed data of the working topology: what inference and the app need without the body model.

Holds working faces, rest template, the COCO-17 regressor of the working mesh, and a fixed sparse linear
upsampling to the smooth display mesh (``display_idx``/``display_weights``: each display vertex is an affine
combination of nearby working vertices) with its faces.

Where they come from:

* Anny: shipped in ``resources/body/anny.safetensors`` (``scripts/build_body_assets.py``), so inference never
  builds Anny (which costs ~2 minutes cold).
* A body built from a user's own model file (SMPL / SMPL-H): :meth:`BodyAssets.from_body`, written as
  ``body.safetensors`` into the tokenizer checkpoint folder trained on it (display = the working mesh itself).
  Such a file holds data derived from the user's licensed model file (faces, rest mesh, regressor), so it
  lives only in the user's own run folders and is never shipped; :meth:`BodyAssets.for_tokenizer` finds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from megaviewer.paths import body_assets_path

BODY_FILE = "body.safetensors"
"""Name of the topology data inside a tokenizer checkpoint folder of a body that is not shipped."""


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

    def save(self, path: Path, metadata: dict[str, str] | None = None) -> None:
        """Write the tensors atomically; ``metadata``: strings kept in the file's header (provenance)."""
        from megaviewer.io.checkpoint import save_tensors

        save_tensors(path, {k: v.contiguous() for k, v in self.__dict__.items()}, metadata=metadata)

    @classmethod
    def from_body(cls, body) -> BodyAssets:
        """The assets of any :class:`~megaviewer.body.base.BodyModel`'s own mesh: its faces, its centred rest
        mesh (zero pose, default shape) and its COCO-17 regressor; the display mesh is the working mesh itself
        (identity upsampling), since such bodies come without a finer companion topology."""
        zero = body.zero_params(1)
        with torch.no_grad():
            rest = body.posed_vertices(zero.pose, zero.shape)[0].float()
        faces = body.faces.long().clone()
        count = int(rest.shape[0])
        if tuple(body.coco_regressor.shape) != (17, count):
            raise ValueError(f"{body.name}: COCO regressor of shape {tuple(body.coco_regressor.shape)} for a mesh "
                             f"of {count} vertices")
        return cls(faces=faces, template=rest - rest.mean(dim=0), coco_regressor=body.coco_regressor.float().clone(),
                   display_faces=faces.clone(), display_idx=torch.arange(count)[:, None],
                   display_weights=torch.ones(count, 1))

    @classmethod
    def for_tokenizer(cls, tokenizer) -> BodyAssets:
        """The assets of the topology ``tokenizer`` encodes: the ``body.safetensors`` of the folder it was loaded
        from when there is one (bodies built from a user's model file), else the shipped
        ``resources/body/<body>.safetensors``. Checked against the tokenizer's vertex count."""
        body = tokenizer.config.body
        folder = getattr(tokenizer, "source_dir", None)
        local = Path(folder) / BODY_FILE if folder is not None else None
        if local is not None and local.exists():
            assets = cls.load(body, local)
        elif body_assets_path(body).exists():
            assets = cls.load(body)
        else:
            where = f"the tokenizer folder {folder}" if folder is not None else "the tokenizer's folder"
            raise FileNotFoundError(
                f"the tokenizer encodes the {body!r} body, whose topology data ({BODY_FILE}) is neither in "
                f"{where} nor shipped in {body_assets_path(body).parent}; load the tokenizer from the checkpoint "
                "folder 'megaviewer-train tokenizer --body ...' wrote (it holds that file)")
        if assets.num_vertices != tokenizer.num_vertices:
            raise ValueError(f"body data of {body!r} has {assets.num_vertices} vertices but the tokenizer encodes "
                             f"{tokenizer.num_vertices}")
        return assets

    @classmethod
    def load(cls, name: str = "anny", path: Path | None = None) -> BodyAssets:
        from megaviewer.io.checkpoint import load_tensors

        path = Path(path) if path is not None else body_assets_path(name)
        if not path.exists():
            hint = "run scripts/build_body_assets.py" if name == "anny" else "written by 'megaviewer-train tokenizer'"
            raise FileNotFoundError(f"body assets not found: {path} ({hint})")
        tensors = load_tensors(path)
        return cls(**{k: tensors[k] for k in cls.__dataclass_fields__})
