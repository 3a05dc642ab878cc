"""Read any photo a user may drop on the app into one format: BGR ``uint8`` (H, W, 3), upright, bounded size.

Why a loader of our own rather than ``cv2.imread``: OpenCV ignores the EXIF orientation of many phone
photos (people lying on their side make no sense to a pose detector), silently returns ``None`` for
unreadable files, and decodes 100-megapixel scans at full size. Here PIL decodes (it knows EXIF, palettes,
16-bit PNGs/TIFFs and truncated files), the result is converted to the one format the detector, the engine
and the renderer share, and every failure raises :class:`ImageLoadError` naming the file and the reason.
The photo's camera (its EXIF focal, else a typical lens: :mod:`megaviewer.intrinsics`) is read on the way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megaviewer.intrinsics import PhotoCamera, camera_for_photo, exif_tags, typical_camera

DEFAULT_MAX_SIDE = 4096
"""Long-side cap in pixels: the detector works at ~256 px and overlays at <= 1920 px, so more is waste."""

MAX_PIXELS = 250_000_000
"""Refuse images beyond this many pixels (decompression bombs; a 250 MP RGB image is 750 MB decoded)."""


class ImageLoadError(ValueError):
    """An image that cannot be read; the message names the file and the reason."""


@dataclass
class LoadedImage:
    image: np.ndarray  # (H, W, 3) BGR uint8, EXIF orientation applied, downscaled to max_side
    path: Path
    original_size: tuple[int, int]  # (W, H) after the EXIF rotation, before downscaling
    scale: float  # returned size / original size (1.0 when not downscaled)
    camera: PhotoCamera | None = None  # focal for ``image`` (EXIF or typical); None only when built by hand

    def __post_init__(self) -> None:
        if self.camera is None:
            self.camera = typical_camera(self.size)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])


def load_image(path: str | Path, max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """The image at ``path`` as BGR uint8 (H, W, 3); see :func:`read_image` for what is done to it."""
    return read_image(path, max_side).image


def read_image(path: str | Path, max_side: int | None = DEFAULT_MAX_SIDE) -> LoadedImage:
    """Decode ``path``, apply its EXIF orientation, convert to BGR uint8, downscale to ``max_side``.

    Grayscale, palette, CMYK, 16/32-bit and float images are converted; transparent pixels are composited
    over white (what image viewers show). The result's ``camera`` is the photo's EXIF focal scaled to the
    returned size, else a 55° diagonal field of view; unreadable EXIF counts as none. Raises
    :class:`ImageLoadError` for a missing, unreadable, corrupt, truncated or oversized file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"{path}: file not found")
    if not path.is_file():
        raise ImageLoadError(f"{path}: not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)  # handled: no EXIF camera
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise ImageLoadError(f"{path}: image too large ({width}x{height} = "
                                         f"{width * height / 1e6:.0f} MP; the limit is {MAX_PIXELS / 1e6:.0f} MP)")
                tags = exif_tags(img)
                if max_side and img.format == "JPEG":
                    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: a 100 MP photo then costs a fraction.
                    img.draft("RGB", _draft_size(img.size, max_side))
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # in place: no full-size copy
                img = _pre_reduce(img, max_side)
                original = _original_size(img, (width, height), path)
                rgb = _to_rgb_uint8(img)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image (unrecognised file format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(f"{path}: corrupt or truncated image ({exc})") from None
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    bgr, scale = _limit_size(bgr, max_side, original)
    camera = camera_for_photo(tags, (bgr.shape[1], bgr.shape[0]), original)
    return LoadedImage(image=bgr, path=path, original_size=original, scale=scale, camera=camera)


def _draft_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    factor = max(size) / max_side
    return (max(1, int(size[0] / factor)), max(1, int(size[1] / factor))) if factor > 1 else size


_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "I", "F"})


def _pre_reduce(img, max_side: int | None):
    """Shrink a decoded image by the largest integer factor that keeps its long side >= ``max_side``.

    Why: formats without a JPEG-style draft mode (PNG, TIFF, WebP ...) decode at full size, and the
    conversions after decoding (EXIF transpose, numpy, RGB->BGR) each copied the full image: a
    12000x9000 PNG peaked at ~1.5 GB and took seconds. ``Image.reduce`` is a C box filter on PIL's own
    buffer; the exact resize to ``max_side`` still happens in :func:`_limit_size`. Palette and 1-bit
    images are left alone (averaging palette indices would mix unrelated colours).
    """
    if not max_side or img.mode not in _REDUCIBLE_MODES:
        return img
    factor = max(img.size) // max_side
    if factor < 2:
        return img
    return img.reduce(factor)


def _original_size(img, header_size: tuple[int, int], path: Path) -> tuple[int, int]:
    """(W, H) of the full-resolution, upright image (the JPEG draft may have decoded it smaller)."""
    w, h = header_size
    if img.size[0] < img.size[1] and w > h or img.size[0] > img.size[1] and w < h:
        w, h = h, w  # EXIF rotated it by 90 degrees
    return int(w), int(h)


def _to_rgb_uint8(img) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8 RGB."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        # 16-bit data (PNG/TIFF) scaled to 8 bits; a 32-bit "I" image holding 8-bit values stays as is.
        arr = arr / 257.0 if arr.max(initial=0) > 255 else arr
        return np.repeat(np.clip(np.round(arr), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
        return np.repeat(np.clip(np.round(arr), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _limit_size(bgr: np.ndarray, max_side: int | None, original: tuple[int, int]) -> tuple[np.ndarray, float]:
    import cv2

    h, w = bgr.shape[:2]
    if max_side and max(w, h) > max_side:
        factor = max_side / max(w, h)
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return bgr, float(bgr.shape[1]) / float(original[0])


def ensure_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """An in-memory image (gray, BGR or BGRA; uint8, uint16 or float in [0, 1]) -> BGR uint8 (H, W, 3)."""
    import cv2

    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.dtype == np.uint16:
        arr = (arr / 257.0).round().astype(np.uint8)
    elif arr.dtype.kind == "f":
        arr = np.clip(np.round(arr * 255.0 if arr.max(initial=0) <= 1.0 else arr), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2 or arr.shape[2] == 1:
        arr = cv2.cvtColor(arr.reshape(arr.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(arr)
