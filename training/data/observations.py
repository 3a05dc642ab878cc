"""Synthetic 2D-keypoint observations of pool meshes: the conditioning signal MEGA trains on.

Each call places every mesh of a :class:`~training.data.pool.MeshPool` batch in front of a fresh random
perspective camera (random image size, focal length, distance and position), projects its COCO-17
joints, and corrupts them the way a real 2D keypoint detector does: Gaussian jitter with heavier-tailed
outliers, confidences, occluded body parts, dropped keypoints and truncation at the image border. The
crop is then made from the *detected* keypoints exactly as at inference
(:func:`megaviewer.camera.square_box_from_keypoints`), so training and inference crops frame people the
same way, including crops that cut the body when parts are missing.

Ground truth comes with it: the camera-frame rotation (the model's rotation target), the weak-perspective
camera fitted to the true projections, and the full perspective camera (focal, translation, image size)
for evaluation in image space. Everything is vectorised over the batch and a pure function of the
generator, so training batches are reproducible from the step seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from megaviewer.camera import (
    fit_weak_perspective,
    full_to_crop,
    perspective_project,
    shared_to_camera_rotation,
    square_box_from_keypoints,
)
from training.data.pool import MeshPool

if TYPE_CHECKING:
    from training.data.landmark_noise import LandmarkNoise

HEAD = (0, 1, 2, 3, 4)
LEFT_ARM = (7, 9)
RIGHT_ARM = (8, 10)
LEFT_LEG = (13, 15)
RIGHT_LEG = (14, 16)
LOWER_BODY = (11, 12, 13, 14, 15, 16)


GROSS_2D_ERRORS: dict = {"outlier_prob": 0.10, "outlier_error": (0.05, 0.25)}
"""Keypoint outliers as the real detector makes them: MediaPipe on rendered people puts 13.7 % of its points
more than 5 % and 5.7 % more than 10 % of the box away (``scripts/measure_landmark_noise.py``), more and
farther than :class:`ObservationConfig`'s defaults. Training on them makes the model lean less on a single
wrong keypoint; ``dataclasses.replace(config, **GROSS_2D_ERRORS)`` applies them."""


@dataclass
class ObservationConfig:
    """Distributions of cameras, framing and detector errors (ranges are uniform unless said otherwise)."""

    long_side: tuple[float, float] = (480.0, 1280.0)  # image long side, px
    aspect: tuple[float, float] = (1.0, 1.8)  # long / short side
    portrait_prob: float = 0.4
    focal_factor: tuple[float, float] = (0.7, 2.0)  # focal = factor · max(W, H) (~28°–71° field of view)
    # The keypoint box covers this fraction of the image along its tighter axis (height for standing
    # people): distance = focal · extent / (fraction · image size).
    box_fraction: tuple[float, float] = (0.25, 0.95)
    min_distance: float = 1.0  # m, centroid depth floor
    # Every joint's depth is at least this fraction of the centroid's: limits perspective distortion to
    # what a weak-perspective camera can explain (a foot 20 cm from the lens is not a useful sample).
    min_relative_depth: float = 0.7
    # Placement: the keypoint box lies inside the image (with a small margin) except, with
    # ``truncation_prob``, it crosses one random image edge by ``truncation_overflow`` of its size.
    truncation_prob: float = 0.2
    truncation_overflow: tuple[float, float] = (0.05, 0.4)
    inside_margin: float = 0.02
    crop_scale: float = 1.2
    crop_scale_jitter: float = 0.1  # relative, uniform ±
    # Detector noise, relative to the side of the true keypoint box: per-sample sigma multiplier in
    # [1 - jitter, 1 + jitter]; ``outlier_prob`` of keypoints get an error of ``outlier_error`` instead.
    noise_sigma: float = 0.015
    noise_sigma_jitter: float = 0.5
    outlier_prob: float = 0.04
    outlier_error: tuple[float, float] = (0.05, 0.10)
    conf_range: tuple[float, float] = (0.5, 1.0)
    outlier_conf_range: tuple[float, float] = (0.3, 0.8)  # detectors are less sure where they are wrong
    part_occlusion_prob: float = 0.3
    occlusion_parts: tuple[tuple[int, ...], ...] = field(
        default_factory=lambda: (HEAD, LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG, LOWER_BODY))
    single_drop_prob: float = 0.2
    single_drop_max: int = 3  # 1..max random keypoints dropped
    # The detector's 3D landmarks, simulated with a measured error model (training.data.landmark_noise);
    # None: no landmarks (the batch's landmarks are zeros). A person has them with ``landmark_prob``, so a
    # model trained with them keeps working without them.
    landmarks: LandmarkNoise | None = None
    landmark_prob: float = 0.8


@dataclass
class ObservationBatch:
    """One synthetic training batch. Crop coordinates are normalised to [-1, 1] (x right, y down)."""

    keypoints: torch.Tensor  # (B, 17, 3) detected x, y in crop coords + conf; missing: exactly (0, 0, 0)
    rot_cam: torch.Tensor  # (B, 3, 3) camera-frame orientation = FLIP_X @ orient
    cam_weak: torch.Tensor  # (B, 3) [s, tx, ty] fitted to the true projections of all 17 joints
    joints2d: torch.Tensor  # (B, 17, 2) true perspective projections in crop coords
    joints2d_conf: torch.Tensor  # (B, 17) 1 where the true joint lies inside the crop, else 0
    tokens: torch.Tensor  # (B, N) long
    box_center: torch.Tensor  # (B, 2) px
    box_side: torch.Tensor  # (B,) px
    image_size: torch.Tensor  # (B, 2) W, H px
    focal: torch.Tensor  # (B,) px, principal point at the image centre
    translation: torch.Tensor  # (B, 3) camera-frame position of the mesh centroid, m
    joints3d: torch.Tensor  # (B, 17, 3) camera-frame joints around the mesh centroid, m (the lifting target)
    landmarks: torch.Tensor  # (B, 17, 4) simulated 3D landmarks (x, y, z m around the hips, visibility); 0: none

    @property
    def batch_size(self) -> int:
        return int(self.keypoints.shape[0])

    def to(self, device: torch.device | str) -> ObservationBatch:
        """Synthesis runs on the CPU (generator-driven); move the finished batch to the training device."""
        return ObservationBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def synthesize(pool_batch: MeshPool, cfg: ObservationConfig, generator: torch.Generator) -> ObservationBatch:
    """Random camera + detector observations for every mesh of ``pool_batch``.

    Runs on the CPU (``pool_batch`` must be on the CPU, like ``generator``) and is a pure function of
    the generator's state; vectorised over the batch.
    """
    batch = len(pool_batch)
    g = generator
    rot_cam = shared_to_camera_rotation(pool_batch.orient.float())
    joints_cam = pool_batch.joints.float() @ rot_cam.transpose(-1, -2)  # centroid-centred, camera frame

    wh, focal = _sample_intrinsics(batch, cfg, g)
    translation = _place_person(joints_cam, wh, focal, cfg, g)
    principal = wh / 2.0
    true_px = perspective_project(joints_cam + translation[:, None], focal, principal)

    det_px, conf = _detector_noise(true_px, cfg, g)
    visible = _visibility(true_px, wh, cfg, g)
    det_px = torch.minimum(det_px.clamp_min(0.0), wh[:, None] - 1.0)  # detectors answer inside the image

    scale = cfg.crop_scale * _uniform(g, 1.0 - cfg.crop_scale_jitter, 1.0 + cfg.crop_scale_jitter, batch)
    center, side = square_box_from_keypoints(det_px, visible.float(), scale)
    # Fewer than two keypoints make no box; fall back to the true keypoint box (as a person detector
    # would give). Such samples carry (almost) no conditioning, as at inference.
    true_center, true_side = square_box_from_keypoints(true_px, torch.ones_like(conf), scale)
    few = visible.sum(dim=1) < 2
    center = torch.where(few[:, None], true_center, center)
    side = torch.where(few, true_side, side)

    zero = torch.zeros((), dtype=det_px.dtype)
    keypoints_xy = torch.where(visible[..., None], full_to_crop(det_px, center, side), zero)
    keypoints = torch.cat([keypoints_xy, torch.where(visible, conf, zero)[..., None]], dim=-1)
    joints2d = full_to_crop(true_px, center, side)
    joints2d_conf = (joints2d.abs() <= 1.0).all(dim=-1).float()
    cam_weak = fit_weak_perspective(joints_cam, joints2d)
    landmarks = torch.zeros(batch, joints_cam.shape[1], 4, dtype=joints_cam.dtype)
    if cfg.landmarks is not None:  # drawn last, so streams without landmarks are unchanged
        simulated = cfg.landmarks.simulate(joints_cam, rot_cam, g)
        present = torch.rand(batch, generator=g) < cfg.landmark_prob
        landmarks = torch.where(present[:, None, None], simulated, landmarks)
    return ObservationBatch(keypoints=keypoints, rot_cam=rot_cam, cam_weak=cam_weak, joints2d=joints2d,
                            joints2d_conf=joints2d_conf, tokens=pool_batch.tokens, box_center=center,
                            box_side=side, image_size=wh, focal=focal, translation=translation,
                            joints3d=joints_cam, landmarks=landmarks)


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=g)


def _sample_intrinsics(batch: int, cfg: ObservationConfig, g: torch.Generator
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Image sizes (B, 2) W, H (whole pixels) and focal lengths (B,)."""
    long = _uniform(g, *cfg.long_side, batch)
    short = long / _uniform(g, *cfg.aspect, batch)
    portrait = torch.rand(batch, generator=g) < cfg.portrait_prob
    wh = torch.stack([torch.where(portrait, short, long), torch.where(portrait, long, short)], -1).round()
    focal = _uniform(g, *cfg.focal_factor, batch) * wh.amax(dim=-1)
    return wh, focal


def _place_person(joints_cam: torch.Tensor, wh: torch.Tensor, focal: torch.Tensor, cfg: ObservationConfig,
                  g: torch.Generator, refine_steps: int = 4) -> torch.Tensor:
    """Camera-frame centroid translation (B, 3): distance from the wanted box size, then a position.

    The random draws fix the box size (a fraction of the image along its tighter axis) and *where* the
    keypoint box goes (a uniform position inside the image, or crossing one edge by a drawn fraction of
    its size); a few fixed-point steps then adjust the depth and the lateral position until the
    perspective keypoint box matches (perspective makes the box differ from the orthographic estimate,
    and a lateral shift moves joints at different depths by different amounts).
    """
    batch = joints_cam.shape[0]
    extent = (joints_cam.amax(dim=1) - joints_cam.amin(dim=1))[:, :2].clamp_min(0.05)
    fraction = _uniform(g, *cfg.box_fraction, batch)
    tz = focal * (extent / (fraction[:, None] * wh)).amax(dim=-1)
    nearest = (-joints_cam[..., 2]).amax(dim=1).clamp_min(0.0) / (1.0 - cfg.min_relative_depth)
    position = torch.rand(batch, 2, generator=g)
    truncate = torch.rand(batch, generator=g) < cfg.truncation_prob
    edge = torch.randint(0, 4, (batch,), generator=g)  # left, right, top, bottom
    overflow = _uniform(g, *cfg.truncation_overflow, batch)
    axis = edge // 2
    along = F.one_hot(axis, 2).bool() & truncate[:, None]

    def wanted_centre(size: torch.Tensor) -> torch.Tensor:
        margin = cfg.inside_margin * size
        free_lo, free_hi = size / 2.0 + margin, wh - size / 2.0 - margin
        target = torch.where(free_hi < free_lo, wh / 2.0, free_lo + (free_hi - free_lo).clamp_min(0.0) * position)
        axis_size = size.gather(1, axis[:, None])[:, 0]
        axis_image = wh.gather(1, axis[:, None])[:, 0]
        crossing = torch.where(edge % 2 == 0, axis_size * (0.5 - overflow),
                               axis_image - axis_size * (0.5 - overflow))
        return torch.where(along, crossing[:, None], target)

    floor = torch.maximum(nearest, torch.full_like(tz, cfg.min_distance))
    tz = torch.maximum(tz, floor)
    offset = torch.zeros(batch, 2, dtype=joints_cam.dtype)  # centroid's pixel offset from the principal point

    def keypoint_box() -> tuple[torch.Tensor, torch.Tensor]:
        translation = torch.cat([offset * (tz / focal)[:, None], tz[:, None]], dim=-1)
        px = perspective_project(joints_cam + translation[:, None], focal, wh / 2.0)
        return px.amin(dim=1), px.amax(dim=1)

    for _ in range(refine_steps):  # a fixed few steps over the whole batch, not a loop over samples
        lo, hi = keypoint_box()
        tz = torch.maximum(tz * ((hi - lo) / (fraction[:, None] * wh)).amax(dim=-1), floor)
        lo, hi = keypoint_box()
        offset = offset + wanted_centre(hi - lo) - (lo + hi) / 2.0
    return torch.cat([offset * (tz / focal)[:, None], tz[:, None]], dim=-1)


def _detector_noise(true_px: torch.Tensor, cfg: ObservationConfig, g: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy keypoints (B, 17, 2) px and their confidences (B, 17) before any dropping."""
    batch, count = true_px.shape[:2]
    box_side = (true_px.amax(dim=1) - true_px.amin(dim=1)).amax(dim=-1)
    sigma = cfg.noise_sigma * box_side * _uniform(g, 1.0 - cfg.noise_sigma_jitter, 1.0 + cfg.noise_sigma_jitter,
                                                  batch)
    noise = torch.randn(batch, count, 2, generator=g) * sigma[:, None, None]
    outlier = torch.rand(batch, count, generator=g) < cfg.outlier_prob
    direction = F.normalize(torch.randn(batch, count, 2, generator=g), dim=-1)
    magnitude = _uniform(g, *cfg.outlier_error, batch, count) * box_side[:, None]
    noise = torch.where(outlier[..., None], direction * magnitude[..., None], noise)
    conf = torch.where(outlier, _uniform(g, *cfg.outlier_conf_range, batch, count),
                       _uniform(g, *cfg.conf_range, batch, count))
    return true_px + noise, conf


def _visibility(true_px: torch.Tensor, wh: torch.Tensor, cfg: ObservationConfig, g: torch.Generator
                ) -> torch.Tensor:
    """(B, 17) bool: not occluded by a dropped body part, not dropped singly, inside the image."""
    batch, count = true_px.shape[:2]
    parts = torch.zeros(len(cfg.occlusion_parts), count, dtype=torch.bool)
    for row, part in enumerate(cfg.occlusion_parts):  # loop over the few part kinds, not over samples
        parts[row, list(part)] = True
    occlude = torch.rand(batch, generator=g) < cfg.part_occlusion_prob
    which = torch.randint(0, len(cfg.occlusion_parts), (batch,), generator=g)
    visible = ~(parts[which] & occlude[:, None])

    single = torch.rand(batch, generator=g) < cfg.single_drop_prob
    drops = torch.randint(1, cfg.single_drop_max + 1, (batch,), generator=g)
    rank = torch.rand(batch, count, generator=g).argsort(dim=1).argsort(dim=1)
    visible &= ~(single[:, None] & (rank < drops[:, None]))

    inside = ((true_px >= 0.0) & (true_px <= wh[:, None] - 1.0)).all(dim=-1)
    return visible & inside
