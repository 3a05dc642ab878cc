"""Offline 2D keypoints of the people in a photo: MediaPipe BlazePose (full model) -> COCO-17.

Why MediaPipe: it runs on a CPU in ~40 ms, and mediapipe 0.10.21's wheel ships the two networks of
``model_complexity=1`` (``pose_detection.tflite`` + ``pose_landmark_full.tflite``), so nothing downloads.
Its 33 landmarks are mapped to COCO-17 (the keypoints MEGA is conditioned on) and its
per-landmark *visibility* becomes the keypoint confidence. Its 33 3D landmarks in metres
(``pose_world_landmarks``) are kept beside them (:mod:`megaviewer.vision.landmarks`).

Multi-person. The solutions API (``mp.solutions.pose.Pose``) returns one person per call. The tasks API
(``PoseLandmarker(num_poses=N)``) needs a ``.task`` bundle the wheel does not ship; one *can* be assembled
offline from the wheel's two ``.tflite`` files plus NormalizationOptions metadata (we checked: same
landmarks within 2 px), but its single 224-px detector pass found only one of two side-by-side people, so
it buys nothing over the approach used here, which does find both:

1. run the detector on the image; accept the person if enough keypoints are confident (nobody found
   here -> nobody at all: tiles of a person-free photo mostly find faces in clouds);
2. paint that person's keypoint box grey and run again, up to ``max_people`` people;
3. when the whole image yields nobody new, search square tiles (side = the image's short side, then half
   of it, 50 % overlap), because BlazePose's detector sees the image at 224 px and misses small people;
   every person after the first is re-detected on a square crop centred on them (a tile may cut limbs;
   a half-grey full view gives worse keypoints);
4. reject extra candidates that are small, miss a shoulder, are upside down, have keypoints on the grey
   of people already found, or whose box overlaps one of theirs.

Cost: one pass per person plus one final (empty) pass, plus the tile passes (up to ~12 detector runs of
~40 ms) when looking for more people than are found. ``max_people=1`` is a single pass. The live-video
variant (``tracking=True``: ``static_image_mode=False``) follows one person from frame to frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from megaviewer.body.keypoints import COCO17_NAMES

MEDIAPIPE_TO_COCO17: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
"""BlazePose landmark index of each COCO-17 keypoint (nose, eyes, ears, shoulders, ..., ankles)."""

BOX_SCALE = 1.2  # the crop box around the keypoints, as in training (megaviewer.camera)
REFINE_CROP_FACTORS = (1.6, 2.5)  # crop sides (x the keypoint box) tried when re-detecting an extra person
MIN_PERSON_PX = 40  # people after the first: keypoint box at least this long ...
MIN_PERSON_FRACTION = 0.1  # ... and this fraction of the image's short side


class DetectionList(list):
    """A plain list of :class:`PersonDetection` plus ``message``: why it is empty, or what was found."""

    def __init__(self, items=(), message: str = ""):
        super().__init__(items)
        self.message = message


@dataclass
class PersonDetection:
    """One person's COCO-17 keypoints in image pixels and the square crop box MEGA sees."""

    keypoints: np.ndarray  # (17, 3) x, y in pixels, confidence in [0, 1] (MediaPipe visibility)
    valid: np.ndarray  # (17,) bool: confident enough and inside the image; others are "missing"
    box_center: np.ndarray  # (2,) px
    box_side: float  # px
    score: float  # mean confidence of the 17 keypoints
    image_size: tuple[int, int]  # (W, H)
    source: str = "mediapipe"
    landmarks: np.ndarray | None = None  # (33, 4) raw BlazePose landmarks: x, y px, z (relative), visibility
    landmarks_3d: np.ndarray | None = None  # (33, 4) x, y, z metres around the hips, visibility (vision.landmarks)

    @classmethod
    def from_keypoints(cls, keypoints: np.ndarray, image_size: tuple[int, int], min_confidence: float = 0.5,
                       bbox: tuple[float, float, float, float] | None = None, source: str = "keypoints",
                       landmarks: np.ndarray | None = None, score: float | None = None,
                       landmarks_3d: np.ndarray | None = None) -> PersonDetection:
        """Build a detection from (17, 3) pixel keypoints (from any detector or a COCO JSON file).

        Keypoints with confidence below ``min_confidence`` or outside the image are marked missing; the box
        is :func:`megaviewer.camera.square_box_from_keypoints` (x1.2) of the rest, as in training. With
        fewer than two usable keypoints an optional ``bbox`` (x, y, w, h) gives the box (side 1.2·max(w, h)),
        else the whole image. ``landmarks_3d`` (the detector's 3D landmarks) are checked by
        :func:`megaviewer.vision.landmarks.parse_landmarks_3d` and carried unchanged.
        """
        import torch

        from megaviewer.camera import square_box_from_keypoints
        from megaviewer.vision.landmarks import parse_landmarks_3d

        kp = np.asarray(keypoints, dtype=np.float64).reshape(17, 3).copy()
        finite = np.isfinite(kp).all(axis=1)  # a NaN/inf x or y is a missing keypoint, not one at 0
        kp[~np.isfinite(kp)] = 0.0
        kp[:, 2] = kp[:, 2].clip(0.0, 1.0)  # confidences are probabilities; 1e38 must not overflow float32 later
        w, h = int(image_size[0]), int(image_size[1])
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= w - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= h - 1)
        valid = (kp[:, 2] >= min_confidence) & (kp[:, 2] > 0) & inside & finite
        center = side = None
        if valid.sum() < 2 and bbox is not None:
            b = np.asarray(bbox[:4], dtype=np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                box_center = np.array([b[0] + b[2] / 2.0, b[1] + b[3] / 2.0])
                box_side = BOX_SCALE * max(b[2], b[3])
            # A NaN/inf (or overflowing) box would put NaN into the crop camera, and a box that misses the image or
            # is smaller than a pixel frames nobody in it (and overflows float32 crop coordinates): use the
            # keypoints/image instead.
            with np.errstate(over="ignore", invalid="ignore"):
                overlaps = bool(b[0] < w and b[1] < h and b[0] + b[2] > 0 and b[1] + b[3] > 0)
            if (b[2] > 0 and b[3] > 0 and overlaps and np.isfinite(box_center).all() and np.isfinite(box_side)
                    and box_side >= 1.0):
                center, side = box_center, float(box_side)
        if center is None:
            c, s = square_box_from_keypoints(torch.as_tensor(kp[None, :, :2], dtype=torch.float32),
                                             torch.as_tensor(valid[None], dtype=torch.float32), scale=BOX_SCALE,
                                             image_size=(w, h))
            center, side = c[0].double().numpy(), float(s[0])
        conf_score = float(kp[:, 2].clip(0, 1).mean()) if score is None else float(score)
        return cls(keypoints=kp, valid=valid, box_center=np.asarray(center, dtype=np.float64), box_side=float(side),
                   score=conf_score, image_size=(w, h), source=source, landmarks=landmarks,
                   landmarks_3d=parse_landmarks_3d(landmarks_3d) if landmarks_3d is not None else None)

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    def tight_box(self) -> np.ndarray:
        """(x0, y0, x1, y1) of the usable keypoints (the crop box's square if fewer than two)."""
        pts = self.keypoints[self.valid, :2]
        if len(pts) < 2:
            half = self.box_side / 2.0
            return np.array([*(self.box_center - half), *(self.box_center + half)])
        return np.array([*pts.min(axis=0), *pts.max(axis=0)])

    def crop_keypoints(self) -> np.ndarray:
        return crop_keypoints(self)

    def crop_box(self, image_size: tuple[int, int] | None = None):
        return crop_box(self, image_size)

    def describe(self) -> str:
        names = [COCO17_NAMES[i] for i in np.flatnonzero(~self.valid)]
        missing = f", missing {', '.join(names)}" if names else ""
        return f"{self.num_valid}/17 keypoints, score {self.score:.2f}{missing}"


def crop_keypoints(det: PersonDetection) -> np.ndarray:
    """(17, 3) keypoints in normalised crop coords (the box maps to [-1, 1]²) + confidence, as MEGA is
    conditioned; missing keypoints are exactly (0, 0, 0), as in training."""
    out = np.zeros((17, 3), dtype=np.float32)
    # Only the usable rows: a missing keypoint may hold any finite number, which must not overflow here.
    out[det.valid, :2] = (det.keypoints[det.valid, :2] - det.box_center[None]) * (2.0 / det.box_side)
    out[det.valid, 2] = det.keypoints[det.valid, 2]
    return out


def crop_box(det: PersonDetection, image_size: tuple[int, int] | None = None):
    """The detection's square box as the engine's :class:`~megaviewer.engine.CropBox`."""
    from megaviewer.engine import CropBox

    size = image_size if image_size is not None else det.image_size
    return CropBox(center=(float(det.box_center[0]), float(det.box_center[1])), side=float(det.box_side),
                   image_size=(int(size[0]), int(size[1])))


@dataclass
class PoseDetector:
    """MediaPipe BlazePose (full) person detector; see the module docstring for the multi-person search.

    ``min_confidence`` is the visibility below which a keypoint counts as missing; a person needs at least
    ``min_keypoints`` usable keypoints. ``tracking=True`` is for live video (one person, followed from frame
    to frame; call :meth:`reset` between streams). Images larger than ``detect_max_side`` are downscaled
    for detection only (BlazePose works at 224/256 px anyway); keypoints come back in input pixels.
    """

    min_confidence: float = 0.5
    max_people: int = 4
    tracking: bool = False
    min_keypoints: int = 4
    detect_max_side: int = 1920
    tile_search: bool = True
    last_timings_ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import mediapipe as mp

        if self.max_people < 1:
            raise ValueError(f"max_people must be >= 1, got {self.max_people}")
        self._pose = mp.solutions.pose.Pose(static_image_mode=not self.tracking, model_complexity=1,
                                            enable_segmentation=False, min_detection_confidence=0.5,
                                            min_tracking_confidence=0.5)

    # ----------------------------------------------------------------------------------------- public
    def detect(self, image_bgr: np.ndarray) -> DetectionList:
        """People in ``image_bgr`` (BGR uint8; gray/BGRA accepted), best first; empty list + message if none."""
        import cv2

        from megaviewer.vision.images import ensure_bgr_uint8

        t0 = time.perf_counter()
        bgr = ensure_bgr_uint8(image_bgr)
        h, w = bgr.shape[:2]
        if min(h, w) < 8:
            return DetectionList([], f"no person found (the image is only {w}x{h} pixels)")
        factor = min(1.0, self.detect_max_side / max(w, h))
        if factor < 1.0:
            bgr = cv2.resize(bgr, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        self._runs = 0
        if self.tracking or self.max_people == 1:
            det = self._run(rgb, (0, 0), rgb.shape[1::-1])
            people = [det] if det is not None and self._acceptable(det, []) else []
        else:
            people = self._search(rgb)
        people = [_rescale(d, 1.0 / factor, (w, h), self.min_confidence) for d in people] if factor < 1 else people
        self.last_timings_ms = {"detect_ms": (time.perf_counter() - t0) * 1000, "detector_runs": float(self._runs)}
        if not people:
            return DetectionList([], "no person found (MediaPipe BlazePose saw nobody with at least "
                                     f"{self.min_keypoints} keypoints of confidence >= {self.min_confidence:g})")
        noun = "person" if len(people) == 1 else "people"
        return DetectionList(people, f"found {len(people)} {noun}")

    def reset(self) -> None:
        """Forget the tracked person (start of a new video stream)."""
        self.close()
        self.__post_init__()

    def close(self) -> None:
        pose = getattr(self, "_pose", None)
        if pose is not None:
            pose.close()
            self._pose = None

    def __enter__(self) -> PoseDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- search
    def _search(self, rgb: np.ndarray) -> list[PersonDetection]:
        size = (rgb.shape[1], rgb.shape[0])
        work = rgb.copy()
        masked = np.zeros(rgb.shape[:2], dtype=bool)
        people: list[PersonDetection] = []
        while len(people) < self.max_people:
            det = self._run(work, (0, 0), size)
            if det is None or not self._acceptable(det, people, masked):
                # Tiles only look for *more* people: on an image where the full view finds nobody, tiles
                # mostly find faces in clouds (checked on skimage's rocket photo).
                det = self._search_tiles(work, people, masked) if self.tile_search and people else None
            if det is None:
                break
            if people:
                det = self._refine(rgb, det, people, masked)
            people.append(det)
            _mask(work, masked, det)
        return people

    def _search_tiles(self, work: np.ndarray, people: list[PersonDetection], masked: np.ndarray
                      ) -> PersonDetection | None:
        h, w = work.shape[:2]
        size = (w, h)
        best: PersonDetection | None = None
        best_rank = -np.inf
        for side in _tile_sides(w, h):
            for x0, y0 in _tile_origins(w, h, side):
                if masked[y0:y0 + side, x0:x0 + side].mean() > 0.8:
                    continue  # (almost) all grey: nobody new to find, only things to hallucinate
                tile = np.ascontiguousarray(work[y0:y0 + side, x0:x0 + side])
                det = self._run(tile, (x0, y0), size)
                if det is not None and self._acceptable(det, people, masked):
                    # Prefer the tile that holds the person whole: more keypoints, not cut by the tile edge.
                    rank = det.num_valid + det.score - 3.0 * _touches_tile_edge(det, x0, y0, side, size)
                    if rank > best_rank:
                        best, best_rank = det, rank
            if best is not None:
                break
        return best

    def _refine(self, rgb: np.ndarray, det: PersonDetection, people: list[PersonDetection], masked: np.ndarray
                ) -> PersonDetection:
        """Re-detect on a square crop of the *unmasked* image centred on a find: a tile may have cut the
        person's limbs, and a half-grey view gives poorer keypoints (checked on the side-by-side photo).
        If the crop's detector picks someone already found instead, the acceptance test drops it."""
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = det.tight_box()
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        best, best_rank = det, det.num_valid + det.score
        for factor in REFINE_CROP_FACTORS:  # BlazePose's answer varies with framing: keep the best of two
            side = int(min(min(w, h), factor * max(x1 - x0, y1 - y0, 32)))
            left = int(np.clip(cx - side / 2, 0, max(0, w - side)))
            top = int(np.clip(cy - side / 2, 0, max(0, h - side)))
            crop = np.ascontiguousarray(rgb[top:top + side, left:left + side])
            refined = self._run(crop, (left, top), (w, h))
            if refined is not None and self._acceptable(refined, people, masked):
                rank = refined.num_valid + refined.score
                if rank > best_rank:
                    best, best_rank = refined, rank
        return best

    def _acceptable(self, det: PersonDetection, people: list[PersonDetection], masked: np.ndarray | None = None
                    ) -> bool:
        """Enough keypoints; for every person after the first, also: a plausible size, both shoulders seen,
        keypoints not on the grey of people already found and a box not overlapping theirs."""
        if det.num_valid < self.min_keypoints:
            return False
        if not people:
            return True
        w, h = det.image_size
        x0, y0, x1, y1 = box = det.tight_box()
        if max(x1 - x0, y1 - y0) < max(MIN_PERSON_PX, MIN_PERSON_FRACTION * min(w, h)):
            return False
        if not (det.valid[5] and det.valid[6]) or det.num_valid < max(self.min_keypoints, 6) or not _upright(det):
            return False
        pts = det.keypoints[det.valid, :2]
        if masked is not None:
            cols = np.clip(np.round(pts[:, 0]).astype(int), 0, masked.shape[1] - 1)
            rows = np.clip(np.round(pts[:, 1]).astype(int), 0, masked.shape[0] - 1)
            if masked[rows, cols].mean() > 0.25:
                return False
        return all(_iou(box, other.tight_box()) <= 0.4 for other in people)

    def _run(self, rgb: np.ndarray, offset: tuple[int, int], image_size: tuple[int, int]) -> PersonDetection | None:
        """One MediaPipe pass on ``rgb`` (a tile at ``offset`` of an image of ``image_size``)."""
        self._runs += 1
        if self._pose is None:
            raise RuntimeError("PoseDetector is closed")
        result = self._pose.process(rgb)
        if result.pose_landmarks is None:
            return None
        th, tw = rgb.shape[:2]
        lm = np.array([[p.x * tw + offset[0], p.y * th + offset[1], p.z * tw, p.visibility]
                       for p in result.pose_landmarks.landmark], dtype=np.float64)
        kp = np.concatenate([lm[MEDIAPIPE_TO_COCO17, :2], lm[MEDIAPIPE_TO_COCO17, 3:4].clip(0.0, 1.0)], axis=1)
        world = _world_landmarks(result)
        return PersonDetection.from_keypoints(kp, image_size, self.min_confidence, source="mediapipe", landmarks=lm,
                                              landmarks_3d=world)


def _world_landmarks(result) -> np.ndarray | None:
    """BlazePose's 33 metric landmarks (x, y, z metres around the hips, visibility), or ``None``.

    Metres do not depend on where the pass looked (tile, crop or downscaled copy), so they need no
    offset or rescaling. A pass whose 3D landmarks are missing or out of range keeps its 2D keypoints.
    """
    from megaviewer.vision.landmarks import parse_landmarks_3d

    world = getattr(result, "pose_world_landmarks", None)
    if world is None:
        return None
    try:
        return parse_landmarks_3d([[p.x, p.y, p.z, p.visibility] for p in world.landmark])
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ helpers
def _tile_sides(w: int, h: int) -> list[int]:
    """Square tile sides to search: the short side (if the image is clearly not square), then half of it."""
    short = min(w, h)
    sides = [short] if max(w, h) >= 1.25 * short else []
    if short // 2 >= 160:
        sides.append(short // 2)
    return sides


def _tile_origins(w: int, h: int, side: int) -> list[tuple[int, int]]:
    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        step = side // 2
        out = list(range(0, length - side + 1, step))
        if out[-1] != length - side:
            out.append(length - side)
        return out

    return [(x, y) for y in starts(h) for x in starts(w)]


def _touches_tile_edge(det: PersonDetection, x0: int, y0: int, side: int, image_size: tuple[int, int]) -> bool:
    """Whether the person's keypoint box reaches an inner edge of the tile (an image border is fine)."""
    bx0, by0, bx1, by1 = det.tight_box()
    margin = 0.02 * side
    w, h = image_size
    return bool((x0 > 0 and bx0 < x0 + margin) or (y0 > 0 and by0 < y0 + margin)
                or (x0 + side < w and bx1 > x0 + side - margin) or (y0 + side < h and by1 > y0 + side - margin))


def _upright(det: PersonDetection) -> bool:
    """Head above the shoulders and the torso pointing down (within 60 degrees), where those are seen.

    Only asked of people after the first: the extra passes otherwise return upside-down "people" made of
    a helmet and a hand (checked on a side-by-side test photo). Handstands in group photos are lost.
    """
    kp, ok = det.keypoints, det.valid
    shoulders = kp[5:7, :2].mean(axis=0)
    head = [i for i in range(5) if ok[i]]
    if head and kp[head, 1].mean() >= shoulders[1]:
        return False
    hips = [i for i in (11, 12) if ok[i]]
    if hips:
        torso = kp[hips, :2].mean(axis=0) - shoulders
        if torso[1] <= 0.5 * np.linalg.norm(torso):
            return False
    return True


def _pad(box: np.ndarray, frac: float) -> np.ndarray:
    x0, y0, x1, y1 = box
    px, py = frac * (x1 - x0), frac * (y1 - y0)
    return np.array([x0 - px, y0 - py, x1 + px, y1 + py])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _mask(work: np.ndarray, masked: np.ndarray, det: PersonDetection) -> None:
    """Paint the person's (padded) keypoint box mid-grey so the next pass sees someone else."""
    h, w = work.shape[:2]
    box = det.tight_box()
    if det.landmarks is not None:
        # All 33 landmarks, confident or not: the arms and hands the keypoint box leaves out still look like
        # body parts to the next pass (checked: a hand holding a helmet came back as a "person").
        lm = det.landmarks[:, :2]
        box = np.concatenate([np.minimum(box[:2], lm.min(axis=0)), np.maximum(box[2:], lm.max(axis=0))])
    x0, y0, x1, y1 = _pad(box, 0.15)
    x0, x1 = int(np.clip(np.floor(x0), 0, w)), int(np.clip(np.ceil(x1), 0, w))
    y0, y1 = int(np.clip(np.floor(y0), 0, h)), int(np.clip(np.ceil(y1), 0, h))
    work[y0:y1, x0:x1] = 128
    masked[y0:y1, x0:x1] = True


def _rescale(det: PersonDetection, factor: float, image_size: tuple[int, int], min_confidence: float
             ) -> PersonDetection:
    """A detection made on a downscaled copy -> the same person in the original image's pixels."""
    kp = det.keypoints.copy()
    kp[:, :2] *= factor
    lm = None
    if det.landmarks is not None:
        lm = det.landmarks.copy()
        lm[:, :3] *= factor
    return PersonDetection.from_keypoints(kp, image_size, min_confidence, source=det.source, landmarks=lm,
                                          landmarks_3d=det.landmarks_3d)
