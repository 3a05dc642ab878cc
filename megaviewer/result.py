"""What a recovery returns: meshes per hypothesis, their statistics, and the generation trace.

The GUI, the CLI exports and the benchmarks all read this one object; nothing here imports Qt.
Conventions: metres; canonical meshes are centroid-centred in the shared y-up/+z-facing body frame;
camera-frame meshes are OpenCV-style (x right, y down, z forward) = R · canonical + translation.

When the engine fitted the camera to the keypoints (:mod:`megaviewer.camera_fit`, on by default),
``rotation``, ``cam_weak``, ``camera_vertices``, ``translation`` and ``joints`` are the fitted ones; the
network's own rotation and camera are kept in ``network_rotation`` / ``network_cam`` and ``camera_fit``
says per hypothesis whether the fit was used and the reprojection error before and after.

The camera is the photo's (:mod:`megaviewer.intrinsics`): ``focal`` in pixels of ``image_size``, principal
point at the image centre, ``focal_source`` saying whether the photo's EXIF gave it or it was assumed.
``landmarks_3d`` are the detector's 3D landmarks the recovery was given (:mod:`megaviewer.vision.landmarks`),
kept with the result for the tools and models that read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from megaviewer.camera_fit import CameraFit
from megaviewer.generate import Trace
from megaviewer.refine import Refinement


@dataclass
class Placement:
    """Bodies and where they stand: canonical vertices (Q, V, 3), camera-frame rotations (Q, 3, 3) and the
    translations of their centroids (Q, 3)."""

    canonical_vertices: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor

    def camera_vertices(self, index: int) -> torch.Tensor:
        """Camera-frame vertices (V, 3) of body ``index``."""
        return self.canonical_vertices[index] @ self.rotation[index].T + self.translation[index]


@dataclass
class RecoveryResult:
    mode: str  # "deterministic" | "stochastic" | "unconditional"
    tokens: torch.Tensor  # (Q, N) long
    canonical_vertices: torch.Tensor  # (Q, V, 3)
    rotation: torch.Tensor  # (Q, 3, 3) camera-frame orientation (identity when unconditioned)
    cam_weak: torch.Tensor  # (Q, 3) [s, tx, ty] in normalised crop coordinates
    camera_vertices: torch.Tensor  # (Q, V, 3) oriented, translated when a crop box was given
    translation: torch.Tensor  # (Q, 3) camera-frame translation of the mesh centroid (0 if unknown)
    focal: float | None  # full-image focal length in px when a crop box + image size were given
    joints: torch.Tensor  # (Q, 17, 3) COCO-17 joints in the camera frame
    faces: torch.Tensor  # (F, 3) working topology
    trace: Trace | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    network_rotation: torch.Tensor | None = None  # (Q, 3, 3) the network's rotation when the camera was fitted
    network_cam: torch.Tensor | None = None  # (Q, 3) the network's [s, tx, ty] when the camera was fitted
    camera_fit: CameraFit | None = None  # what the camera fit did (None: not run)
    refinement: Refinement | None = None  # what the keypoint refinement of the bodies did (None: not run)
    image_size: tuple[int, int] | None = None  # (W, H) of the image ``focal`` refers to
    focal_source: str | None = None  # megaviewer.intrinsics.SOURCES: "exif-35mm", "default-fov", ...
    landmarks_3d: torch.Tensor | None = None  # (33, 4) the detector's 3D landmarks (metres, hip-centred), if given
    # The network's bodies placed by the camera fit, before the refinement fitted them to the keypoints (None: not
    # refined); the app shows them beside the refined ones.
    before_fit: Placement | None = None
    # ``Engine.label()`` of the engine that made it ("default (keypoints+landmarks, anny)"): after the app switches
    # models, a result on screen still says which one it came from.
    model: str | None = None
    # (Q, N, D) the expected codes the network's bodies were decoded from (megaviewer.generate); None: the codes of
    # ``tokens`` (argmax codes, or an unconditional result).
    latents: torch.Tensor | None = None

    @property
    def num_samples(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def focal_35mm(self) -> float | None:
        """The focal as a 35 mm-equivalent length in mm (same diagonal field of view), when known."""
        if self.focal is None or not self.image_size:
            return None
        from megaviewer.intrinsics import focal_35mm

        return focal_35mm(self.focal, self.image_size)

    @property
    def distance_m(self) -> float:
        """How far the body's centroid is from the camera (mean over the hypotheses), metres."""
        return float(self.translation.mean(dim=0).norm())

    @property
    def mean_canonical(self) -> torch.Tensor:
        """Mean of the Q canonical meshes (V, 3) (paper App. A "mean-of-Q")."""
        return self.canonical_vertices.mean(dim=0)

    @property
    def mean_camera(self) -> torch.Tensor:
        """The mean-of-Q mesh placed in the camera frame (V, 3): the mean canonical mesh, turned by the mean
        rotation (:func:`~megaviewer.geometry.rotations.mean_rotation`) and moved by the mean translation.

        Why not the average of the camera-frame meshes: with the per-hypothesis camera fit every hypothesis
        has its own rotation, and averaging meshes turned different ways shrinks and blurs the body. When
        all hypotheses share one rotation (no fit, as the original) both definitions are the same mesh.
        """
        from megaviewer.geometry.rotations import mean_rotation

        rotation = mean_rotation(self.rotation)
        return self.mean_canonical @ rotation.T + self.translation.mean(dim=0)

    @property
    def vertex_sd_mm(self) -> torch.Tensor:
        """Per-vertex standard deviation (V,) in mm: RMS distance of the Q samples to their mean.

        Zero for a single hypothesis. This is the 3D spread the paper's Fig. 8 colours (its code uses the
        mean distance; RMS is the standard deviation proper and ranks vertices the same way in practice).
        Measured on the canonical (upright, centroid-centred) meshes: the body's pose and shape uncertainty.
        In the original all samples share one rotation, and a shared rotation leaves these distances
        unchanged; with the per-hypothesis camera fit the camera-frame meshes also differ by placement
        (depth alone varies by decimetres), which is not what the heatmap is about.
        """
        if self.num_samples < 2:
            return torch.zeros(self.canonical_vertices.shape[1])
        spread = self.canonical_vertices - self.mean_canonical
        return spread.pow(2).sum(-1).mean(0).sqrt() * 1000.0
