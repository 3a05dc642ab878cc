"""Real training data: a dataset folder format (images + one table row per person) and its reader.

Why a format of our own: public human-mesh data sets come in as many layouts as there are data sets. Each is
converted once (e.g. :mod:`training.data.convert_spin`) into one simple folder, and training reads only
that. The folder (docs/dataset.md)::

    images/...        any images OpenCV reads
    people.jsonl      one JSON object per line and person  (or people.npz: the same fields as arrays)

Fields per person: ``image`` (path relative to the folder), ``box`` ([x, y, w, h] px; optional when
keypoints are given), ``keypoints_2d`` (17 × 3 COCO-17 x, y px and confidence), the body as *either*
``vertices`` (V × 3 m, camera frame: x right, y down, z forward) *or* body-model parameters (``body`` in
``smpl``/``smplh``/``anny``, ``pose``, ``shape``, ``global_orient`` axis-angle in the camera frame, optional
``transl`` m), and optional ``focal`` (px) and ``split`` (``train``/``val``/``test``).

:class:`DatasetReader` crops each person exactly as inference does (the COCO-17 keypoint box × 1.2 of
:meth:`megaviewer.vision.detector.PersonDetection.from_keypoints`, the ``box`` only when fewer than two
keypoints are usable), so a model trained on these crops sees people framed as it will in the app. It
augments as SPIN-style pipelines do (scale, in-plane rotation, horizontal flip, colour); every table error
is reported once, at construction, as a one-line ``ValueError`` naming the file and line.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from megaviewer.body.keypoints import COCO17_FLIP_PERMUTATION
from megaviewer.io.atomic import atomic_write_bytes, atomic_write_text
from megaviewer.model.conditioning import IMAGENET_MEAN, IMAGENET_STD
from megaviewer.vision.detector import PersonDetection, crop_keypoints

IMAGES_DIR = "images"
TABLE_JSONL = "people.jsonl"
TABLE_NPZ = "people.npz"
BODY_MODELS = ("smpl", "smplh", "anny")
SPLITS = ("train", "val", "test")
PARAM_FIELDS = ("body", "pose", "shape", "global_orient", "transl")
FIELDS = ("image", "box", "keypoints_2d", "vertices", *PARAM_FIELDS, "focal", "split")
_MIRROR_X = np.diag([-1.0, 1.0, 1.0])


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
        """Warp the box (turned and mirrored by ``lin``) to a square crop; crop pixel q ↔ (q / S)·2 − 1.

        Zooming out by more than 2× first shrinks the image with area averaging, so the crop does not alias.
        """
        import cv2

        size = self.config.crop_size
        half = size / 2.0
        linear = lin * (size / side)  # image px -> crop px
        zoom = size / side
        if zoom < 0.5:
            h, w = image.shape[:2]
            new_w, new_h = max(1, round(w * 2 * zoom)), max(1, round(h * 2 * zoom))
            fx, fy = new_w / w, new_h / h
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
            # cv2.resize maps pixel centres: p' = f·p + (f − 1)/2.
            offset = np.array([(fx - 1) / 2, (fy - 1) / 2])
            scale_back = np.diag([1 / fx, 1 / fy])
            linear, center = linear @ scale_back, np.asarray(center) * [fx, fy] + offset
        matrix = np.hstack([linear, (half - linear @ np.asarray(center, dtype=np.float64))[:, None]])
        crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(0, 0, 0))
        rgb = crop[..., ::-1].astype(np.float32) / 255.0
        rgb = np.clip(rgb * np.asarray(color, dtype=np.float32), 0.0, 1.0)
        rgb = (rgb - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


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
