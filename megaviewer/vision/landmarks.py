"""The detector's 3D body landmarks: MediaPipe BlazePose's ``pose_world_landmarks``, checked once on the way in.

Why keep them: BlazePose estimates, beside the 2D keypoints MEGA is conditioned on, 33 landmarks in metres
around the centre of the hips. They are a second, independent observation of the body's 3D pose (and a
metric size), so the detector, the ``--keypoints`` JSON file, the engine's result and the NPZ export all
carry them for the models and tools that use them.

Layout: (33, 4) float32 per person, BlazePose's landmark order (``nose``, eyes, ears, mouth, shoulders,
elbows, wrists, hand points, hips, knees, ankles, heels, foot tips), columns x, y, z in metres and a
visibility in [0, 1]. Axes as MediaPipe's: origin between the hips, x to the image's right, y down, z away
from the camera. Input may omit the visibility (33 × 3: taken as 1) and may be flat (99 or 132 numbers).
"""

from __future__ import annotations

import numpy as np

LANDMARK_COUNT = 33
MAX_ABS_METRES = 3.0
"""No landmark of a person lies this far from their hips; larger values are pixels or another unit."""


def parse_landmarks_3d(value: object, name: str = "landmarks_3d") -> np.ndarray:
    """``value`` -> (33, 4) float32 (x, y, z metres, visibility), or (B, 33, 4) for a batch of people.

    Raises ``ValueError`` with one line that says what is wrong: not numbers, the wrong count, a NaN or
    infinite value, or coordinates too large to be metres around the hips.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be 33 landmarks of (x, y, z[, visibility]) numbers") from None
    if arr.ndim == 1 and arr.size in (LANDMARK_COUNT * 3, LANDMARK_COUNT * 4):
        arr = arr.reshape(LANDMARK_COUNT, -1)
    if arr.ndim < 2 or arr.shape[-2] != LANDMARK_COUNT or arr.shape[-1] not in (3, 4):
        raise ValueError(f"{name} must be 33 landmarks of (x, y, z[, visibility]), as MediaPipe's "
                         f"pose_world_landmarks; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    largest = float(np.abs(arr[..., :3]).max(initial=0.0))
    if largest > MAX_ABS_METRES:
        raise ValueError(f"{name} reaches {largest:g} m from the hips; they are metres around the hips "
                         f"(MediaPipe's pose_world_landmarks), not pixels")
    if arr.shape[-1] == 3:
        arr = np.concatenate([arr, np.ones((*arr.shape[:-1], 1))], axis=-1)
    arr[..., 3] = arr[..., 3].clip(0.0, 1.0)
    return arr.astype(np.float32)


def coco_landmarks(landmarks_33):
    """(..., 33, 4) landmarks -> the 17 at the COCO-17 points (..., 17, 4), the input of a landmark-conditioned
    model, as a float32 tensor."""
    import torch

    from megaviewer.vision.detector import MEDIAPIPE_TO_COCO17

    lm = torch.as_tensor(landmarks_33, dtype=torch.float32)
    return lm[..., list(MEDIAPIPE_TO_COCO17), :]
