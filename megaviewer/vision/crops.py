"""The image crop an image-conditioned MEGA reads: a person's square box cut from the photo, as in training.

Why a module of its own: the model only recovers well from crops made exactly as its training crops were, so
the app, ``megaviewer infer``, library users and the training reader (``training/data/dataset.py``, which adds
its rotation, flip and colour augmentation through the same :func:`warp_crop`) share one implementation.
The box (:class:`~megaviewer.engine.CropBox`, what :meth:`megaviewer.app.pipeline.Person.crop` returns) is
mapped onto the whole (H, W) crop: crop pixel ``q`` sees image point ``centre + (q - size / 2) * side /
size``, so the crop's [-1, 1]² frame is the keypoints' normalised crop frame. Where the box leaves the photo
the crop is black (pixel value 0 before normalisation), i.e. ``-mean / std`` after it. Zooming out by more than
2x first shrinks the photo with area averaging, so small crops of big photos do not alias. Output: RGB,
ImageNet mean/std, float32 (3, H, W).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from megaviewer.model.conditioning import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from megaviewer.engine import CropBox, Engine


def crop_matrix(center: tuple[float, float], side: float, size: tuple[int, int],
                turn: np.ndarray | None = None) -> np.ndarray:
    """The 2x3 affine map from photo pixels to crop pixels for a square box of ``side`` px at ``center`` and a
    crop of ``size`` = (H, W); ``turn`` (2, 2) rotates and/or mirrors the box about its centre (training's
    augmentation), identity by default."""
    height, width = size
    linear = np.diag([width / side, height / side])
    if turn is not None:
        linear = linear @ np.asarray(turn, dtype=np.float64)
    offset = np.array([width / 2.0, height / 2.0]) - linear @ np.asarray(center, dtype=np.float64)
    return np.hstack([linear, offset[:, None]])


def _shrink_for_zoom(image: np.ndarray, matrix: np.ndarray, zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """Area-downscale the photo when the crop zooms out by more than 2x (``zoom`` crop px per photo px; bilinear
    sampling alone would alias); returns the image to sample and the photo -> crop map re-expressed in its
    pixels."""
    import cv2

    if zoom >= 0.5:
        return image, matrix
    h, w = image.shape[:2]
    new_w, new_h = max(1, round(w * 2 * zoom)), max(1, round(h * 2 * zoom))
    factors = np.array([new_w / w, new_h / h])
    small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    # cv2.resize maps pixel centres: p' = f * p + (f - 1) / 2, so p = (p' - (f - 1) / 2) / f.
    linear = matrix[:, :2] / factors[None, :]
    offset = matrix[:, 2] - linear @ ((factors - 1) / 2)
    return small, np.hstack([linear, offset[:, None]])


def warp_crop(image: np.ndarray, center: tuple[float, float], side: float, size: tuple[int, int],
              turn: np.ndarray | None = None, colour: tuple[float, float, float] | None = None,
              mean: tuple[float, float, float] = IMAGENET_MEAN,
              std: tuple[float, float, float] = IMAGENET_STD) -> torch.Tensor:
    """The normalised crop (3, H, W) float32 of the square box (``center``, ``side``) in ``image`` (BGR uint8),
    optionally turned/mirrored by ``turn`` and with each RGB channel scaled by ``colour`` (clipped to [0, 1]):
    the one warp inference (:func:`person_crop`) and training (``training.data.dataset``) share."""
    import cv2

    height, width = size
    matrix = crop_matrix(center, side, size, turn)
    source, matrix = _shrink_for_zoom(image, matrix, max(width, height) / side)
    crop = cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    rgb = crop[..., ::-1].astype(np.float32) / 255.0
    if colour is not None:
        rgb = np.clip(rgb * np.asarray(colour, dtype=np.float32), 0.0, 1.0)
    rgb = (rgb - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def person_crop(image: np.ndarray, box: CropBox, size: tuple[int, int] | int = (224, 224),
                mean: tuple[float, float, float] = IMAGENET_MEAN,
                std: tuple[float, float, float] = IMAGENET_STD) -> torch.Tensor:
    """The normalised crop (3, H, W) float32 of ``box`` in ``image`` (BGR uint8 (H, W, 3), the photo the box
    was measured on); ``size`` = (H, W) of the model's input (``config.conditioning.image_size``)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"the photo must be BGR uint8 (H, W, 3), got {image.dtype} {image.shape}")
    height, width = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    side = float(box.side)
    center = np.asarray(box.center, dtype=np.float64)
    if not (np.isfinite(center).all() and np.isfinite(side) and side > 0) or min(height, width) < 1:
        raise ValueError(f"crop box needs a finite centre and a positive side, got centre {box.center} "
                         f"and side {box.side}; crop size {size}")
    return warp_crop(image, (center[0], center[1]), side, (height, width), mean=mean, std=std)


def needs_image(engine: Engine) -> bool:
    """Whether the engine's model reads an image crop (its conditioning kinds include "image")."""
    return "image" in engine.model.config.conditioning.kinds


def engine_crop(engine: Engine, image: np.ndarray | None, box: CropBox) -> torch.Tensor | None:
    """The crop the engine's model needs for ``box`` (``None`` for a model that reads no image).

    Raises a one-line ``ValueError`` when the model reads the photo and there is none, so a caller that
    forgot it learns which model wanted what instead of a shape error deep in the backbone.
    """
    if not needs_image(engine):
        return None
    config = engine.model.config.conditioning
    if image is None:
        raise ValueError(f"model {engine.name} is conditioned on {'+'.join(config.kinds)} and needs the photo: "
                         "pass image= (BGR uint8) so the person's crop can be cut from it")
    return person_crop(image, box, config.image_size)
