"""Photo in, people's meshes out: detect, crop, recover (and for the app, a deterministic reference).

The one recovery path of ``megaviewer infer``, the desktop app (photos and live video) and the benchmarks:
each person is recovered from the crop-normalised keypoints of their detection and the crop box in the
full image, so ``camera_vertices`` sit in the photo's camera frame and draw onto it. The camera is the
photo's (:class:`~megaviewer.intrinsics.PhotoCamera`: its EXIF focal, else a 55° diagonal field of view;
principal point at the image centre) and one camera serves every person of a picture, so several people
stand in one 3D scene. The detector's 3D landmarks go to the engine with the keypoints and stay in the
result; a model conditioned on images also gets each person's crop of the photo
(:mod:`megaviewer.vision.crops`), cut only for such models. Finding nobody is a normal outcome, not an error:
the returned :class:`PeopleList` is then empty and its ``message`` says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from megaviewer.settings import DEFAULTS, RecoverySettings
from megaviewer.vision.detector import PersonDetection, crop_box, crop_keypoints

if TYPE_CHECKING:
    from collections.abc import Sequence

    from megaviewer.engine import CropBox, Engine
    from megaviewer.intrinsics import PhotoCamera
    from megaviewer.result import RecoveryResult

BOX_PAD = 0.08
"""The drawn and clickable box: the keypoints' tight box grown by this fraction (plus 4 px) on each side."""


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> Sequence[PersonDetection]: ...


@dataclass
class Person:
    """One person in a picture: the detection the model is conditioned on and, once recovered, the result."""

    detection: PersonDetection
    result: RecoveryResult | None = None

    @cached_property
    def keypoints(self) -> np.ndarray:
        """(17, 3) pixels + confidence, with the keypoints the model does not use at confidence 0 (drawn as missing)."""
        keypoints = np.asarray(self.detection.keypoints, dtype=np.float32).reshape(17, 3).copy()
        keypoints[~np.asarray(self.detection.valid, bool), 2] = 0.0
        return keypoints

    @cached_property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) around the usable keypoints, padded: what the app draws and picks by."""
        x0, y0, x1, y1 = (float(v) for v in self.detection.tight_box())
        pad_x, pad_y = BOX_PAD * (x1 - x0) + 4, BOX_PAD * (y1 - y0) + 4
        return x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y

    @property
    def score(self) -> float:
        return float(self.detection.score)

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])

    def describe(self) -> str:
        return self.detection.describe()

    def crop(self, camera: PhotoCamera | None = None) -> tuple[np.ndarray, CropBox]:
        """Crop-normalised keypoints (17, 3) and the crop box in the full image, exactly as in training, with
        the photo's ``camera`` (default: :func:`photo_camera` of the detection's image size)."""
        camera = photo_camera(self.detection.image_size, camera)
        box = crop_box(self.detection)
        return crop_keypoints(self.detection), replace(box, focal=camera.focal_px, focal_source=camera.source)


def photo_camera(image_size: tuple[int, int], camera: PhotoCamera | None = None) -> PhotoCamera:
    """``camera`` for an image of ``image_size`` (rescaled when it was made for another size), or the typical
    camera (:func:`megaviewer.intrinsics.typical_camera`) when there is none."""
    from megaviewer.intrinsics import typical_camera

    size = (int(image_size[0]), int(image_size[1]))
    if camera is None:
        return typical_camera(size)
    return camera if tuple(camera.image_size) == size else camera.resized(size)


class PeopleList(list):
    """A list of :class:`Person` plus ``message`` (e.g. "no person found ...") and ``timings_ms``."""

    def __init__(self, items: Sequence[Person] = (), message: str = "", timings_ms: dict[str, float] | None = None):
        super().__init__(items)
        self.message = message
        self.timings_ms = dict(timings_ms or {})

    @property
    def found(self) -> bool:
        return len(self) > 0


@dataclass
class Recovery:
    """One person's recovery: the result for the settings and, when asked for, the deterministic reference
    that stochastic hypotheses are compared against (one cheap pass)."""

    result: RecoveryResult
    reference: RecoveryResult | None
    elapsed_ms: float


def load_detector(tracking: bool = False, max_people: int | None = None,
                  min_confidence: float | None = None) -> Detector:
    """The shipped 2D keypoint detector (imported lazily: mediapipe costs ~1 s to import).

    ``tracking=True`` is the live-video variant (one person followed from frame to frame). MediaPipe graphs
    are not shared between threads, so each thread needs its own instance.
    """
    from megaviewer.vision.detector import PoseDetector

    options: dict[str, Any] = {"tracking": tracking}
    if max_people is not None:
        options["max_people"] = 1 if tracking else max_people
    if min_confidence is not None:
        options["min_confidence"] = min_confidence
    return PoseDetector(**options)


def detect_people(detector: Detector, image: np.ndarray) -> PeopleList:
    """Everyone the detector finds in ``image`` (BGR), best first, with its message and ``detect_ms``."""
    start = time.perf_counter()
    found = detector.detect(image)
    elapsed = (time.perf_counter() - start) * 1000
    return PeopleList([Person(d) for d in found], getattr(found, "message", ""), {"detect_ms": elapsed})


def recover_person(engine: Engine, person: Person, settings: RecoverySettings = DEFAULTS, *,
                   with_reference: bool = False, return_trace: bool = True,
                   camera: PhotoCamera | None = None, image: np.ndarray | None = None) -> Recovery:
    """Run the engine on one person with ``settings`` and the photo's ``camera`` (default: the typical one);
    ``with_reference`` adds the deterministic mesh to a stochastic run. ``image`` is the photo (BGR uint8):
    a model conditioned on images reads the person's crop of it (:mod:`megaviewer.vision.crops`), other models
    never look at it (no crop is cut). ``person`` is left as it is (the app calls this from worker threads)."""
    from megaviewer.vision.crops import engine_crop

    start = time.perf_counter()
    keypoints, box = person.crop(camera)
    landmarks = person.detection.landmarks_3d
    crop = engine_crop(engine, image, box)
    inputs: dict[str, Any] = {"crop": box, "return_trace": return_trace, "landmarks_3d": landmarks}
    if crop is not None:
        inputs["image"] = crop
    result = engine.recover(keypoints, **inputs, **settings.recover_kwargs())
    reference = None
    if with_reference and settings.mode == "stochastic":
        reference = engine.recover(keypoints, mode="deterministic", fit_camera=settings.fit_camera,
                                   expected_codes=settings.expected_codes, **inputs)
    return Recovery(result, reference, (time.perf_counter() - start) * 1000)


def recover_people(engine: Engine, detector: Detector | None, image: np.ndarray,
                   detections: Sequence[PersonDetection] | None = None, settings: RecoverySettings = DEFAULTS, *,
                   return_trace: bool = False, camera: PhotoCamera | None = None, **changes: Any) -> PeopleList:
    """Detect the people in ``image`` (or take the given ``detections``) and recover each one.

    Everyone is placed with the one ``camera`` of the picture (default: the typical camera of its size), and an
    image-conditioned model reads each person's crop of ``image``.
    ``changes`` override fields of ``settings`` for this call (``mode="stochastic", num_samples=3``).
    """
    settings = settings.with_(**changes) if changes else settings
    if detections is None:
        if detector is None:
            raise ValueError("pass a detector or detections")
        people = detect_people(detector, image)
    else:
        message = f"{len(detections)} given" if detections else "no keypoints given for this image"
        people = PeopleList([Person(d) for d in detections], message, {"detect_ms": 0.0})
    if not people:
        people.message = people.message or "no person found"
        return people
    start = time.perf_counter()
    camera = photo_camera(image.shape[1::-1], camera)
    for person in people:
        person.result = recover_person(engine, person, settings, return_trace=return_trace, camera=camera,
                                       image=image).result
    people.timings_ms["recover_ms"] = (time.perf_counter() - start) * 1000
    people.message = f"recovered {len(people)} {'person' if len(people) == 1 else 'people'}"
    return people


def random_humans(engine: Engine, settings: RecoverySettings = DEFAULTS) -> Recovery:
    """Unconditional samples from the pre-trained model (paper App. C), Q and T from ``settings``."""
    start = time.perf_counter()
    kwargs = settings.recover_kwargs()
    result = engine.unconditional(num_samples=max(settings.num_samples, 1), steps=max(settings.steps, 1),
                                  temperature=settings.temperature, seed=kwargs["seed"], return_trace=True)
    return Recovery(result, None, (time.perf_counter() - start) * 1000)


def unconditional_unavailable_reason(engine: Engine | None) -> str | None:
    """Why "random humans" cannot run with this engine, or ``None`` if it can."""
    if engine is None:
        return "No model is loaded yet."
    if getattr(engine, "unconditional_model", None) is None:
        return ("This model ships without the self-supervised pre-trained (unconditional) MEGA, "
                "so it cannot generate random humans.")
    return None


def largest_person(people: Sequence[Person]) -> int:
    """The biggest box: in a group photo the main subject is usually the closest person (-1 if nobody)."""
    areas = [(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) for p in people]
    return int(np.argmax(areas)) if areas else -1


def nearest_person(people: Sequence[Person], previous: Person | None) -> int:
    """In live video, follow the person whose box centre is nearest the previous one's (else the largest)."""
    if not people or previous is None:
        return largest_person(people)
    centres = np.array([p.centre for p in people])
    return int(np.linalg.norm(centres - previous.centre, axis=1).argmin())
