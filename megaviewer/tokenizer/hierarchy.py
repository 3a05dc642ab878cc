"""Level hierarchy of a fixed mesh topology for the fully convolutional Mesh-VQ-VAE.

The original ships hand-made SMPL "connection matrices" (docs/original-implementation.md §3.1). We build the
same kind of structure for *any* template mesh, once, and cache it:

- level 0 is the mesh itself; each coarser level is a subset of the previous level's vertices chosen by
  farthest-point sampling on geodesic (edge-length Dijkstra) distance, so samples spread evenly over the
  surface rather than piling up on dense regions such as hands;
- optionally a region (the hands and feet) is given more of the coarse vertices: its connected parts are
  scaled up about their own centroids before the sampling (``density`` x), which stretches their geodesic
  distances and so their share of samples, while the tables stay those of the real mesh's connectivity.
  Where a token grid errs most (fingers, toes) it then has about twice the tokens, with the same token count;
- every fine vertex belongs to the region (graph Voronoi cell) of its nearest centre; two centres are
  neighbours when their regions touch, giving the coarse graph;
- conv neighbourhoods at a level: the vertex itself first, then its 1-ring;
- pool neighbourhood of a centre: the centre first, then its region plus the region's 1-ring border;
- unpool neighbourhood of a fine vertex: its own centre first, then the centres of the regions that
  its 1-ring reaches.

Neighbourhood tables are int arrays (out_vertices, max_neighbours) padded with ``num_in`` (an appended
all-zero row), plus a boolean mask, exactly like the original's padded files. Token order = the order of
the coarsest centres, sorted by their level-0 vertex id (as the original's 54 tokens).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra


@dataclass
class Neighbourhood:
    """Padded neighbour table: ``index`` (out, M) into the input vertices (pad = num_in), ``mask`` (out, M)."""

    index: np.ndarray
    mask: np.ndarray
    num_in: int

    @property
    def num_out(self) -> int:
        return int(self.index.shape[0])

    @property
    def mean_size(self) -> float:
        return float(self.mask.sum(1).mean())


@dataclass
class MeshHierarchy:
    """Per level: vertex ids into level 0, conv tables; between levels: pool and unpool tables."""

    level_sizes: list[int]
    level_vertices: list[np.ndarray]  # ids into level 0
    conv: list[Neighbourhood]  # one per level
    pool: list[Neighbourhood]  # level l -> l+1
    unpool: list[Neighbourhood]  # level l+1 -> l
    fingerprint: str

    def to_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"level_sizes": np.asarray(self.level_sizes, dtype=np.int64)}
        for i, ids in enumerate(self.level_vertices):
            out[f"level{i}_vertices"] = ids.astype(np.int64)
        for group in ("conv", "pool", "unpool"):
            for i, nb in enumerate(getattr(self, group)):
                out[f"{group}{i}_index"] = nb.index.astype(np.int64)
                out[f"{group}{i}_mask"] = nb.mask.astype(np.uint8)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], fingerprint: str) -> MeshHierarchy:
        sizes = [int(s) for s in arrays["level_sizes"]]
        levels = len(sizes)

        def table(group: str, i: int, num_in: int) -> Neighbourhood:
            return Neighbourhood(arrays[f"{group}{i}_index"].astype(np.int64),
                                 arrays[f"{group}{i}_mask"].astype(bool), num_in)

        return cls(
            level_sizes=sizes,
            level_vertices=[arrays[f"level{i}_vertices"].astype(np.int64) for i in range(levels)],
            conv=[table("conv", i, sizes[i]) for i in range(levels)],
            pool=[table("pool", i, sizes[i]) for i in range(levels - 1)],
            unpool=[table("unpool", i, sizes[i + 1]) for i in range(levels - 1)],
            fingerprint=fingerprint,
        )


def mesh_fingerprint(faces: np.ndarray, num_vertices: int, level_sizes: list[int], density: float = 1.0) -> str:
    """Identifies a (topology, hierarchy layout, region density) triple so a cached hierarchy is never used on
    another mesh or layout; the even layout (``density`` 1) keeps the fingerprint it always had."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(faces, dtype=np.int64).tobytes())
    digest.update(np.asarray([num_vertices, *level_sizes], dtype=np.int64).tobytes())
    if density != 1.0:
        digest.update(np.asarray([density], dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def inflate_region(vertices: np.ndarray, faces: np.ndarray, region: np.ndarray, factor: float) -> np.ndarray:
    """A copy of ``vertices`` with every connected part of ``region`` ((V,) bool; parts joined by edges whose
    both ends lie in it, e.g. each hand and each foot) scaled by ``factor`` about the part's centroid: the
    sampling points of a denser hierarchy there (see the module docstring)."""
    points = np.array(vertices, dtype=np.float64)
    region = np.asarray(region, dtype=bool)
    if region.shape != (len(points),):
        raise ValueError(f"region mask of shape {region.shape} for a mesh of {len(points)} vertices")
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = edges[region[edges[:, 0]] & region[edges[:, 1]]]
    num = len(points)
    _, labels = connected_components(sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                                                   shape=(num, num)), directed=False)
    inside = np.flatnonzero(region)
    for part in np.unique(labels[inside]):
        ids = inside[labels[inside] == part]
        centre = points[ids].mean(axis=0)
        points[ids] = centre + factor * (points[ids] - centre)
    return points


def edge_graph(vertices: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """Symmetric edge-length graph of a triangle mesh; disconnected parts are bridged to their nearest
    vertex in the largest component so geodesics exist everywhere."""
    num = vertices.shape[0]
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    n_comp, labels = connected_components(
        sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num, num)), directed=False
    )
    if n_comp > 1:
        main = np.bincount(labels).argmax()
        main_ids = np.flatnonzero(labels == main)
        bridges = []
        for comp in range(n_comp):
            if comp == main:
                continue
            ids = np.flatnonzero(labels == comp)
            dist = np.linalg.norm(vertices[ids][:, None] - vertices[main_ids][None], axis=-1)
            a, b = np.unravel_index(dist.argmin(), dist.shape)
            bridges.append((ids[a], main_ids[b]))
        edges = np.concatenate([edges, np.asarray(bridges)])
    lengths = np.linalg.norm(vertices[edges[:, 0]] - vertices[edges[:, 1]], axis=1) + 1e-9
    graph = sp.coo_matrix((lengths, (edges[:, 0], edges[:, 1])), shape=(num, num))
    return (graph + graph.T).tocsr()


def _farthest_point_sampling(graph: sp.csr_matrix, count: int) -> np.ndarray:
    num = graph.shape[0]
    # Start from the vertex farthest from vertex 0: deterministic and on the surface's extremity.
    first = int(np.argmax(dijkstra(graph, indices=0)))
    chosen = [first]
    min_dist = dijkstra(graph, indices=first)
    for _ in range(count - 1):
        nxt = int(np.argmax(min_dist))
        chosen.append(nxt)
        min_dist = np.minimum(min_dist, dijkstra(graph, indices=nxt))
    assert len(set(chosen)) == count <= num
    return np.asarray(chosen)


def _pad(rows: list[list[int]], num_in: int) -> Neighbourhood:
    width = max(len(r) for r in rows)
    index = np.full((len(rows), width), num_in, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        index[i, : len(r)] = r
        mask[i, : len(r)] = True
    return Neighbourhood(index, mask, num_in)


def _adjacency_lists(graph: sp.csr_matrix) -> list[np.ndarray]:
    return [graph.indices[graph.indptr[i]: graph.indptr[i + 1]] for i in range(graph.shape[0])]


def build_hierarchy(vertices: np.ndarray, faces: np.ndarray, level_sizes: list[int],
                    dense_region: np.ndarray | None = None, density: float = 1.0) -> MeshHierarchy:
    """Build the hierarchy for a template mesh; ``level_sizes[0]`` must equal the vertex count. ``density`` > 1
    gives ``dense_region`` ((V,) bool) more of the coarse vertices (:func:`inflate_region`)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if level_sizes[0] != vertices.shape[0]:
        raise ValueError(f"level_sizes[0]={level_sizes[0]} but the mesh has {vertices.shape[0]} vertices")
    if any(b >= a for a, b in zip(level_sizes, level_sizes[1:], strict=False)):
        raise ValueError(f"level sizes must strictly decrease: {level_sizes}")
    if not density > 0:
        raise ValueError(f"density must be positive, got {density}")
    if density != 1.0:
        if dense_region is None:
            raise ValueError("a density other than 1 needs the region it applies to")
        vertices = inflate_region(vertices, faces, dense_region, density)

    graph = edge_graph(vertices, faces)
    level_vertices = [np.arange(vertices.shape[0])]
    graphs = [graph]
    conv, pool, unpool = [], [], []
    for size in level_sizes[1:]:
        g = graphs[-1]
        local_pts = vertices[level_vertices[-1]]
        centres = np.sort(_farthest_point_sampling(g, size))  # ascending local id => ascending level-0 id
        _, _, sources = dijkstra(g, indices=centres, min_only=True, return_predecessors=True)
        region = np.searchsorted(centres, sources)  # region id (0..size-1) of every fine vertex
        adj = _adjacency_lists(g)
        # Coarse graph: regions that touch along a fine edge.
        coo = g.tocoo()
        ra, rb = region[coo.row], region[coo.col]
        keep = ra != rb
        cpts = local_pts[centres]
        pairs = np.unique(np.stack([ra[keep], rb[keep]], axis=1), axis=0)
        lengths = np.linalg.norm(cpts[pairs[:, 0]] - cpts[pairs[:, 1]], axis=1) + 1e-9
        coarse = sp.coo_matrix((lengths, (pairs[:, 0], pairs[:, 1])), shape=(size, size)).tocsr()
        # Pool: centre first, then its region and the region's 1-ring border.
        members: list[list[int]] = [[] for _ in range(size)]
        for v, r in enumerate(region):
            members[r].append(v)
        pool_rows = []
        for r in range(size):
            c = int(centres[r])
            block = set(members[r])
            for v in members[r]:
                block.update(int(u) for u in adj[v])
            block.discard(c)
            pool_rows.append([c, *sorted(block)])
        # Unpool: own centre first, then centres of regions reached by the 1-ring.
        unpool_rows = []
        for v in range(g.shape[0]):
            own = int(region[v])
            others = {int(region[u]) for u in adj[v]} - {own}
            unpool_rows.append([own, *sorted(others)])
        conv.append(_pad([[i, *sorted(int(u) for u in adj[i])] for i in range(g.shape[0])], g.shape[0]))
        pool.append(_pad(pool_rows, g.shape[0]))
        unpool.append(_pad(unpool_rows, size))
        level_vertices.append(level_vertices[-1][centres])
        graphs.append(coarse)
    last = graphs[-1]
    conv.append(_pad([[i, *sorted(int(u) for u in _adjacency_lists(last)[i])] for i in range(last.shape[0])],
                     last.shape[0]))
    return MeshHierarchy(
        level_sizes=list(level_sizes),
        level_vertices=level_vertices,
        conv=conv,
        pool=pool,
        unpool=unpool,
        fingerprint=mesh_fingerprint(faces, vertices.shape[0], level_sizes, density),
    )


def level_vertices_from_pool(pool_indices: list[np.ndarray], num_vertices: int) -> list[np.ndarray]:
    """Each level's vertex ids into level 0, recovered from the pool tables' index arrays (every pool row starts
    with its centre's id one level finer): a checkpoint's buffers then say where its tokens sit without the cache."""
    levels = [np.arange(num_vertices)]
    for index in pool_indices:
        levels.append(levels[-1][np.asarray(index)[:, 0]])
    return levels
