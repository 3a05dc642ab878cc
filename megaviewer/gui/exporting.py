"""What the window exports and where the sample photo comes from (Qt-free helpers for ``main_window``).

Writing is delegated to :mod:`megaviewer.io.export` (OBJ/PLY/GLB by suffix, NPZ with tokens); these helpers
only pick the arrays that match what is on screen, so an export is exactly the mesh the user looked at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from megaviewer.gui.state import MEAN, REFERENCE, ViewerState
from megaviewer.result import RecoveryResult


def sample_image() -> np.ndarray | None:
    """scikit-image's public-domain astronaut photo as BGR, or ``None`` when scikit-image is absent."""
    try:
        from skimage.data import astronaut
    except ImportError:
        return None
    return np.ascontiguousarray(astronaut()[:, :, ::-1])


def default_stem(state: ViewerState) -> str:
    """A file name that says what is exported: ``photo_stochastic_h3`` / ``photo_mean`` / ``photo_step2``."""
    base = state.image_path.stem if state.image_path is not None else "megaviewer"
    if state.result is None:
        return base
    if state.sample == MEAN:
        tail = "mean"
    elif state.sample == REFERENCE:
        tail = "deterministic"
    elif state.result.num_samples > 1:
        tail = f"{state.result.mode}_h{state.sample + 1}"
    else:
        tail = state.result.mode
    if state.step is not None and state.sample >= 0:
        tail += f"_step{state.step + 1}"
    return f"{base}_{tail}"


def shown_mesh(presenter) -> tuple[np.ndarray, np.ndarray]:
    """The smooth display mesh on screen, in the viewport frame (y up, facing +z: what DCC tools expect)."""
    meshes, sample = presenter._shown()
    step = presenter.state.step if sample >= 0 else None
    vertices = presenter.scene.upsample(meshes.display(sample, step))
    return vertices.astype(np.float32), presenter.scene.display_faces


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """OBJ, PLY or GLB chosen by the suffix (runs on the export thread)."""
    from megaviewer.io.export import export_mesh

    export_mesh(path, vertices, faces)
    return path


def write_npz(path: Path, result: RecoveryResult, person_index: int = 0, detection=None,
              image_size: tuple[int, int] | None = None) -> Path:
    """Tokens, every hypothesis, SD, joints and camera of the result (schema in :mod:`megaviewer.io.export`)."""
    from megaviewer.io.export import export_npz

    export_npz(path, result, person_index=max(person_index, 0), detection=detection, image_size=image_size)
    return path


def with_suffix_from_filter(path: str, chosen_filter: str, default: str) -> Path:
    """Add the suffix of the chosen dialog filter when the user typed a bare name (``(*.ply)`` -> ``.ply``)."""
    out = Path(path)
    if out.suffix:
        return out
    start = chosen_filter.find("(*.")
    suffix = chosen_filter[start + 2: chosen_filter.find(")", start)].split()[0] if start >= 0 else default
    return out.with_suffix(suffix)


def write_png(path: Path, image: np.ndarray) -> Path:
    """Save an RGB array as PNG; raises ``OSError`` with the reason when it cannot be written."""
    import cv2

    path = Path(path)
    if not path.parent.is_dir():
        raise OSError(f"folder {path.parent} does not exist")
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[..., 2::-1]))
    if not ok:
        raise OSError("PNG encoding failed")
    path.write_bytes(data.tobytes())
    return path
