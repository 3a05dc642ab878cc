"""README figures stored small: every regenerated figure stays in the history each clone of the repository carries.

A 256-colour palette (median cut, no dithering) keeps a screenshot or an overlay visually the same at about a third
of the bytes of the full-colour PNG (a 1440 x 900 app screenshot: 0.69 MB -> 0.21 MB).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def compact_png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB uint8 image (H, W, 3) as a 256-colour palette PNG."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    palette = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def write_compact_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write ``rgb`` to ``path`` as :func:`compact_png_bytes`, atomically."""
    from megaviewer.io.atomic import atomic_write_bytes

    atomic_write_bytes(Path(path), compact_png_bytes(rgb))
    return Path(path)


def compact_png_file(path: str | Path) -> Path:
    """Re-encode the PNG at ``path`` in place as a palette PNG (a figure written by code we do not control)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return write_compact_png(path, rgb)
