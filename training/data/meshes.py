"""Canonical meshes on the fly from the pose prior, and fixed held-out sets for evaluation.

Batches are a pure function of the generator the training loop passes in (seeded by step), so runs
resume exactly. Held-out sets use a seed far from any training stream, so the tokenizer never sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from megaviewer.body.base import BodyParams

HELDOUT_SEED = 7_000_003


@dataclass
class MeshBatch:
    vertices: torch.Tensor  # (B, V, 3) canonical
    params: BodyParams


class SyntheticMeshes:
    """Random canonical Anny meshes drawn from :class:`~megaviewer.body.pose_prior.PosePrior`."""

    def __init__(self, body=None, prior=None):
        from megaviewer.body.anny_body import AnnyBody
        from megaviewer.body.pose_prior import PosePrior

        self.body = body if body is not None else AnnyBody()
        self.prior = prior if prior is not None else PosePrior(self.body)

    def sample(self, batch: int, generator: torch.Generator) -> MeshBatch:
        params = self.prior.sample(batch, generator)
        with torch.no_grad():
            vertices = self.body.canonical_vertices(params.pose, params.shape).float()
        return MeshBatch(vertices, params)

    def heldout(self, count: int, seed: int = HELDOUT_SEED, chunk: int = 256) -> MeshBatch:
        """A fixed evaluation set (same seed -> same meshes), generated in chunks to bound memory."""
        generator = torch.Generator().manual_seed(seed)
        parts = [self.sample(min(chunk, count - i), generator) for i in range(0, count, chunk)]
        params = BodyParams(*(torch.cat([getattr(p.params, f) for p in parts])
                              for f in ("pose", "shape", "global_orient")))
        return MeshBatch(torch.cat([p.vertices for p in parts]), params)
