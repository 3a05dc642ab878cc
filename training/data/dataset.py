"""Read a dataset folder (:mod:`training.data.dataset_format`) as training samples: crops and augmentation.

:class:`DatasetReader` crops each person exactly as inference does (the COCO-17 keypoint box × 1.2 of
:meth:`megaviewer.vision.detector.PersonDetection.from_keypoints`, the ``box`` only when fewer than two
keypoints are usable), so a model trained on these crops sees people framed as it will in the app. It
augments as SPIN-style pipelines do (scale, in-plane rotation, horizontal flip, colour); docs/dataset.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from megaviewer.body.keypoints import COCO17_FLIP_PERMUTATION
from megaviewer.vision.crops import warp_crop
from megaviewer.vision.detector import PersonDetection, crop_keypoints
from training.data.dataset_format import BodyParams, PersonRecord, read_table

_MIRROR_X = np.diag([-1.0, 1.0, 1.0])


# ----------------------------------------------------------------------------------------- augmentation
@dataclass
class AugmentConfig:
    """SPIN-style augmentation; ``enabled=False`` (the default, for evaluation) crops without any change.

    Why each: ``scale`` varies how tightly the crop frames the person (detectors' boxes vary); ``rotation``
    covers tilted cameras and people lying or bending; ``flip`` doubles the poses and removes left/right
    bias; ``color`` covers white balance and exposure. The defaults are SPIN's: box side × clip(N(1, 0.25),
    0.75, 1.25); a rotation clip(N(0, 30°), ±60°) on 40 % of samples; flip with probability 0.5; each
    RGB channel × U(0.6, 1.4).
    """

    enabled: bool = False
    scale_sigma: float = 0.25
    rotation_sigma_deg: float = 30.0
    rotation_prob: float = 0.4
    flip_prob: float = 0.5
    color_jitter: float = 0.4


@dataclass(frozen=True)
class Augmentation:
    """One drawn augmentation. ``rotation_deg`` > 0 turns the picture clockwise on screen (y points down)."""

    scale: float = 1.0  # crop side multiplier (> 1 zooms out)
    rotation_deg: float = 0.0
    flip: bool = False  # requested; a sample that cannot be mirrored stays unflipped
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB multipliers


def draw_augmentation(cfg: AugmentConfig, rng: np.random.Generator) -> Augmentation:
    """A random :class:`Augmentation` (the identity when ``cfg.enabled`` is False)."""
    if not cfg.enabled:
        return Augmentation()
    s, r, j = cfg.scale_sigma, cfg.rotation_sigma_deg, cfg.color_jitter
    scale = float(np.clip(1.0 + s * rng.standard_normal(), 1.0 - s, 1.0 + s))
    rotation = float(np.clip(r * rng.standard_normal(), -2.0 * r, 2.0 * r))
    rotate, flip = rng.random() < cfg.rotation_prob, rng.random() < cfg.flip_prob
    color = tuple(float(c) for c in rng.uniform(1.0 - j, 1.0 + j, 3))
    return Augmentation(scale=scale, rotation_deg=rotation if rotate else 0.0, flip=bool(flip), color=color)


def augment_matrix(rotation_deg: float, flip: bool) -> np.ndarray:
    """The 2 × 2 map R·F applied to crop coordinates (and, as diag(R·F, 1), to the camera-frame body)."""
    t = math.radians(rotation_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return rot @ np.diag([-1.0 if flip else 1.0, 1.0])


# ------------------------------------------------------------------------------------------------- reader
@dataclass
class ReaderConfig:
    """How :class:`DatasetReader` crops: ``crop_size`` px square; ``min_confidence`` as the app's detector
    (keypoints below it are missing and do not shape the box); ``split``: keep only that split (people
    without one are then left out); ``check_images`` stats every image at construction so a missing file
    fails at once rather than hours into training; ``drop_outside_crop`` marks keypoints the augmented crop
    cuts off as missing, as a detector run on that crop could not see them."""

    crop_size: int = 224
    min_confidence: float = 0.5
    split: str | None = None
    check_images: bool = True
    drop_outside_crop: bool = True
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


class DatasetReader:
    """A torch ``Dataset`` over a dataset folder: ``reader[i]`` -> a sample dict (see :meth:`load`).

    ``vertex_flip`` (V,) is the mirror permutation of the mesh (vertex i of the mirrored mesh is the mirror
    of vertex ``vertex_flip[i]``); it depends on the topology, so the caller gives it and without it
    meshes are never flipped. ``pose_flip`` maps a body name to the left/right permutation of its pose
    joints (the pose vector as (J, 3) axis-angles), needed to flip samples stored as parameters.
    ``pose_body(params) -> (V, 3)`` poses parameters into camera-frame vertices before augmentation, so
    the returned mesh is exact (parameters alone are augmented approximately, see :meth:`load`).

    Randomness: sample ``i`` of epoch ``e`` draws from a generator seeded by (seed, e, i), so batches are
    reproducible whatever the number of DataLoader workers; call :meth:`set_epoch` every epoch.
    """

    def __init__(self, folder: str | Path, config: ReaderConfig | None = None, *,
                 vertex_flip: Sequence[int] | np.ndarray | None = None,
                 pose_flip: Mapping[str, Sequence[int]] | None = None,
                 pose_body: Callable[[BodyParams], np.ndarray] | None = None):
        self.folder = Path(folder)
        self.config = config or ReaderConfig()
        self.vertex_flip = None if vertex_flip is None else _permutation(vertex_flip, "vertex_flip")
        self.pose_flip = {k: _permutation(v, f"pose_flip[{k!r}]") for k, v in (pose_flip or {}).items()}
        self.pose_body = pose_body
        records = read_table(self.folder)
        if self.config.split is not None:
            records = [r for r in records if r.split == self.config.split]
        if self.config.check_images:
            seen: set[str] = set()
            for rec in records:
                if rec.image not in seen and not (self.folder / rec.image).is_file():
                    raise ValueError(f"{rec.where}: image {rec.image} not found in {self.folder}")
                seen.add(rec.image)
        self.records = records
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"person {index} of a dataset of {len(self)}")
        index %= len(self)
        rng = np.random.default_rng([self.config.seed, self.epoch, index])
        return self.load(index, draw_augmentation(self.config.augment, rng))

    def load(self, index: int, aug: Augmentation | None = None) -> dict[str, Any]:
        """Person ``index`` with augmentation ``aug`` applied (None: none).

        Keys: ``image`` (3, S, S) float32 RGB normalised with the ImageNet mean/std; ``keypoints`` (17, 3)
        crop coords in [-1, 1] (x right, y down) + confidence, missing = (0, 0, 0); ``vertices`` (V, 3)
        and/or ``params`` as stored (after augmentation); ``rotation_2d`` (2, 2) the map R·F applied to
        crop coordinates (diag(R·F, 1) to the body), ``rotation_deg``, ``flipped``, ``scale``; the crop box
        ``box_center`` (2,) and ``box_side`` px in the image; ``image_size`` (W, H); ``focal`` px (NaN
        when unknown); ``index``.

        The body is turned about the camera's optical axis by the image's rotation and mirrored in x with
        the flip: its orientation in the crop matches the image exactly; its position matches exactly when
        the box centre is the principal point, and under the weak-perspective camera otherwise. Parameters
        get ``global_orient`` ← R·F·G·F and ``transl`` ← R·F·t, i.e. as if the model's root joint were at
        its origin (exact vertices come from ``pose_body``).
        """
        aug = aug or Augmentation()
        rec = self.records[index]
        image = self._read_image(rec)
        height, width = image.shape[:2]
        raw_kp = rec.keypoints_2d if rec.keypoints_2d is not None else np.zeros((17, 3))
        det = PersonDetection.from_keypoints(raw_kp, (width, height), min_confidence=self.config.min_confidence,
                                             bbox=None if rec.box is None else tuple(rec.box))
        vertices = rec.vertices
        if vertices is None and self.pose_body is not None:
            vertices = np.asarray(self.pose_body(rec.params), dtype=np.float32)
            if vertices.ndim != 2 or vertices.shape[1] != 3:
                raise ValueError(f"{rec.where}: pose_body returned shape {vertices.shape}, expected (V, 3)")
        flip = aug.flip and self._can_flip(rec, vertices)
        lin = augment_matrix(aug.rotation_deg, flip)
        side = det.box_side * aug.scale
        sample: dict[str, Any] = {
            "image": self._crop_image(image, det.box_center, side, lin, aug.color),
            "keypoints": self._keypoints(det, lin / aug.scale, flip),
            "rotation_2d": torch.as_tensor(lin, dtype=torch.float32),
            "rotation_deg": float(aug.rotation_deg), "flipped": bool(flip), "scale": float(aug.scale),
            "box_center": torch.as_tensor(det.box_center, dtype=torch.float32),
            "box_side": torch.tensor(side, dtype=torch.float32),
            "image_size": torch.tensor([width, height], dtype=torch.float32),
            "focal": torch.tensor(math.nan if rec.focal is None else rec.focal, dtype=torch.float32),
            "index": int(index),
        }
        lin3 = np.eye(3)
        lin3[:2, :2] = lin
        if vertices is not None:
            moved = vertices @ lin3.T.astype(np.float32)
            sample["vertices"] = torch.as_tensor(moved[self.vertex_flip] if flip else moved)
        if rec.params is not None:
            sample["params"] = _augment_params(rec.params, lin3, self.pose_flip.get(rec.params.body) if flip else None)
        return sample

    # ------------------------------------------------------------------------------------------- helpers
    def _read_image(self, rec: PersonRecord) -> np.ndarray:
        import cv2

        image = cv2.imread(str(self.folder / rec.image), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{rec.where}: image {rec.image} is missing or not an image OpenCV reads")
        return image

    def _can_flip(self, rec: PersonRecord, vertices: np.ndarray | None) -> bool:
        if vertices is not None:
            if self.vertex_flip is None:
                return False
            if len(self.vertex_flip) != len(vertices):
                raise ValueError(f"{rec.where}: vertex_flip has {len(self.vertex_flip)} entries, the body "
                                 f"{len(vertices)} vertices")
        if rec.params is not None:
            perm = self.pose_flip.get(rec.params.body)
            if perm is None:
                return False
            if 3 * len(perm) != rec.params.pose.size:
                raise ValueError(f"{rec.where}: pose_flip[{rec.params.body!r}] has {len(perm)} joints, the pose "
                                 f"{rec.params.pose.size} numbers")
        return True

    def _keypoints(self, det: PersonDetection, lin: np.ndarray, flip: bool) -> torch.Tensor:
        """Inference's crop keypoints, then the augmentation; missing stays exactly (0, 0, 0)."""
        kp = crop_keypoints(det).astype(np.float64)
        valid = det.valid.copy()
        kp[:, :2] = kp[:, :2] @ lin.T
        if flip:
            perm = list(COCO17_FLIP_PERMUTATION)
            kp, valid = kp[perm], valid[perm]
        if self.config.drop_outside_crop:
            valid &= (np.abs(kp[:, :2]) <= 1.0).all(axis=1)
        kp[~valid] = 0.0
        return torch.as_tensor(kp, dtype=torch.float32)

    def _crop_image(self, image: np.ndarray, center: np.ndarray, side: float, lin: np.ndarray,
                    color: tuple[float, float, float]) -> torch.Tensor:
        """Warp the box (turned and mirrored by ``lin``) to a square crop; crop pixel q ↔ (q / S)·2 − 1: the
        inference crop (:func:`megaviewer.vision.crops.warp_crop`) with the augmentation."""
        size = self.config.crop_size
        return warp_crop(image, (float(center[0]), float(center[1])), side, (size, size), lin, color)


def _permutation(values: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    perm = np.asarray(values, dtype=np.int64).reshape(-1)
    if not np.array_equal(np.sort(perm), np.arange(perm.size)):
        raise ValueError(f"{name} must be a permutation of 0..{perm.size - 1}")
    return perm


def _augment_params(params: BodyParams, lin3: np.ndarray, pose_perm: np.ndarray | None) -> dict[str, Any]:
    """Parameters after the body's rotation/mirror ``lin3``; ``pose_perm`` given means mirrored."""
    from scipy.spatial.transform import Rotation

    orient = Rotation.from_rotvec(params.global_orient).as_matrix()
    pose = params.pose
    if pose_perm is not None:
        orient = orient @ _MIRROR_X  # lin3 already holds the left-hand mirror: M·G·M
        pose = (pose.reshape(-1, 3)[pose_perm] * [1.0, -1.0, -1.0]).reshape(-1)
    out: dict[str, Any] = {
        "body": params.body,
        "pose": torch.as_tensor(pose, dtype=torch.float32),
        "shape": torch.as_tensor(params.shape, dtype=torch.float32),
        "global_orient": torch.as_tensor(Rotation.from_matrix(lin3 @ orient).as_rotvec(), dtype=torch.float32),
    }
    if params.transl is not None:
        out["transl"] = torch.as_tensor(lin3 @ params.transl, dtype=torch.float32)
    return out
