"""The photo's camera: its focal length in pixels, from the photo's EXIF when present, else a typical lens.

Why: a single view gives the body's size in the image, which fixes only the ratio of focal length to
distance (``tz = 2F/(b s)``, :func:`megaviewer.camera.crop_to_full`). Whatever focal is assumed sets how far
away every person stands and how large the exported scene is, so it should be a camera someone owns.

Where the focal comes from, in order:

1. ``FocalLengthIn35mmFilm`` (EXIF 0xA405): the focal length that gives the same *diagonal* field of view on
   a 36 × 24 mm frame, which is how cameras and phones compute it; ``F = f35 / 43.27 mm · diagonal px``.
2. ``FocalLength`` (0x920A) with the sensor's pixel density ``FocalPlaneXResolution`` /
   ``FocalPlaneResolutionUnit`` (0xA20E / 0xA210), scaled from the pixel size EXIF refers to
   (``PixelXDimension`` / ``PixelYDimension``, else the file's own size) to the loaded image.
3. Otherwise a typical lens: a **55° diagonal field of view** (about a 42 mm lens on a 35 mm camera,
   ``F ≈ 0.96 · diagonal``). Why 55°: it sits between a phone's main camera and webcams (24-28 mm, 75-80°) and
   portrait lenses (85 mm and longer, under 30°), and is close to the 53° that CLIFF (Li et al., ECCV 2022)
   found to work for human mesh recovery when the focal is unknown (``F = diagonal``). The original demo's
   1000/224 × the long side is a 13° telephoto across the long side, which puts people about five times too
   far away on phone photos. Tightly framed portraits shot with a long lens come out closer than they were.

An EXIF value that is missing, unreadable or implausible (a 35 mm equivalent outside 5-2000 mm) is skipped and
the next source is tried: a corrupt EXIF block never stops a photo from loading. The EXIF values describe
the whole frame the camera recorded; a photo cropped afterwards keeps them and gets a too-long focal.
The principal point is the image centre throughout (:mod:`megaviewer.camera`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
"""Diagonal of a 35 mm film frame (36 × 24 mm), the reference of 35 mm-equivalent focal lengths."""

DEFAULT_DIAGONAL_FOV_DEG = 55.0
"""Diagonal field of view assumed for photos without a usable EXIF focal (module docstring)."""

PLAUSIBLE_35MM_RANGE = (5.0, 2000.0)
"""35 mm-equivalent focal lengths outside this range (fisheyes aside, not a camera) are treated as corrupt."""

SOURCES = ("exif-35mm", "exif-sensor", "default-fov", "given")

# EXIF tag numbers (EXIF 2.3, CIPA DC-008).
TAG_EXIF_IFD = 0x8769
TAG_FOCAL_LENGTH = 0x920A
TAG_FOCAL_35MM = 0xA405
TAG_FOCAL_PLANE_X_RES = 0xA20E
TAG_FOCAL_PLANE_Y_RES = 0xA20F
TAG_FOCAL_PLANE_UNIT = 0xA210
TAG_PIXEL_X = 0xA002
TAG_PIXEL_Y = 0xA003
_UNIT_MM = {1: None, 2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # FocalPlaneResolutionUnit -> mm; 1 = "no unit"


@dataclass(frozen=True)
class PhotoCamera:
    """A pinhole camera for one image: focal in pixels of ``image_size`` (W, H), principal point at the centre.

    ``source`` says where the focal came from (one of :data:`SOURCES`) so the app and the exports can tell
    a measured camera from an assumed one.
    """

    focal_px: float
    image_size: tuple[int, int]
    source: str = "given"

    @property
    def diagonal_px(self) -> float:
        return math.hypot(*self.image_size)

    @property
    def focal_35mm(self) -> float:
        """The 35 mm-equivalent focal length in mm (same diagonal field of view on a 36 × 24 mm frame)."""
        return focal_35mm(self.focal_px, self.image_size)

    @property
    def diagonal_fov_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.diagonal_px / (2.0 * self.focal_px)))

    @property
    def measured(self) -> bool:
        """Whether the focal comes from the photo itself (EXIF) rather than an assumption."""
        return self.source.startswith("exif")

    def resized(self, image_size: tuple[int, int]) -> PhotoCamera:
        """The same camera for the image resampled to ``image_size`` (the focal scales with the long side)."""
        factor = max(image_size) / max(self.image_size)
        return replace(self, focal_px=self.focal_px * factor, image_size=(int(image_size[0]), int(image_size[1])))

    def describe(self) -> str:
        """Short text for the app and logs: where the focal came from."""
        if self.source == "exif-35mm":
            return "from the photo's EXIF (35 mm equivalent)"
        if self.source == "exif-sensor":
            return "from the photo's EXIF (focal length and sensor size)"
        if self.source == "default-fov":
            return f"assumed: {self.diagonal_fov_deg:.0f}° diagonal field of view, no EXIF focal"
        return "given"


def focal_for_fov(image_size: tuple[float, float], fov_deg: float = DEFAULT_DIAGONAL_FOV_DEG) -> float:
    """Focal in pixels that gives ``fov_deg`` across the image diagonal."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"a field of view must lie strictly between 0 and 180 degrees, got {fov_deg}")
    return math.hypot(*image_size) / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def focal_35mm(focal_px: float, image_size: tuple[float, float]) -> float:
    """Pixels -> 35 mm-equivalent millimetres for an image of ``image_size`` (diagonal convention)."""
    return float(focal_px) * FULL_FRAME_DIAGONAL_MM / math.hypot(*image_size)


def typical_camera(image_size: tuple[int, int], fov_deg: float = DEFAULT_DIAGONAL_FOV_DEG) -> PhotoCamera:
    """The camera assumed when the photo says nothing: ``fov_deg`` across the diagonal (module docstring)."""
    size = (int(image_size[0]), int(image_size[1]))
    return PhotoCamera(focal_for_fov(size, fov_deg), size, "default-fov")


def camera_from_exif(tags: Mapping[int, Any], image_size: tuple[int, int],
                     recorded_size: tuple[int, int] | None = None) -> PhotoCamera | None:
    """The camera the EXIF ``tags`` (tag number -> value, Exif sub-IFD merged in) describe, or ``None``.

    ``image_size`` is the (W, H) of the image as loaded (upright, maybe downscaled); ``recorded_size`` the
    full-resolution size of the file, used for the sensor route when EXIF gives no pixel dimensions. Values
    that are missing, not numbers or implausible are skipped, never raised.
    """
    size = (int(image_size[0]), int(image_size[1]))
    if min(size) <= 0:
        return None
    f35 = _number(tags.get(TAG_FOCAL_35MM))
    if f35 is not None and _plausible(f35):
        return PhotoCamera(f35 / FULL_FRAME_DIAGONAL_MM * math.hypot(*size), size, "exif-35mm")
    focal_mm = _number(tags.get(TAG_FOCAL_LENGTH))
    per_unit = _number(tags.get(TAG_FOCAL_PLANE_X_RES)) or _number(tags.get(TAG_FOCAL_PLANE_Y_RES))
    unit = _number(tags.get(TAG_FOCAL_PLANE_UNIT))
    unit_mm = _UNIT_MM.get(int(unit) if unit is not None and unit.is_integer() else 2)  # EXIF's default: inch
    if focal_mm is None or focal_mm <= 0 or per_unit is None or per_unit <= 0 or unit_mm is None:
        return None
    px_x, px_y = _number(tags.get(TAG_PIXEL_X)), _number(tags.get(TAG_PIXEL_Y))
    reference = max(px_x or 0.0, px_y or 0.0) or (max(recorded_size) if recorded_size else max(size))
    focal_px = focal_mm * per_unit / unit_mm * max(size) / reference
    if not math.isfinite(focal_px) or not _plausible(focal_35mm(focal_px, size)):
        return None
    return PhotoCamera(focal_px, size, "exif-sensor")


def camera_for_photo(tags: Mapping[int, Any], image_size: tuple[int, int],
                     recorded_size: tuple[int, int] | None = None,
                     fov_deg: float = DEFAULT_DIAGONAL_FOV_DEG) -> PhotoCamera:
    """The photo's camera from its EXIF ``tags`` (:func:`exif_tags`), else :func:`typical_camera`.

    Never raises on bad EXIF: whatever cannot be read, or reads as nonsense, means "no EXIF focal".
    """
    try:
        found = camera_from_exif(tags, image_size, recorded_size)
    except Exception:  # noqa: BLE001 - a corrupt EXIF value (any parser error) must not stop a photo
        found = None
    return found if found is not None else typical_camera(image_size, fov_deg)


def exif_tags(image: Any) -> dict[int, Any]:
    """IFD0 and the Exif sub-IFD of an opened PIL image as one dict (tag number -> value).

    Empty when the image has no EXIF or Pillow cannot parse it (a corrupt block is the same as none, and
    Pillow's warnings about it are silenced: the photo itself is fine).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif = image.getexif()
            tags: dict[int, Any] = dict(exif.items())
            tags.update(exif.get_ifd(TAG_EXIF_IFD).items())
    except Exception:  # noqa: BLE001 - Pillow raises many types on corrupt EXIF; none may stop a photo
        return {}
    return tags


def _number(value: Any) -> float | None:
    """An EXIF value (int, float, IFDRational, (num, den) pair, 1-tuple) as a finite float, else ``None``."""
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            value = value[0] / value[1] if value[1] else None
        elif len(value) == 1:
            value = value[0]
        else:
            return None
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _plausible(f35: float) -> bool:
    return PLAUSIBLE_35MM_RANGE[0] <= f35 <= PLAUSIBLE_35MM_RANGE[1]
