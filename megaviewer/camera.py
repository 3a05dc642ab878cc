"""Camera maths shared by the synthetic training data, the model's 2D loss and the app (pure, batched).

Conventions (docs/original-implementation.md §1, §7):

* The camera frame is OpenCV's: x right, y down, z forward (into the scene). Pixel (0, 0) is the top-left
  corner of the image; the principal point defaults to the image centre, as in the original demo. The
  focal length comes from the photo (:mod:`megaviewer.intrinsics`: EXIF, else a 55° diagonal field of view).
* Bodies live in the shared frame of :mod:`megaviewer.body.base` (metres, y up, facing +z). A body standing
  upright and facing the camera has camera-frame orientation ``FLIP_X = diag(1, -1, -1)`` (180° about x),
  so ``R_cam = FLIP_X @ R_shared``. The original folds this flip into the root orientation, which is why
  MEGA's rotation target is the camera-frame orientation.
* The model predicts a *weak-perspective* camera ``[s, tx, ty]`` in normalised crop coordinates: the crop
  spans [-1, 1] on both axes (x right, y down) and a camera-frame, centroid-centred point P maps to
  ``s * (P_xy + t)``. :func:`crop_to_full` lifts it to a full perspective camera for the whole image.

Everything here is differentiable torch; shapes use B for the batch and P for points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from megaviewer.intrinsics import DEFAULT_DIAGONAL_FOV_DEG

FLIP_X = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
"""Shared frame (y up, facing +z) -> OpenCV camera frame for an upright body facing the camera."""

CROP_FOCAL_PX = 1000.0
"""The original demo's focal length at the 224-px crop; full-image focal = 1000/224 · max(W, H)."""
CROP_RES_PX = 224.0

ImageSize = torch.Tensor | Sequence[float]


def shared_to_camera_rotation(orient: torch.Tensor) -> torch.Tensor:
    """Shared-frame global orientation (..., 3, 3) -> camera-frame orientation ``FLIP_X @ orient``."""
    return FLIP_X.to(orient) @ orient


def default_focal(image_size: ImageSize, batch: int | None = None,
                  fov_deg: float = DEFAULT_DIAGONAL_FOV_DEG) -> torch.Tensor:
    """The focal length in pixels assumed when the photo gives none: ``fov_deg`` across the image diagonal.

    Why 55° and not the original's camera: see :mod:`megaviewer.intrinsics` (a typical lens puts people at
    the distances they were photographed from; :func:`original_demo_focal` is a 13° telephoto). Returns (B,).
    """
    wh = _as_wh(image_size, batch)
    return wh.norm(dim=-1) / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def original_demo_focal(image_size: ImageSize, batch: int | None = None) -> torch.Tensor:
    """The original demo's focal length in pixels: ``1000 / 224 · max(W, H)`` (for comparisons only).

    The original never knew the real intrinsics; it assumed a 1000-px focal at the 224-px crop of the
    image's long side, a 12.8° field of view across that side. Returns (B,).
    """
    wh = _as_wh(image_size, batch)
    return CROP_FOCAL_PX / CROP_RES_PX * wh.amax(dim=-1)


def weak_perspective_project(points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Camera-frame points (B, P, 3) and cams (B, 3) = [s, tx, ty] -> normalised crop coords (B, P, 2).

    ``x = s (X + tx)``, ``y = s (Y + ty)``; depth is ignored (docs/original-implementation.md §7).
    """
    scale = cam[:, None, :1]
    return scale * (points[..., :2] + cam[:, None, 1:3])


def fit_weak_perspective(points3d: torch.Tensor, points2d: torch.Tensor,
                         weights: torch.Tensor | None = None, min_scale: float = 1e-6) -> torch.Tensor:
    """Closed-form weighted least squares for the weak-perspective cam that best maps 3D to 2D points.

    points3d (B, P, 3) camera frame, points2d (B, P, 2) normalised crop coords, weights (B, P) >= 0
    (default all ones) -> cam (B, 3). Why: synthetic data needs the ground-truth weak-perspective camera
    of a perspective projection, and there is none exactly; the least-squares fit is the camera the model
    can best reproduce. Solving for ``a = s, b = s tx, c = s ty`` makes the problem linear.

    Degenerate inputs (zero total weight, or all weighted points at one place) give ``s = min_scale``
    rather than NaN; ``tx, ty`` then put the weighted 3D centre on the weighted 2D centre.
    """
    xy = points3d[..., :2]
    if weights is None:
        weights = torch.ones(points3d.shape[:-1], dtype=points3d.dtype, device=points3d.device)
    w = weights.to(points3d.dtype)[..., None]
    total = w.sum(dim=1, keepdim=True).clamp_min(1e-12)
    mean3 = (w * xy).sum(dim=1, keepdim=True) / total
    mean2 = (w * points2d).sum(dim=1, keepdim=True) / total
    d3, d2 = xy - mean3, points2d - mean2
    num = (w * d3 * d2).sum(dim=(1, 2))
    den = (w * d3 * d3).sum(dim=(1, 2))
    scale = (num / den.clamp_min(1e-12)).clamp_min(min_scale)
    trans = mean2[:, 0] / scale[:, None] - mean3[:, 0]
    return torch.cat([scale[:, None], trans], dim=-1)


def crop_to_full(cam: torch.Tensor, box_center: torch.Tensor, box_side: torch.Tensor, image_size: ImageSize,
                 focal: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weak-perspective crop camera -> perspective translation in the full image (the original demo).

    cam (B, 3) = [s, tx, ty]; box_center (B, 2) px; box_side (B,) px; image_size (W, H) or (B, 2);
    focal (B,) px or a float; ``None`` uses :func:`default_focal` (a 55° diagonal field of view; a photo's
    own focal comes from :mod:`megaviewer.intrinsics`). Returns translation (B, 3) of the centroid in the
    camera frame and the focal (B,). With the principal point at the image centre, a point at the
    centroid's depth projects to exactly the pixel the weak-perspective camera puts it at
    (docs/original-implementation.md §7):
    ``tz = 2F/(b s)``, ``tx' = tx + 2(cx - W/2)/(b s)``, ``ty' = ty + 2(cy - H/2)/(b s)``.
    """
    batch = cam.shape[0]
    wh = _as_wh(image_size, batch).to(cam)
    f = _as_focal(focal, wh)
    bs = box_side.to(cam) * cam[:, 0]
    tz = 2.0 * f / bs
    txy = cam[:, 1:3] + 2.0 * (box_center.to(cam) - wh / 2.0) / bs[:, None]
    return torch.cat([txy, tz[:, None]], dim=-1), f


def full_to_crop_camera(translation: torch.Tensor, focal: torch.Tensor | float, box_center: torch.Tensor,
                        box_side: torch.Tensor, image_size: ImageSize) -> torch.Tensor:
    """Inverse of :func:`crop_to_full`: camera-frame translation (B, 3) -> weak-perspective cam (B, 3)."""
    wh = _as_wh(image_size, translation.shape[0]).to(translation)
    f = _as_focal(focal, wh)
    scale = 2.0 * f / (box_side.to(translation) * translation[:, 2])
    bs = box_side.to(translation) * scale
    txy = translation[:, :2] - 2.0 * (box_center.to(translation) - wh / 2.0) / bs[:, None]
    return torch.cat([scale[:, None], txy], dim=-1)


def perspective_project(points: torch.Tensor, focal: torch.Tensor | float, principal: torch.Tensor,
                        min_depth: float = 1e-6) -> torch.Tensor:
    """Camera-frame points (B, P, 3) -> pixels (B, P, 2) with fx = fy = focal (B,) and principal (B, 2).

    Depth is clamped to ``min_depth`` so points at or behind the camera give large finite values, not NaN.
    """
    f = torch.as_tensor(focal, dtype=points.dtype, device=points.device).reshape(-1, 1, 1)
    z = points[..., 2:3].clamp_min(min_depth)
    return f * points[..., :2] / z + principal.to(points)[:, None, :]


def full_to_crop(points_px: torch.Tensor, box_center: torch.Tensor, box_side: torch.Tensor) -> torch.Tensor:
    """Image pixels (B, P, 2) -> normalised crop coords (B, P, 2): the square box maps to [-1, 1]².

    Same as the original's ``2·p/224 − 1`` on the 224-px crop of that box (docs/original-implementation.md §7).
    """
    return (points_px - box_center[:, None, :]) * (2.0 / box_side)[:, None, None]


def crop_to_pixels(points: torch.Tensor, box_center: torch.Tensor, box_side: torch.Tensor) -> torch.Tensor:
    """Normalised crop coords (B, P, 2) -> image pixels (B, P, 2); inverse of :func:`full_to_crop`."""
    return box_center[:, None, :] + points * (box_side / 2.0)[:, None, None]


def square_box_from_keypoints(keypoints: torch.Tensor, conf: torch.Tensor, scale: float | torch.Tensor = 1.2,
                              threshold: float = 0.0, min_side: float = 1.0,
                              image_size: ImageSize | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Square crop box around the confident keypoints: (B, K, 2) px and conf (B, K) -> center (B, 2), side (B,).

    The box is the tight box of keypoints with ``conf > threshold``, made square on its longer side and
    enlarged by ``scale`` (a float or (B,) tensor; 1.2 as the original's EMDB boxes). Why keypoints: a
    keypoint box is available from any 2D keypoint detector, so synthetic training crops and inference
    crops are made the same way and the model sees the same framing at both times (a person-detector box
    would frame differently from anything we can synthesise).

    Sides are at least ``min_side`` px (one confident keypoint gives an empty box). Fallback when a sample
    has no confident keypoint: the whole image (centre of the image, side = max(W, H)) if ``image_size``
    is given, otherwise a ``min_side`` box at the pixel origin; neither carries information, which is the
    honest answer.
    """
    valid = conf > threshold
    big = torch.finfo(keypoints.dtype).max
    lo = torch.where(valid[..., None], keypoints, torch.full_like(keypoints, big)).amin(dim=1)
    hi = torch.where(valid[..., None], keypoints, torch.full_like(keypoints, -big)).amax(dim=1)
    any_valid = valid.any(dim=1)
    lo = torch.where(any_valid[:, None], lo, torch.zeros_like(lo))
    hi = torch.where(any_valid[:, None], hi, torch.zeros_like(hi))
    center = (lo + hi) / 2.0
    scale_t = torch.as_tensor(scale, dtype=keypoints.dtype, device=keypoints.device)
    side = ((hi - lo).amax(dim=-1) * scale_t).clamp_min(min_side)
    if image_size is not None:
        wh = _as_wh(image_size, keypoints.shape[0]).to(keypoints)
        center = torch.where(any_valid[:, None], center, wh / 2.0)
        side = torch.where(any_valid, side, wh.amax(dim=-1))
    return center, side


def _as_wh(image_size: ImageSize, batch: int | None) -> torch.Tensor:
    """(W, H) pair or (B, 2) tensor -> float (B, 2) tensor (or (1, 2) when the batch is unknown)."""
    wh = torch.as_tensor(image_size, dtype=torch.float32) if not torch.is_tensor(image_size) else image_size
    wh = wh.float() if not wh.is_floating_point() else wh
    if wh.ndim == 1:
        wh = wh[None]
    if batch is not None and wh.shape[0] != batch:
        wh = wh.expand(batch, 2)
    return wh


def _as_focal(focal: torch.Tensor | float | None, wh: torch.Tensor) -> torch.Tensor:
    if focal is None:
        return default_focal(wh)
    return torch.as_tensor(focal, dtype=wh.dtype, device=wh.device).reshape(-1).expand(wh.shape[0])
