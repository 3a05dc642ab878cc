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
    """Random canonical meshes of a body (default Anny) drawn from its pose prior
    (:func:`training.data.priors.make_prior`: :class:`~megaviewer.body.pose_prior.PosePrior` for Anny,
    :class:`~megaviewer.body.smpl_pose_prior.SmplPosePrior` for SMPL / SMPL-H)."""

    def __init__(self, body=None, prior=None, prior_kind: str = "keyposes"):
        """``prior`` wins over ``prior_kind`` (a name of :data:`training.data.priors.PRIOR_KINDS`)."""
        from megaviewer.body.anny_body import AnnyBody
        from training.data.priors import make_prior

        self.body = body if body is not None else AnnyBody()
        self.prior = prior if prior is not None else make_prior(self.body, prior_kind)

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


class ChunkedMeshStream:
    """Training meshes generated in bulk chunks and each drawn a few times, instead of posed per step.

    Why: posing Anny has a large fixed cost per call (~0.1 s for a batch of 16 on 2 cores, most of a
    tokenizer step) and a small cost per mesh, so a chunk of thousands of meshes costs a few milliseconds
    per mesh. Chunk ``k`` is generated from a seed derived from ``(seed, k)`` and serves the steps
    ``[k * steps_per_chunk, (k + 1) * steps_per_chunk)``, each step drawing its rows with the step's
    generator: batches stay a pure function of the step, so runs resume exactly.
    """

    def __init__(self, meshes: SyntheticMeshes, chunk_size: int, steps_per_chunk: int, seed: int = 0,
                 pose_batch: int = 256):
        if chunk_size < 1 or steps_per_chunk < 1:
            raise ValueError("chunk_size and steps_per_chunk must be positive")
        self.meshes = meshes
        self.chunk_size = chunk_size
        self.steps_per_chunk = steps_per_chunk
        self.seed = seed
        self.pose_batch = pose_batch
        self._chunk_id: int | None = None
        self._chunk: torch.Tensor | None = None

    def chunk(self, chunk_id: int) -> torch.Tensor:
        """The canonical meshes (chunk_size, V, 3) of chunk ``chunk_id`` (cached while it is in use)."""
        if chunk_id != self._chunk_id:
            from training.loop import step_seed

            self._chunk = None  # free the old chunk before posing the new one
            generator = torch.Generator().manual_seed(step_seed(self.seed, chunk_id, 0, stream=7))
            parts = [self.meshes.sample(min(self.pose_batch, self.chunk_size - i), generator).vertices
                     for i in range(0, self.chunk_size, self.pose_batch)]
            self._chunk, self._chunk_id = torch.cat(parts), chunk_id
        return self._chunk

    def batch(self, step: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        chunk = self.chunk(step // self.steps_per_chunk)
        return chunk[torch.randint(0, self.chunk_size, (batch_size,), generator=generator)]
