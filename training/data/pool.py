"""A pre-computed pool of tokenised synthetic meshes for MEGA training.

Why: posing Anny and tokenising costs ~2 ms per mesh on a CPU, far too much to redo for every training
sample. A pool of ~100k meshes is built once (``MeshPool.build``) and training draws from it, with fresh
cameras, crops and keypoint noise each step (:mod:`training.data.observations`), so the 2D observations
never repeat even though the meshes do.

The pool keeps only what training needs: the token ids of the canonical mesh (the target), its COCO-17
joints (canonical and centroid-centred, to synthesise 2D keypoints) and the prior's global orientation in
the shared frame (the rotation target, after the camera flip). Tokens are tied to the exact tokenizer
that produced them, so the file records a tokenizer fingerprint and loading refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from megaviewer.io.atomic import atomic_write_text
from megaviewer.io.checkpoint import CheckpointError, load_tensors, save_tensors

POOL_KIND = "mesh_pool"


class PoolMismatchError(CheckpointError):
    """The pool on disk was built with a different tokenizer (or is malformed); the message says which."""


def tokenizer_fingerprint(tokenizer) -> str:
    """Identify a tokenizer by its mesh hierarchy and its codebook.

    The hierarchy fingerprint pins the mesh topology and pooling levels; hashing the codebook (shape and
    values) pins the learnt code vectors, which change with every training step. Two tokenizers with the
    same fingerprint give the same ids for the same mesh in practice (the encoder is trained jointly with
    the codebook, so a changed encoder with a bit-identical codebook does not happen).
    """
    codebook = tokenizer.quantizer.codebook.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(str(tuple(codebook.shape)).encode())
    digest.update(codebook.numpy().tobytes())
    return f"{tokenizer.config.hierarchy_fingerprint}:{digest.hexdigest()[:16]}"


@dataclass
class MeshPool:
    """P meshes: ``tokens`` (P, N) long, ``joints`` (P, 17, 3) canonical centroid-centred COCO joints,
    ``orient`` (P, 3, 3) shared-frame global orientation; plus provenance (seed, tokenizer fingerprint)."""

    tokens: torch.Tensor
    joints: torch.Tensor
    orient: torch.Tensor
    seed: int = -1
    tokenizer_id: str = ""

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def batch(self, indices: torch.Tensor | slice) -> MeshPool:
        """The sub-pool at ``indices`` (any index tensor, repeats allowed, or a slice)."""
        return MeshPool(self.tokens[indices], self.joints[indices], self.orient[indices], self.seed,
                        self.tokenizer_id)

    def to(self, device: torch.device | str) -> MeshPool:
        return MeshPool(self.tokens.to(device), self.joints.to(device), self.orient.to(device), self.seed,
                        self.tokenizer_id)

    # ---- building -----------------------------------------------------------------------------------
    @classmethod
    def build(cls, tokenizer, meshes, size: int, seed: int, chunk: int = 256, progress: bool = True
              ) -> MeshPool:
        """Sample ``size`` meshes from ``meshes`` (a :class:`~training.data.meshes.SyntheticMeshes`),
        tokenise them and regress their joints.

        Deterministic given ``(seed, chunk)``: one generator seeded with ``seed`` draws the chunks in
        order. The tokenizer runs on its own device in eval mode (its mode is restored afterwards).
        """
        if size <= 0 or chunk <= 0:
            raise ValueError(f"size and chunk must be positive, got size={size}, chunk={chunk}")
        from tqdm import tqdm

        generator = torch.Generator().manual_seed(seed)
        device = next(tokenizer.parameters()).device
        was_training = tokenizer.training
        tokenizer.eval()
        tokens, joints, orient = [], [], []
        try:
            with torch.inference_mode(), tqdm(total=size, desc="mesh pool", unit="mesh",
                                              disable=not progress) as bar:
                for start in range(0, size, chunk):
                    count = min(chunk, size - start)
                    batch = meshes.sample(count, generator)
                    vertices = batch.vertices.float()
                    tokens.append(tokenizer.encode(vertices.to(device)).cpu())
                    joints.append(meshes.body.joints(vertices).float().cpu())
                    orient.append(batch.params.global_orient.float().cpu())
                    bar.update(count)
        finally:
            tokenizer.train(was_training)
        return cls(torch.cat(tokens).long(), torch.cat(joints), torch.cat(orient), seed,
                   tokenizer_fingerprint(tokenizer))

    # ---- persistence --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (safetensors; tokens stored as int16) and ``path.json`` (size, seed, tokenizer)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if len(self) and int(self.tokens.max()) > torch.iinfo(torch.int16).max:
            raise ValueError("token ids exceed int16; the pool format stores int16 ids")
        save_tensors(path, {"tokens": self.tokens.to(torch.int16), "joints": self.joints.float(),
                            "orient": self.orient.float()})
        meta = {"kind": POOL_KIND, "size": len(self), "seed": self.seed, "tokenizer": self.tokenizer_id,
                "num_tokens": int(self.tokens.shape[1])}
        atomic_write_text(_meta_path(path), json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, tokenizer=None, expected_id: str | None = None) -> MeshPool:
        """Read a pool written by :meth:`save`.

        Pass the ``tokenizer`` training will decode with (or its :func:`tokenizer_fingerprint` as
        ``expected_id``): a pool built with any other tokenizer is refused, because its token ids mean
        nothing to this codebook and training on them would silently learn garbage.
        """
        path = Path(path)
        meta_path = _meta_path(path)
        if not meta_path.exists():
            raise PoolMismatchError(f"{path}: missing {meta_path.name}; not a mesh pool written by MeshPool.save")
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") != POOL_KIND:
            raise PoolMismatchError(f"{meta_path} describes a {meta.get('kind')!r}, not a {POOL_KIND!r}")
        if tokenizer is not None:
            expected_id = tokenizer_fingerprint(tokenizer)
        if expected_id is not None and meta.get("tokenizer") != expected_id:
            raise PoolMismatchError(
                f"{path} was built with tokenizer {meta.get('tokenizer')!r} but the current tokenizer is "
                f"{expected_id!r}; its token ids are meaningless for this tokenizer. Rebuild the pool with "
                "the tokenizer you train with.")
        tensors = load_tensors(path)
        pool = cls(tensors["tokens"].long(), tensors["joints"], tensors["orient"], int(meta.get("seed", -1)),
                   str(meta.get("tokenizer", "")))
        if len(pool) != meta.get("size") or pool.joints.shape[0] != len(pool) or pool.orient.shape[0] != len(pool):
            raise PoolMismatchError(f"{path}: tensor sizes disagree with {meta_path.name} (size {meta.get('size')})")
        return pool


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")
