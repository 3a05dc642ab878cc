"""How MediaPipe's 3D world landmarks err, measured on rendered people, and the same errors simulated.

Why measured: the landmarks are an observation of the body in depth learned from real photos, with
errors of their own (a size normalised to an average adult, a forward lean, hip points that are not Anny's
hips, arms pulled toward the body, left/right or front/back confusions). A model trained on landmarks
with guessed noise would trust them too much or too little. Here the detector runs on photos of bodies whose
joints are known (:mod:`training.data.renders`), and every error component is fitted separately:

1. **labels swapped** left/right (the swapped ground truth fits far better), rate ``swap_prob``;
2. **facing the wrong way** (best rotation > 90 deg), rate ``reverse_prob``;
3. **size**: log of the ratio of limb lengths, mean and SD (MediaPipe does not know the person's height);
4. **rotation error** of the whole skeleton (rotation vector in camera axes): mean (the lean) and a robust
   SD (from the median absolute deviation), scaled per person by the severity of 6;
5. **per-joint offset** in the body's own frame (different joint definitions): mean;
6. **per-joint noise** in camera axes after 1-5: SD per axis (depth is the worst), times a log-normal
   per-person severity (some poses the detector gets nearly right, some badly: a heavy tail);
7. **visibility** the detector reports per joint: mean and SD.

:meth:`LandmarkNoise.simulate` applies them in that order to ground-truth joints, so conditioned training
sees landmarks the way the detector gives them. The landmarks are the 17 COCO points of BlazePose's 33
(``MEDIAPIPE_TO_COCO17``), hip-centred, metres, OpenCV camera axes (x right, y down, z away), as
:mod:`megaviewer.vision.landmarks` stores them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from megaviewer.body.keypoints import COCO17_FLIP_PERMUTATION
from megaviewer.geometry.metrics import procrustes_rotation
from megaviewer.geometry.rotations import matrix_to_rotvec, rotvec_to_matrix
from megaviewer.model.lifter import hip_centred

LIMB_BONES = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 11), (6, 12))
SWAP_RATIO = 0.7  # swapped labels explain the landmarks this much better -> a swap
REVERSED_DEG = 90.0


def limb_length(joints: np.ndarray) -> np.ndarray:
    """(..., 17, 3) -> summed length of the limb bones (...,)."""
    return sum(np.linalg.norm(joints[..., a, :] - joints[..., b, :], axis=-1) for a, b in LIMB_BONES)


def best_rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The rotation R (3, 3) minimising |R source_i - target_i| over centred point sets (17, 3), in numpy."""
    return procrustes_rotation(torch.from_numpy(np.asarray(source, np.float64)),
                               torch.from_numpy(np.asarray(target, np.float64))).numpy()


def rotation_vector(rot: np.ndarray) -> np.ndarray:
    """(3, 3) -> axis · angle (rad), in numpy."""
    return matrix_to_rotvec(torch.from_numpy(np.asarray(rot, np.float64))).numpy()


@dataclass
class LandmarkNoise:
    """The measured error model of the detector's 3D landmarks (see the module docstring)."""

    swap_prob: float = 0.0
    reverse_prob: float = 0.0
    log_scale_mean: float = 0.0
    log_scale_sd: float = 0.0
    rotation_mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # rad, camera axes
    rotation_sd: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    offset_body: list[list[float]] = field(default_factory=lambda: [[0.0] * 3 for _ in range(17)])  # m
    noise_sd: list[list[float]] = field(default_factory=lambda: [[0.0] * 3 for _ in range(17)])  # m, camera axes
    log_severity_mean: float = 0.0  # per-person noise multiplier, log-normal
    log_severity_sd: float = 0.0
    visibility_mean: list[float] = field(default_factory=lambda: [1.0] * 17)
    visibility_sd: list[float] = field(default_factory=lambda: [0.0] * 17)
    measured_on: dict = field(default_factory=dict)  # how many renders, detections, the fit's summary

    def to_json(self, path: str | Path) -> Path:
        from megaviewer.io.atomic import atomic_write_text

        path = Path(path)
        atomic_write_text(path, json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> LandmarkNoise:
        return cls(**json.loads(Path(path).read_text()))

    # ------------------------------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, gt_joints_cam: np.ndarray, rot_cam: np.ndarray, landmarks: np.ndarray) -> LandmarkNoise:
        """Fit every component from ground-truth camera-frame joints (B, 17, 3), the bodies' camera-frame
        rotations (B, 3, 3) and the detector's landmarks (B, 17, 4) of the same people."""
        gt = hip_centred(np.asarray(gt_joints_cam, np.float64))
        det = hip_centred(np.asarray(landmarks, np.float64)[..., :3])
        vis = np.asarray(landmarks, np.float64)[..., 3]
        perm = list(COCO17_FLIP_PERMUTATION)
        swapped = np.zeros(len(gt), bool)
        reversed_ = np.zeros(len(gt), bool)
        scales, rotvecs, residual_body, residual_cam, rots = [], [], [], [], []
        for i in range(len(gt)):
            g, d = gt[i], det[i]
            errors = []
            for labels in (g, g[perm]):
                s = limb_length(d) / limb_length(labels)
                r = best_rotation(s * labels, d)
                errors.append(np.linalg.norm(d - s * labels @ r.T, axis=1).mean())
            swapped[i] = errors[1] < SWAP_RATIO * errors[0]
            if swapped[i]:
                d = d[perm]  # undo the swap; the rest of the model describes an unswapped detection
            s = limb_length(d) / limb_length(g)
            r = best_rotation(s * g, d)
            rv = rotation_vector(r)
            if np.degrees(np.linalg.norm(rv)) > REVERSED_DEG:
                reversed_[i] = True
                continue
            scales.append(np.log(s))
            rotvecs.append(rv)
            rots.append((r, s, d, g, np.asarray(rot_cam[i], np.float64)))
        rotvecs = np.array(rotvecs)
        rot_mean = rotvecs.mean(0)
        for r, s, d, g, body_rot in rots:
            # What rotation and size do not explain, in the body's frame (a joint-definition offset) ...
            residual_body.append((d - s * g @ r.T) @ r @ body_rot / s)
        offset = np.array(residual_body).mean(0)
        for (r, s, d, g, body_rot) in rots:
            explained = s * (g + offset @ body_rot.T) @ r.T
            residual_cam.append(d - explained)  # ... and the rest, in camera axes
        residual_cam = np.array(residual_cam)
        # Some people are seen far worse than others (a pose the detector knows badly): a per-person severity
        # that scales the noise gives the heavy tail a single Gaussian cannot.
        rms = np.sqrt((residual_cam ** 2).mean(axis=(1, 2)))
        severity = rms / np.median(rms)
        kept = ~(swapped | reversed_)
        return cls(swap_prob=float(swapped.mean()), reverse_prob=float(reversed_.mean()),
                   log_scale_mean=float(np.mean(scales)), log_scale_sd=float(np.std(scales)),
                   rotation_mean=rot_mean.tolist(),
                   rotation_sd=(1.4826 * np.median(np.abs(rotvecs - np.median(rotvecs, 0)), 0)).tolist(),
                   offset_body=offset.round(5).tolist(),
                   noise_sd=(residual_cam / severity[:, None, None]).std(0).round(5).tolist(),
                   log_severity_mean=float(np.log(severity).mean()), log_severity_sd=float(np.log(severity).std()),
                   visibility_mean=vis[kept].mean(0).round(4).tolist(),
                   visibility_sd=vis[kept].std(0).round(4).tolist(),
                   measured_on={"people": int(len(gt)),
                                "median_error_mm": float(np.median(np.linalg.norm(residual_cam, axis=-1)) * 1000)})

    # ----------------------------------------------------------------------------------------- simulating
    def simulate(self, joints_cam: torch.Tensor, rot_cam: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Ground-truth camera-frame joints (B, 17, 3) and body rotations (B, 3, 3) -> landmarks (B, 17, 4)
        (x, y, z metres around the hips, visibility) as the detector would report them."""
        batch = joints_cam.shape[0]
        dtype = joints_cam.dtype
        g = generator

        def tensor(values) -> torch.Tensor:
            return torch.as_tensor(values, dtype=dtype)

        def normal(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=g, dtype=dtype)

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=g, dtype=dtype)

        joints = hip_centred(joints_cam)
        joints = joints + tensor(self.offset_body) @ rot_cam.transpose(-1, -2).to(dtype)
        severity = torch.exp(self.log_severity_mean + self.log_severity_sd * normal(batch))
        rotvec = tensor(self.rotation_mean) + severity[:, None] * tensor(self.rotation_sd) * normal(batch, 3)
        reverse = uniform(batch) < self.reverse_prob
        half_turn = torch.zeros(batch, 3, dtype=dtype)
        half_turn[:, 1] = torch.pi  # about the camera's vertical axis: facing the other way
        rot = rotvec_to_matrix(rotvec) @ torch.where(reverse[:, None, None], rotvec_to_matrix(half_turn),
                                                    torch.eye(3, dtype=dtype))
        scale = torch.exp(self.log_scale_mean + self.log_scale_sd * normal(batch))
        out = scale[:, None, None] * joints @ rot.transpose(-1, -2)
        out = out + severity[:, None, None] * tensor(self.noise_sd) * normal(batch, 17, 3)
        swap = uniform(batch) < self.swap_prob
        out = torch.where(swap[:, None, None], out[:, list(COCO17_FLIP_PERMUTATION)], out)
        out = hip_centred(out)
        vis = (tensor(self.visibility_mean) + tensor(self.visibility_sd) * normal(batch, 17)).clamp(0.0, 1.0)
        return torch.cat([out, vis[..., None]], dim=-1)


@dataclass
class Detections:
    """The detector's answer for rendered people, matched to the person in each photo."""

    found: np.ndarray  # (B,) bool
    keypoints: np.ndarray  # (B, 17, 3) px + confidence (zeros when not found)
    landmarks_33: np.ndarray  # (B, 33, 4) 3D landmarks, zeros when not found or absent
    has_landmarks: np.ndarray  # (B,) bool
    detections: list  # the PersonDetection objects (None when not found)

    image_sizes: np.ndarray | None = None  # (B, 2) W, H of the photos

    def save(self, path: str | Path) -> None:
        """Arrays only (npz, no pickles); :meth:`load` rebuilds the detections from them."""
        np.savez(path, found=self.found, keypoints=self.keypoints, landmarks_33=self.landmarks_33,
                 has_landmarks=self.has_landmarks, image_sizes=self.image_sizes)

    @classmethod
    def load(cls, path: str | Path) -> Detections:
        from megaviewer.vision.detector import PersonDetection

        data = np.load(path)
        detections = [PersonDetection.from_keypoints(kp, (int(size[0]), int(size[1])), source="mediapipe",
                                                     landmarks_3d=lm if has else None) if found else None
                      for kp, lm, has, found, size in zip(data["keypoints"], data["landmarks_33"],
                                                          data["has_landmarks"], data["found"], data["image_sizes"],
                                                          strict=True)]
        return cls(data["found"], data["keypoints"], data["landmarks_33"], data["has_landmarks"], detections,
                   data["image_sizes"])

    @property
    def landmarks(self) -> np.ndarray:
        """(B, 17, 4): the landmarks at the COCO-17 points."""
        from megaviewer.vision.detector import MEDIAPIPE_TO_COCO17

        return self.landmarks_33[:, list(MEDIAPIPE_TO_COCO17)]


def detect_rendered(images: list[np.ndarray], gt_pixels: np.ndarray, detector=None,
                    progress: bool = False) -> Detections:
    """Run the pose detector on every photo; keep the detection whose keypoints lie nearest to the true
    projections ``gt_pixels`` (B, 17, 2)."""
    from megaviewer.vision.detector import PoseDetector

    own = detector is None
    detector = detector or PoseDetector()
    count = len(images)
    out = Detections(np.zeros(count, bool), np.zeros((count, 17, 3)), np.zeros((count, 33, 4)),
                     np.zeros(count, bool), [None] * count,
                     np.array([[image.shape[1], image.shape[0]] for image in images], np.int64).reshape(-1, 2))
    try:
        for i, image in enumerate(images):
            detector.reset()
            found = detector.detect(image)
            if found:
                dist = [np.nanmedian(np.linalg.norm(d.keypoints[:, :2] - gt_pixels[i], axis=1)) for d in found]
                best = found[int(np.argmin(dist))]
                out.found[i] = True
                out.keypoints[i] = best.keypoints
                out.detections[i] = best
                if best.landmarks_3d is not None:
                    out.landmarks_33[i] = best.landmarks_3d
                    out.has_landmarks[i] = True
            if progress and (i + 1) % 16 == 0:
                print(f"detected {i + 1}/{count}", flush=True)
    finally:
        if own:
            detector.close()
    return out
