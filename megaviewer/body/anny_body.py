"""Anny (Apache-2.0, ships its assets) as a :class:`BodyModel` — the default, fully offline body.

Topology: ``notoes_collapse10pc`` (1,229 vertices, 2,454 triangles) is the *working* mesh that the
tokenizer encodes. It keeps the whole silhouette (hands, feet, head) at about 2-3 cm spacing, which is
finer than any HMR error we can hope for, while keeping the convolutional tokenizer small enough to
train on a 2-core CPU in minutes and the posing fast (> 2,000 meshes/s). What the app shows is the
12,272-vertex ``notoes`` mesh obtained from it by a fixed linear upsampling (see ``assets.py``).

Pose: axis-angle per non-root Anny bone (103 bones, Anny's order), in Anny's ``local-ref``
parameterisation: a rotation about *world-aligned rest axes* at the bone head, relative to the parent.
Anny's world is z-up with the body facing -y; we convert its output to the shared y-up/+z-facing frame
with the proper rotation (x, y, z) -> (x, z, -y). In Anny axes: hip flexion is a negative rotation about
+x, knee flexion positive about +x, and the body's left side is +x.
Shape: the six Anny phenotypes (gender, age, muscle, weight, height, proportions) in [0, 1].
"""

from __future__ import annotations

import contextlib
import io
import os

import torch

from megaviewer.body.base import BodyModel
from megaviewer.paths import anny_cache_dir

WORKING_TOPOLOGY = "notoes_collapse10pc"
DISPLAY_TOPOLOGY = "notoes"
PHENOTYPES: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")

# Anny world (z up, -y front) -> shared frame (y up, +z front).
ANNY_TO_SHARED = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def load_anny(topology: str = WORKING_TOPOLOGY, dtype: torch.dtype = torch.float32):
    """Create an Anny model quietly, using the project's cache folder (built once, ~2 min)."""
    os.environ.setdefault("ANNY_CACHE_DIR", str(anny_cache_dir()))
    with contextlib.redirect_stdout(io.StringIO()):
        import anny

        model = anny.Anny(topology=topology)
    return model.to(dtype)


class AnnyBody(BodyModel):
    """Anny behind the shared body interface (see module docstring for conventions)."""

    name = "anny"
    shape_names = PHENOTYPES

    def __init__(self, topology: str = WORKING_TOPOLOGY, dtype: torch.dtype = torch.float32,
                 coco_regressor: torch.Tensor | None = None):
        super().__init__()
        self.topology = topology
        self.anny = load_anny(topology, dtype)
        self.bone_names: tuple[str, ...] = tuple(self.anny.bone_labels)
        self.pose_joint_names = self.bone_names[1:]
        self.register_buffer("faces", self.anny.faces.long().clone(), persistent=False)
        self.register_buffer("to_shared", ANNY_TO_SHARED.to(dtype), persistent=False)
        if coco_regressor is None:
            coco_regressor = _load_shipped_regressor(topology, self.anny.template_vertices.shape[-2])
        self.register_buffer("coco_regressor", coco_regressor.to(dtype), persistent=False)

    @property
    def num_vertices(self) -> int:
        return int(self.anny.template_vertices.shape[-2])

    def bone_index(self, name: str) -> int:
        """Index of a bone in the pose tensor (which excludes the root)."""
        return self.pose_joint_names.index(name)

    def region_mask(self, roots: tuple[str, ...]) -> torch.Tensor:
        """(V,) bool: vertices whose strongest skinning bone is one of ``roots`` or descends from one, e.g.
        ``("wrist.L", "wrist.R")`` for the hands; used to report errors where the mesh is finest."""
        parents = [int(p) for p in self.anny.bone_parents]
        inside = [False] * len(self.bone_names)
        for i, name in enumerate(self.bone_names):  # parents precede children in Anny's order
            inside[i] = name in roots or (parents[i] >= 0 and inside[parents[i]])
        strongest = self.anny.vertex_bone_indices.gather(
            -1, self.anny.vertex_bone_weights.argmax(-1, keepdim=True))[:, 0]
        return torch.tensor(inside)[strongest.long()]

    def default_shape(self, batch: int) -> torch.Tensor:
        return torch.full((batch, len(PHENOTYPES)), 0.5)

    def posed_vertices(self, pose: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return self.anny_output(pose, shape)["vertices"] @ self.to_shared.T

    def anny_output(self, pose: torch.Tensor, shape: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw Anny output (its own axes) for callers that need bone poses, e.g. the pose prior."""
        from megaviewer.geometry.rotations import rotvec_to_matrix

        batch = pose.shape[0]
        dtype = self.to_shared.dtype
        transforms = torch.eye(4, dtype=dtype, device=pose.device).repeat(batch, len(self.bone_names), 1, 1)
        transforms[:, 1:, :3, :3] = rotvec_to_matrix(pose.to(dtype))
        phenotypes = {name: shape[:, i].to(dtype) for i, name in enumerate(PHENOTYPES)}
        return self.anny(pose_parameters=transforms, phenotype_kwargs=phenotypes)


def _load_shipped_regressor(topology: str, num_vertices: int) -> torch.Tensor:
    """The COCO-17 regressor fitted for this topology (resources/body), or zeros until it is built."""
    from megaviewer.body.assets import BodyAssets

    try:
        assets = BodyAssets.load("anny")
    except FileNotFoundError:
        return torch.zeros(17, num_vertices)
    if assets.num_vertices != num_vertices:
        return torch.zeros(17, num_vertices)
    return assets.coco_regressor
