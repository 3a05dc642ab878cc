"""How many vertices each level of the tokenizer's hierarchy keeps, for a body topology of any size.

Anny's working mesh uses the hand-picked default of :class:`~megaviewer.tokenizer.model.TokenizerConfig`
(1,229 -> 400 -> 128 -> 54). For other topologies (a user's SMPL / SMPL-H file) the sizes follow from the
vertex count:

* the standard 6,890-vertex SMPL topology gets exactly the original Mesh-VQ-VAE's levels,
  6,890 -> 1,925 -> 400 -> 54 (docs/original-implementation.md §3.1), so a model trained on it has the
  original's 54 tokens;
* any other mesh (e.g. the small licence-free stand-in of :mod:`megaviewer.body.smpl_synthetic`) gets
  ``min(54, V // 16)`` tokens (at least 4) and intermediate levels spaced geometrically between V and the
  token count. Why 16 vertices per token: a token must stand for a region (a centre, its 1-ring and more),
  not for a single vertex, or the autoencoder degenerates into copying coordinates; 16 keeps at least two
  rings per region on coarse meshes while large meshes still reach the original's 54 tokens.
"""

from __future__ import annotations

SMPL_NUM_VERTICES = 6890
SMPL_LEVEL_SIZES: tuple[int, ...] = (6890, 1925, 400, 54)
MAX_TOKENS = 54
MIN_TOKENS = 4
VERTICES_PER_TOKEN = 16
NUM_LEVELS = 4


def level_sizes_for(num_vertices: int, num_levels: int = NUM_LEVELS) -> list[int]:
    """Strictly decreasing level sizes ``[V, ..., tokens]`` for a mesh of ``num_vertices`` vertices."""
    if num_levels < 2:
        raise ValueError(f"a hierarchy needs at least 2 levels, got {num_levels}")
    if num_vertices == SMPL_NUM_VERTICES and num_levels == len(SMPL_LEVEL_SIZES):
        return list(SMPL_LEVEL_SIZES)
    tokens = max(MIN_TOKENS, min(MAX_TOKENS, num_vertices // VERTICES_PER_TOKEN))
    if num_vertices < tokens + num_levels - 1 or num_vertices < MIN_TOKENS * 2:
        raise ValueError(f"a mesh of {num_vertices} vertices is too small for a {num_levels}-level tokenizer")
    ratio = (num_vertices / tokens) ** (1.0 / (num_levels - 1))
    sizes = [num_vertices] + [round(num_vertices / ratio ** i) for i in range(1, num_levels - 1)] + [tokens]
    for i in range(num_levels - 2, 0, -1):  # keep every level strictly between its neighbours
        sizes[i] = min(max(sizes[i], sizes[i + 1] + 1), sizes[i - 1] - 1)
    if any(b >= a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise ValueError(f"cannot space {num_levels} levels between {num_vertices} vertices and {tokens} tokens")
    return sizes
