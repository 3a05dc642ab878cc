"""The dataset folder format for real training data: images plus one table row per person.

Why a format of our own: public human-mesh data sets come in as many layouts as there are data sets. Each is
converted once (e.g. :mod:`training.data.convert_spin`) into one simple folder, and training reads only
that (:mod:`training.data.dataset`). The folder (docs/dataset.md)::

    images/...        any images OpenCV reads
    people.jsonl      one JSON object per line and person  (or people.npz: the same fields as arrays)

Fields per person: ``image`` (path relative to the folder), ``box`` ([x, y, w, h] px; optional when
keypoints are given), ``keypoints_2d`` (17 × 3 COCO-17 x, y px and confidence), the body as *either*
``vertices`` (V × 3 m, camera frame: x right, y down, z forward) *or* body-model parameters (``body`` in
``smpl``/``smplh``/``anny``, ``pose``, ``shape``, ``global_orient`` axis-angle in the camera frame, optional
``transl`` m), and optional ``focal`` (px) and ``split`` (``train``/``val``/``test``). Every table error is
reported once, when the table is read, as a one-line ``ValueError`` naming the file and line.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from megaviewer.io.atomic import atomic_write_bytes, atomic_write_text

IMAGES_DIR = "images"
TABLE_JSONL = "people.jsonl"
TABLE_NPZ = "people.npz"
BODY_MODELS = ("smpl", "smplh", "anny")
SPLITS = ("train", "val", "test")
PARAM_FIELDS = ("body", "pose", "shape", "global_orient", "transl")
FIELDS = ("image", "box", "keypoints_2d", "vertices", *PARAM_FIELDS, "focal", "split")


# ------------------------------------------------------------------------------------------------ records
@dataclass
class BodyParams:
    """Body-model parameters as stored; a caller-supplied callable poses them (the topology is theirs)."""

    body: str  # one of BODY_MODELS
    pose: np.ndarray  # (P,) float64, the model's pose vector without the global orientation
    shape: np.ndarray  # (S,) float64 shape coefficients (betas for SMPL)
    global_orient: np.ndarray  # (3,) axis-angle, camera frame (OpenCV axes)
    transl: np.ndarray | None = None  # (3,) m, camera frame; None: unknown


@dataclass
class PersonRecord:
    """One validated table row; ``where`` (``"…/people.jsonl line 3"``) names it in later errors."""

    image: str
    where: str
    box: np.ndarray | None = None  # (4,) x, y, w, h px
    keypoints_2d: np.ndarray | None = None  # (17, 3) x, y px, confidence
    vertices: np.ndarray | None = None  # (V, 3) float32 m, camera frame
    params: BodyParams | None = None
    focal: float | None = None  # px
    split: str | None = None


def _array(raw: Mapping[str, Any], name: str, shape: tuple[int, ...], where: str, desc: str,
           dtype: type = np.float64, finite: bool = True) -> np.ndarray | None:
    """``raw[name]`` as an array of ``shape`` (-1: any length), None when absent; one-line error otherwise."""
    if raw.get(name) is None:
        return None
    try:
        arr = np.asarray(raw[name], dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: {name} must be {desc} (numbers)") from None
    if arr.ndim != len(shape) or any(want not in (-1, got) for want, got in zip(shape, arr.shape, strict=True)):
        raise ValueError(f"{where}: {name} must be {desc}, got shape {tuple(arr.shape)}")
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{where}: {name} holds NaN or infinite values")
    return arr


def parse_record(raw: Any, where: str) -> PersonRecord:
    """Validate one person (a JSON object or an NPZ row as a dict) -> :class:`PersonRecord`."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    image = raw.get("image")
    if not isinstance(image, str) or not image:
        raise ValueError(f"{where}: 'image' must be a path relative to the dataset folder")
    rel = PurePosixPath(image)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{where}: image {image!r} must be a path inside the dataset folder")
    box = _array(raw, "box", (4,), where, "[x, y, w, h] in pixels")
    if box is not None and not (box[2] > 0 and box[3] > 0):
        raise ValueError(f"{where}: box width and height must be positive, got {box.tolist()}")
    keypoints = _array(raw, "keypoints_2d", (17, 3), where, "17x3 COCO-17 (x, y px, confidence)", finite=False)
    if box is None and keypoints is None:
        raise ValueError(f"{where}: a person needs a 'box' or 'keypoints_2d'")
    vertices = _array(raw, "vertices", (-1, 3), where, "Vx3 metres", dtype=np.float32)
    params = _parse_params(raw, where)
    if (vertices is None) == (params is None):
        which = "both" if vertices is not None else "neither"
        raise ValueError(f"{where}: a person needs 'vertices' or body-model parameters ('body', 'pose', 'shape', "
                         f"'global_orient'), one of them; got {which}")
    focal = raw.get("focal")
    if focal is not None and not (isinstance(focal, (int, float, np.number)) and math.isfinite(focal) and focal > 0):
        raise ValueError(f"{where}: focal must be a positive number of pixels, got {focal!r}")
    split = raw.get("split")
    if split is not None and split not in SPLITS:
        raise ValueError(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
    return PersonRecord(image=image, where=where, box=box, keypoints_2d=keypoints, vertices=vertices, params=params,
                        focal=None if focal is None else float(focal), split=split)


def _parse_params(raw: Mapping[str, Any], where: str) -> BodyParams | None:
    if not any(raw.get(name) is not None for name in PARAM_FIELDS):
        return None
    missing = [name for name in PARAM_FIELDS[:4] if raw.get(name) is None]
    if missing:
        raise ValueError(f"{where}: body-model parameters lack {', '.join(missing)}")
    if raw["body"] not in BODY_MODELS:
        raise ValueError(f"{where}: body must be one of {', '.join(BODY_MODELS)}, got {raw['body']!r}")
    return BodyParams(body=str(raw["body"]), pose=_array(raw, "pose", (-1,), where, "a flat list of numbers"),
                      shape=_array(raw, "shape", (-1,), where, "a flat list of numbers"),
                      global_orient=_array(raw, "global_orient", (3,), where, "3 axis-angle numbers"),
                      transl=_array(raw, "transl", (3,), where, "3 numbers in metres"))


def _record_to_json(rec: PersonRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"image": rec.image}
    for name in ("box", "keypoints_2d", "vertices"):
        if getattr(rec, name) is not None:
            out[name] = getattr(rec, name).tolist()
    if rec.params is not None:
        out.update({name: getattr(rec.params, name) for name in PARAM_FIELDS})
        out.update({name: out[name].tolist() for name in PARAM_FIELDS[1:] if out[name] is not None})
        if out["transl"] is None:
            del out["transl"]
    out.update({name: getattr(rec, name) for name in ("focal", "split") if getattr(rec, name) is not None})
    return out


# ------------------------------------------------------------------------------------------------- tables
def read_table(folder: str | Path) -> list[PersonRecord]:
    """Every person of the dataset in ``folder``, validated (errors name the table and the line or row)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"dataset folder {folder} does not exist")
    jsonl, npz = folder / TABLE_JSONL, folder / TABLE_NPZ
    if jsonl.is_file() and npz.is_file():
        raise ValueError(f"{folder} holds both {TABLE_JSONL} and {TABLE_NPZ}; keep one")
    if jsonl.is_file():
        return _read_jsonl(jsonl)
    if npz.is_file():
        return _read_npz(npz)
    raise ValueError(f"{folder} has no person table ({TABLE_JSONL} or {TABLE_NPZ})")


def _read_jsonl(path: Path) -> list[PersonRecord]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {number}: not valid JSON ({err.msg}, column {err.colno})") from None
            records.append(parse_record(raw, f"{path} line {number}"))
    return records


def _read_npz(path: Path) -> list[PersonRecord]:
    """Rows of ``people.npz``: a missing value is an empty string or an all-NaN row of its array."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read ({str(err).splitlines()[0]})") from None
    if "image" not in arrays:
        raise ValueError(f"{path}: no 'image' array")
    count = len(arrays["image"])
    for name, arr in arrays.items():
        if arr.ndim == 0 or len(arr) != count:
            raise ValueError(f"{path}: '{name}' has {arr.shape[0] if arr.ndim else 0} rows, 'image' has {count}")
    records = []
    for row in range(count):
        raw = {}
        for name, arr in arrays.items():
            value = arr[row]
            if arr.dtype.kind in "US":
                if str(value):
                    raw[name] = str(value)
            elif not np.isnan(np.asarray(value, dtype=np.float64)).all():
                raw[name] = value.item() if np.ndim(value) == 0 else value
        records.append(parse_record(raw, f"{path} row {row}"))
    return records


def _records_to_arrays(records: Sequence[PersonRecord]) -> dict[str, np.ndarray]:
    """Column arrays for ``people.npz`` (absent values: NaN rows and empty strings)."""
    out: dict[str, np.ndarray] = {"image": np.array([r.image for r in records], dtype=str)}

    def column(name: str, get: Callable[[PersonRecord], np.ndarray | None], dtype: type = np.float64) -> None:
        values = [get(r) for r in records]
        shapes = {v.shape for v in values if v is not None}
        if len(shapes) > 1:
            raise ValueError(f"people.npz needs one shape per field; '{name}' has {sorted(shapes)} "
                             f"(use {TABLE_JSONL})")
        if shapes:
            shape = shapes.pop()
            out[name] = np.stack([np.full(shape, np.nan) if v is None else v for v in values]).astype(dtype)

    column("box", lambda r: r.box)
    column("keypoints_2d", lambda r: r.keypoints_2d)
    column("vertices", lambda r: r.vertices, np.float32)
    for name in PARAM_FIELDS[1:]:
        column(name, lambda r, n=name: None if r.params is None else getattr(r.params, n))
    column("focal", lambda r: None if r.focal is None else np.asarray(r.focal))
    if any(r.params is not None for r in records):
        out["body"] = np.array([r.params.body if r.params else "" for r in records], dtype=str)
    if any(r.split is not None for r in records):
        out["split"] = np.array([r.split or "" for r in records], dtype=str)
    return out


def write_dataset(folder: str | Path, records: Iterable[Mapping[str, Any]],
                  images: Mapping[str, np.ndarray | bytes] | None = None, table: str = "jsonl") -> Path:
    """Write a dataset folder: ``images`` (relative path -> BGR array or encoded bytes) then the table.

    Every record is validated first and every image it names must be given or already in ``folder``, so the
    writer never leaves a dataset the reader rejects. All writes are atomic and the table comes last: a
    folder with a table is complete. ``table`` is ``"jsonl"`` or ``"npz"``. Returns the table's path.
    """
    import cv2

    if table not in ("jsonl", "npz"):
        raise ValueError(f"table must be 'jsonl' or 'npz', got {table!r}")
    folder = Path(folder)
    other = folder / (TABLE_NPZ if table == "jsonl" else TABLE_JSONL)
    if other.exists():
        raise ValueError(f"{folder} already holds {other.name}; a dataset keeps one table")
    parsed = [parse_record(raw, f"record {i}") for i, raw in enumerate(records)]
    for rel, image in (images or {}).items():
        if not isinstance(image, bytes):
            ok, encoded = cv2.imencode(Path(rel).suffix or ".png", np.asarray(image))
            if not ok:
                raise ValueError(f"image {rel}: OpenCV cannot encode it as {Path(rel).suffix or '.png'}")
            image = encoded.tobytes()
        atomic_write_bytes(folder / rel, image)
    for rec in parsed:
        if not (folder / rec.image).is_file():
            raise ValueError(f"{rec.where}: image {rec.image} is neither given nor in {folder}")
    if table == "jsonl":
        lines = (json.dumps(_record_to_json(r), separators=(",", ":")) for r in parsed)
        path = folder / TABLE_JSONL
        atomic_write_text(path, "".join(line + "\n" for line in lines))
    else:
        buffer = io.BytesIO()
        np.savez(buffer, **_records_to_arrays(parsed))
        path = folder / TABLE_NPZ
        atomic_write_bytes(path, buffer.getvalue())
    return path
