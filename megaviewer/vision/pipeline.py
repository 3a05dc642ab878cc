"""People's keypoints from a JSON file written by the user's own detector (``megaviewer infer --keypoints``).

The recovery itself lives in :mod:`megaviewer.app.pipeline`; ``recover_people`` is still importable from
here for code written against the old location.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from megaviewer.vision.detector import PersonDetection


def __getattr__(name: str) -> Any:
    if name == "recover_people":  # imported lazily: megaviewer.app imports this package
        from megaviewer.app.pipeline import recover_people

        return recover_people
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------ keypoints from a JSON file
class KeypointsFileError(ValueError):
    """A keypoints JSON file that cannot be read or understood; the message says where and why."""


@dataclass
class KeypointEntry:
    keypoints: np.ndarray  # (17, 3) x, y px in the original image, confidence in [0, 1]
    bbox: tuple[float, float, float, float] | None = None  # x, y, w, h px
    score: float | None = None
    landmarks_3d: np.ndarray | None = None  # (33, 4) metres around the hips + visibility (vision.landmarks)


class KeypointsFile:
    """People's COCO-17 keypoints per image, from a user's own detector (so MediaPipe is not needed).

    Accepted layouts: a COCO dataset file (``{"images": [...], "annotations": [...]}``), the COCO results
    format (a list of ``{"image_id", "keypoints", "score"}``), a list of ``{"file_name", "keypoints",
    "bbox"?}``, or ``{"<file name>": [entry, ...]}``. ``keypoints`` are 17 × (x, y, v) in the original image's
    pixels. v is read as COCO visibility (2 visible -> confidence 1, 1 occluded -> 0.5, 0 missing) when the
    file only holds 0/1/2 and some 2s, else as a detector score clipped to [0, 1]. Images are matched by
    path, file name, stem or, for integer ``image_id`` without an ``images`` table, by the number in the
    file's stem (``000000397133.jpg`` is id 397133).

    An entry may also hold ``landmarks_3d`` (or MediaPipe's own name ``pose_world_landmarks``): the
    detector's 33 3D landmarks, ``[[x, y, z, visibility], ...]`` in metres around the hips (visibility
    optional, a flat list of 99 or 132 numbers accepted); see :mod:`megaviewer.vision.landmarks`.
    """

    def __init__(self, path: str | Path):
        import json

        self.path = Path(path)
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeypointsFileError(f"{self.path}: keypoints file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise KeypointsFileError(f"{self.path}: not a readable JSON file ({exc})") from None
        self._by_key: dict[str, list[KeypointEntry]] = {}
        try:
            records = self._records(raw)
            parsed = [(key, *self._parse(n, rec)) for n, (key, rec) in enumerate(records)]
        except KeypointsFileError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            # Any other shape of JSON than the accepted layouts: one clear error, never a traceback.
            raise KeypointsFileError(f"{self.path}: unexpected JSON layout ({type(exc).__name__}: {exc})") from None
        values = np.concatenate([kp[:, 2] for _, kp, *_ in parsed]) if parsed else np.zeros(0)
        coco_visibility = bool(values.size) and bool(np.isin(values, (0, 1, 2)).all()) and bool((values == 2).any())
        for key, kp, bbox, score, landmarks_3d in parsed:
            if coco_visibility:
                kp[:, 2] = np.select([kp[:, 2] == 2, kp[:, 2] == 1], [1.0, 0.5], 0.0)
            else:
                kp[:, 2] = np.clip(np.nan_to_num(kp[:, 2]), 0.0, 1.0)
            self._by_key.setdefault(key, []).append(KeypointEntry(kp, bbox, score, landmarks_3d))

    def _parse(self, n: int, rec: dict) -> tuple[np.ndarray, tuple[float, float, float, float] | None, float | None,
                                                 np.ndarray | None]:
        """Entry ``n`` -> (17, 3) float keypoints (v as written), optional bbox, score and 3D landmarks."""
        try:
            kp = np.asarray(rec["keypoints"], dtype=np.float64).reshape(17, 3).copy()
        except (TypeError, ValueError, OverflowError) as exc:
            raise KeypointsFileError(f"{self.path}: entry {n} has keypoints that are not 51 numbers ({exc})") from None
        bbox = rec.get("bbox")
        try:
            box = tuple(float(b) for b in bbox[:4]) if bbox and len(bbox) >= 4 else None
        except (TypeError, ValueError, KeyError, OverflowError):
            raise KeypointsFileError(f"{self.path}: entry {n} has a 'bbox' that is not [x, y, w, h]") from None
        try:
            score = float(rec["score"]) if rec.get("score") is not None else None
        except (TypeError, ValueError, OverflowError):
            raise KeypointsFileError(f"{self.path}: entry {n} has a 'score' that is not a number") from None
        return kp, box, score, self._landmarks_3d(n, rec)

    def _landmarks_3d(self, n: int, rec: dict) -> np.ndarray | None:
        from megaviewer.vision.landmarks import parse_landmarks_3d

        name = next((k for k in ("landmarks_3d", "pose_world_landmarks") if rec.get(k) is not None), None)
        if name is None:
            return None
        try:
            return parse_landmarks_3d(rec[name], name)
        except ValueError as exc:
            raise KeypointsFileError(f"{self.path}: entry {n}: {exc}") from None

    def _records(self, raw) -> list[tuple[str, dict]]:
        """(lookup key, record) pairs from any accepted layout; keys are file names or ``"id:<n>"``."""
        names: dict[int, str] = {}
        if isinstance(raw, dict) and "annotations" in raw:
            names = {int(im["id"]): str(im["file_name"]) for im in raw.get("images", []) if "id" in im}
            items = raw["annotations"]
        elif isinstance(raw, dict):
            items = [({"file_name": name, **(e if isinstance(e, dict) else {"keypoints": e})})
                     for name, people in raw.items() for e in (people if isinstance(people, list) else [people])]
        elif isinstance(raw, list):
            items = raw
        else:
            raise KeypointsFileError(f"{self.path}: expected a list or an object at the top level")
        out = []
        for n, rec in enumerate(items):
            if not isinstance(rec, dict) or "keypoints" not in rec:
                raise KeypointsFileError(f"{self.path}: entry {n} has no 'keypoints'")
            kps = rec["keypoints"]
            if not isinstance(kps, list) or len(kps) != 51:
                got = (f"{len(kps)} keypoint values" if isinstance(kps, list)
                       else f"keypoints of type {type(kps).__name__}")
                raise KeypointsFileError(f"{self.path}: entry {n} has {got}, expected 51 "
                                         "(17 COCO keypoints x (x, y, v))")
            name = rec.get("file_name") or rec.get("image") or rec.get("image_path")
            image_id = rec.get("image_id")
            if name is None and image_id is not None:
                name = names.get(int(image_id)) if str(image_id).lstrip("-").isdigit() else str(image_id)
                if name is None:
                    name = f"id:{int(image_id)}"
            if name is None:
                raise KeypointsFileError(f"{self.path}: entry {n} names no image (file_name or image_id)")
            out.append((str(name), rec))
        return out

    def __len__(self) -> int:
        return len(self._by_key)

    def people_without_landmarks(self) -> int:
        """How many entries give keypoints but no 3D landmarks."""
        return sum(entry.landmarks_3d is None for entries in self._by_key.values() for entry in entries)

    def lookup(self, image_path: str | Path) -> list[KeypointEntry] | None:
        """The entries for ``image_path`` (``None`` when the file does not mention it)."""
        p = Path(image_path)
        for key in (str(image_path), p.as_posix(), p.name, p.stem):
            if key in self._by_key:
                return self._by_key[key]
        for key, entries in self._by_key.items():
            if Path(key).name == p.name:
                return entries
        if p.stem.isdigit() and f"id:{int(p.stem)}" in self._by_key:
            return self._by_key[f"id:{int(p.stem)}"]
        return None

    def detections(self, image_path: str | Path, image_size: tuple[int, int], scale: float = 1.0,
                   min_confidence: float = 0.5, max_people: int | None = None) -> list[PersonDetection] | None:
        """Detections for an image loaded at ``scale`` × its original size; ``None`` when not in the file."""
        entries = self.lookup(image_path)
        if entries is None:
            return None
        entries = sorted(entries, key=lambda e: -(e.score if e.score is not None else 1.0))
        dets = []
        for e in entries[:max_people]:
            kp = e.keypoints.copy()
            kp[:, :2] *= scale
            bbox = tuple(b * scale for b in e.bbox) if e.bbox is not None else None
            dets.append(PersonDetection.from_keypoints(kp, image_size, min_confidence, bbox=bbox, source="json",
                                                       score=e.score, landmarks_3d=e.landmarks_3d))
        return dets
