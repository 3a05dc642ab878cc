"""A tiny, licence-free model file in the SMPL / SMPL-H format, for tests and demos.

The real SMPL files may not be redistributed (users download them from the SMPL website), so nothing in
this project can ship or test against them. This module writes a small stand-in with *exactly the keys,
shapes and dtypes* that ``smplx`` reads (``smplx.SMPL`` / ``smplx.SMPLH``, checked against smplx 0.1.28):

==================  ======================  =====================================================
key                 shape                   meaning
==================  ======================  =====================================================
v_template          (V, 3) float64          rest-pose vertices, metres, y up, facing +z
f                   (F, 3) uint32           triangles
J_regressor         (J, V)                  joint locations from vertices (scipy.sparse in .pkl)
weights             (V, J) float64          linear-blend-skinning weights (rows sum to 1)
kintree_table       (2, J) int64            row 0: parent of each joint (root: 2**32 - 1)
shapedirs           (V, 3, S) float64       shape blend shapes (S betas)
posedirs            (V, 3, 9 (J - 1))       pose-corrective blend shapes
J                   (J, 3) float64          rest joints (in the real files; smplx ignores it)
hands_components*   (45, 45)                SMPL-H only: hand pose PCA basis (l / r)
hands_mean*         (45,)                   SMPL-H only: mean hand pose (l / r)
==================  ======================  =====================================================

J is 24 (SMPL) or 52 (SMPL-H: 22 body joints + 2 x 15 finger joints), in smplx's joint order. The body
is a crude T-posed stick figure: every joint gets a ring of vertices around its bone, every bone a ring at
its middle, and every leaf (head, feet, hands or finger tips) an apex vertex closing its tube. Skinning
follows the bones (a bone's vertices move with the joint at its start; joint rings are shared half and
half with the parent), so posing a joint bends the right limb, and the joint regressor averages each
joint ring, so it reproduces the skeleton exactly in the rest pose.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

SMPL_BODY_JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
SMPL_BODY_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
)
SMPL_HAND_JOINTS: tuple[str, ...] = ("left_hand", "right_hand")
FINGERS: tuple[str, ...] = ("index", "middle", "pinky", "ring", "thumb")  # smplx's (SMPL-H) order

# Rest positions of the 22 body joints (metres; +x is the body's left, y up, the body faces +z).
_BODY_POSITIONS = np.array([
    [0.0, 0.95, 0.0], [0.09, 0.88, 0.0], [-0.09, 0.88, 0.0], [0.0, 1.05, -0.01],
    [0.10, 0.50, 0.01], [-0.10, 0.50, 0.01], [0.0, 1.18, -0.01], [0.11, 0.10, -0.02],
    [-0.11, 0.10, -0.02], [0.0, 1.26, 0.0], [0.12, 0.03, 0.10], [-0.12, 0.03, 0.10],
    [0.0, 1.45, 0.0], [0.07, 1.38, 0.0], [-0.07, 1.38, 0.0], [0.0, 1.55, 0.02],
    [0.18, 1.40, 0.0], [-0.18, 1.40, 0.0], [0.45, 1.40, 0.0], [-0.45, 1.40, 0.0],
    [0.70, 1.40, 0.0], [-0.70, 1.40, 0.0],
])
# Tube radius around each body joint (metres).
_BODY_RADII = np.array([
    0.13, 0.08, 0.08, 0.12, 0.055, 0.055, 0.13, 0.04, 0.04, 0.14, 0.04, 0.04,
    0.05, 0.06, 0.06, 0.09, 0.05, 0.05, 0.04, 0.04, 0.03, 0.03,
])
# Finger base offset from the left wrist (x outward), segment direction and length, for the left hand.
_FINGER_LAYOUT = {
    "index": ((0.08, 0.0, 0.025), (1.0, 0.0, 0.0), 0.030),
    "middle": ((0.08, 0.0, 0.005), (1.0, 0.0, 0.0), 0.032),
    "pinky": ((0.07, 0.0, -0.035), (1.0, 0.0, 0.0), 0.022),
    "ring": ((0.075, 0.0, -0.015), (1.0, 0.0, 0.0), 0.028),
    "thumb": ((0.025, -0.01, 0.035), (0.6, -0.2, 0.75), 0.028),
}
_ROOT_PARENT = np.int64(2**32 - 1)  # what the official files store as the root's parent


def skeleton(model_type: str = "smpl") -> tuple[tuple[str, ...], tuple[int, ...], np.ndarray]:
    """Joint names, parents (-1 for the root) and rest positions (J, 3) of the synthetic body."""
    names = list(SMPL_BODY_JOINTS)
    parents = list(SMPL_BODY_PARENTS)
    positions = [p for p in _BODY_POSITIONS]
    if model_type == "smpl":
        for side, wrist in ((1.0, 20), (-1.0, 21)):
            names.append(f"{'left' if side > 0 else 'right'}_hand")
            parents.append(wrist)
            positions.append(_BODY_POSITIONS[wrist] + np.array([side * 0.08, 0.0, 0.0]))
    elif model_type == "smplh":
        for side, wrist in ((1.0, 20), (-1.0, 21)):
            prefix = "left" if side > 0 else "right"
            for finger in FINGERS:
                base, direction, length = _FINGER_LAYOUT[finger]
                mirror = np.array([side, 1.0, 1.0])
                step = np.asarray(direction) / np.linalg.norm(direction) * length * mirror
                point = _BODY_POSITIONS[wrist] + np.asarray(base) * mirror
                parent = wrist
                for segment in (1, 2, 3):
                    names.append(f"{prefix}_{finger}{segment}")
                    parents.append(parent)
                    positions.append(point.copy())
                    parent = len(names) - 1
                    point = point + step
    else:
        raise ValueError(f"model_type must be 'smpl' or 'smplh', got {model_type!r}")
    return tuple(names), tuple(parents), np.stack(positions)


def _joint_radius(index: int) -> float:
    if index < len(_BODY_RADII):
        return float(_BODY_RADII[index])
    return 0.025 if index < 24 else 0.008  # SMPL hands / SMPL-H finger segments


def _ring_frame(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane normal to ``direction``, phase-aligned to limit twisting."""
    d = direction / np.linalg.norm(direction)
    reference = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = reference - d * (reference @ d)
    u /= np.linalg.norm(u)
    return u, np.cross(d, u)


def synthetic_smpl_data(model_type: str = "smpl", num_vertices: int = 200, seed: int = 0,
                        num_betas: int = 10, exact: bool = False) -> dict[str, np.ndarray]:
    """Arrays of a synthetic SMPL (24 joints) or SMPL-H (52 joints) model, keyed as in the real files.

    ``num_vertices`` is a target: the mesh has ``(2 J - 1) * n + leaves`` vertices with ``n`` (>= 3) ring
    points chosen to come closest (193 vertices for SMPL and 322 for SMPL-H at the default 200). ``exact``
    hits the count exactly (e.g. the real files' 6,890): ``n`` rounds down and the missing vertices split
    triangles of the caps that close the leaf tubes, one new vertex at a triangle's centroid each.
    ``seed`` drives the shape and pose-corrective blend shapes and the SMPL-H mean hand pose.
    """
    names, parents, joints = skeleton(model_type)
    num_joints = len(names)
    children = [[c for c in range(num_joints) if parents[c] == j] for j in range(num_joints)]
    leaves = [j for j in range(num_joints) if not children[j]]
    rounding = np.floor if exact else np.round
    ring = max(3, int(rounding((num_vertices - len(leaves)) / (2 * num_joints - 1))))
    extra = num_vertices - ((2 * num_joints - 1) * ring + len(leaves)) if exact else 0
    if not 0 <= extra <= ring * len(leaves):
        raise ValueError(f"cannot build a {model_type} stand-in with exactly {num_vertices} vertices")
    rng = np.random.default_rng(seed)

    vertices: list[np.ndarray] = []
    centres: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    faces: list[tuple[int, int, int]] = []
    joint_ring: dict[int, int] = {}  # joint -> index of its ring's first vertex
    caps: list[tuple[int, int]] = []  # (face index, leaf joint) of each triangle closing a leaf tube

    def direction_into(j: int) -> np.ndarray:
        return np.array([0.0, 1.0, 0.0]) if parents[j] < 0 else joints[j] - joints[parents[j]]

    def add_ring(centre: np.ndarray, direction: np.ndarray, radius: float, weight: np.ndarray) -> int:
        u, v = _ring_frame(direction)
        start = len(vertices)
        for k in range(ring):
            angle = 2.0 * np.pi * k / ring
            vertices.append(centre + radius * (np.cos(angle) * u + np.sin(angle) * v))
            centres.append(centre)
            weights.append(weight)
        return start

    def connect(a: int, b: int) -> None:
        """Quad strip from ring a to ring b; outward normals when b lies along +direction from a."""
        for k in range(ring):
            k1 = (k + 1) % ring
            faces.append((a + k, a + k1, b + k1))
            faces.append((a + k, b + k1, b + k))

    for j in range(num_joints):  # parents precede children in the SMPL order
        weight = np.zeros(num_joints)
        if parents[j] < 0:
            weight[j] = 1.0
        else:
            weight[[parents[j], j]] = 0.5
        joint_ring[j] = add_ring(joints[j], direction_into(j), _joint_radius(j), weight)
    for c in range(1, num_joints):
        p = parents[c]
        weight = np.zeros(num_joints)
        weight[p] = 1.0
        radius = 0.5 * (_joint_radius(p) + _joint_radius(c))
        mid = add_ring(0.5 * (joints[p] + joints[c]), direction_into(c), radius, weight)
        connect(joint_ring[p], mid)
        connect(mid, joint_ring[c])
    for j in leaves:
        direction = direction_into(j) / np.linalg.norm(direction_into(j))
        length = 0.12 if names[j] == "head" else max(1.5 * _joint_radius(j), 0.01)
        apex = len(vertices)
        weight = np.zeros(num_joints)
        weight[j] = 1.0
        vertices.append(joints[j] + length * direction)
        centres.append(joints[j])
        weights.append(weight)
        start = joint_ring[j]
        for k in range(ring):
            faces.append((start + k, start + (k + 1) % ring, apex))
            caps.append((len(faces) - 1, j))
    for face_index, j in caps[:: max(1, len(caps) // extra)][:extra] if extra else []:
        a, b, apex = faces[face_index]  # split (a, b, apex) at its centroid, keeping the orientation
        new = len(vertices)
        vertices.append((vertices[a] + vertices[b] + vertices[apex]) / 3.0)
        centres.append(joints[j])
        weights.append(weights[apex])
        faces[face_index] = (a, b, new)
        faces += [(b, apex, new), (apex, a, new)]

    v_template = np.stack(vertices)
    lbs_weights = np.stack(weights)
    num_verts = len(v_template)
    j_regressor = np.zeros((num_joints, num_verts))
    for j, start in joint_ring.items():
        j_regressor[j, start:start + ring] = 1.0 / ring

    # Shape space: beta0 = stature, beta1 = girth, the rest = smooth random per-joint displacements.
    shapedirs = np.zeros((num_verts, 3, num_betas))
    if num_betas > 0:
        shapedirs[:, 1, 0] = 0.06 * v_template[:, 1]
    if num_betas > 1:
        shapedirs[:, :, 1] = 0.15 * (v_template - np.stack(centres))
    if num_betas > 2:
        per_joint = rng.normal(scale=0.01, size=(num_joints, 3, num_betas - 2))
        shapedirs[:, :, 2:] = np.einsum("vj,jcs->vcs", lbs_weights, per_joint)

    # Pose correctives: small, and only on vertices that the joint actually skins.
    posedirs = rng.normal(scale=2e-4, size=(num_verts, 3, num_joints - 1, 9))
    posedirs *= (lbs_weights[:, 1:] > 0)[:, None, :, None]
    posedirs = posedirs.reshape(num_verts, 3, 9 * (num_joints - 1))

    kintree = np.stack([np.array(parents, dtype=np.int64), np.arange(num_joints, dtype=np.int64)])
    kintree[0, 0] = _ROOT_PARENT
    data: dict[str, np.ndarray] = {
        "v_template": v_template,
        "f": np.asarray(faces, dtype=np.uint32),
        "J_regressor": j_regressor,
        "weights": lbs_weights,
        "kintree_table": kintree,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J": joints.astype(np.float64),
    }
    if model_type == "smplh":
        for side in ("l", "r"):
            data[f"hands_components{side}"] = np.eye(45)
            data[f"hands_mean{side}"] = rng.normal(scale=0.15, size=45)  # non-flat, as in the real files
    return data


def write_synthetic_smpl(path: str | Path, model_type: str = "smpl", num_vertices: int = 200, seed: int = 0,
                         fmt: str | None = None, num_betas: int = 10, exact: bool = False) -> Path:
    """Write a synthetic SMPL/SMPL-H model file and return its path.

    ``fmt`` is ``'npz'`` (plain arrays, loads without unpickling) or ``'pkl'`` (like the official files:
    a latin-1-compatible protocol-2 pickle with a scipy.sparse ``J_regressor``); by default it follows
    the file suffix, and ``npz`` otherwise.
    """
    path = Path(path)
    if fmt is None:
        fmt = "pkl" if path.suffix == ".pkl" else "npz"
    if fmt not in ("npz", "pkl"):
        raise ValueError(f"fmt must be 'npz' or 'pkl', got {fmt!r}")
    data = synthetic_smpl_data(model_type, num_vertices=num_vertices, seed=seed, num_betas=num_betas, exact=exact)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        with open(path, "wb") as handle:  # an open handle keeps np.savez from appending ".npz"
            np.savez(handle, **data)
    else:
        import scipy.sparse

        data["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"])
        with open(path, "wb") as handle:
            pickle.dump(data, handle, protocol=2)
    return path
