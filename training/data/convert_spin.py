"""Convert a SPIN-style preprocessed NPZ into the dataset folder format (:mod:`training.data.dataset`).

Why: many public 3D human data sets circulate as the NPZ files SPIN's preprocessing scripts produce, with
one row per person:

* ``imgname`` (N,) image paths relative to an images root;
* ``center`` (N, 2) px and ``scale`` (N,): a square box of side ``200 · scale`` px around ``center``,
  already enlarged around the person (by 1.2 in SPIN's scripts);
* ``part`` (N, 24, 3): 2D keypoints in image pixels + visibility, in SPIN's 24-joint order
  (:data:`SPIN24_NAMES`);
* ``pose`` (N, 72): SMPL axis-angles, the first 3 the global orientation in the camera frame;
  ``shape`` (N, 10) SMPL betas; optional ``has_smpl`` (N,): 0 where the row has no SMPL fit.

Each person becomes one ``people.jsonl`` line (or ``people.npz`` row) with ``body: "smpl"`` parameters
(``global_orient`` = pose[:3], ``pose`` = pose[3:72]), COCO-17 ``keypoints_2d`` and a ``box``. Rows without
an SMPL fit are skipped (the format needs a body). Images are copied (or linked) under ``images/``.

Usage: ``python -m training.data.convert_spin IN.npz IMAGES_ROOT OUT_FOLDER [--split train] [--link symlink]``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from megaviewer.body.keypoints import COCO17_NAMES
from megaviewer.io.atomic import atomic_write_bytes
from training.data.dataset_format import IMAGES_DIR, write_dataset

SPIN24_NAMES: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "neck", "head_top", "pelvis", "thorax", "spine", "jaw", "head", "nose",
    "left_eye", "right_eye", "left_ear", "right_ear",
)
"""SPIN's 24 ground-truth joints (its ``constants.JOINT_NAMES[25:]``; ``part`` uses this order)."""

SPIN24_TO_COCO17: tuple[int, ...] = tuple(SPIN24_NAMES.index(name) for name in COCO17_NAMES)
"""SPIN-24 index of each COCO-17 keypoint. SPIN's hips are the LSP/MPII hip joints, a little lower and wider
than COCO's; close enough for the crop and for keypoint conditioning."""

LINK_MODES = ("copy", "symlink", "hardlink")


@dataclass
class ConvertReport:
    """What :func:`convert_spin` wrote: people kept, rows skipped for lack of SMPL, images placed."""

    people: int
    skipped_no_smpl: int
    images: int
    table: Path


def spin_to_coco17(part: np.ndarray) -> np.ndarray:
    """SPIN-24 keypoints (..., 24, 3) -> COCO-17 (..., 17, 3); a confidence of 0 stays a missing keypoint."""
    part = np.asarray(part, dtype=np.float64)
    if part.shape[-2:] != (24, 3):
        raise ValueError(f"SPIN 'part' must be (N, 24, 3) keypoints, got shape {part.shape}")
    return part[..., list(SPIN24_TO_COCO17), :]


def convert_spin(npz_path: str | Path, images_root: str | Path, out_folder: str | Path, split: str = "train",
                 link: str = "copy", box_enlargement: float = 1.2, table: str = "jsonl") -> ConvertReport:
    """Convert ``npz_path`` (SPIN layout, see the module docstring) into a dataset folder at ``out_folder``.

    ``box`` is SPIN's square divided by ``box_enlargement``: the format stores the person's own box and the
    reader enlarges it by 1.2, as inference does (it is used only when fewer than two keypoints are usable).
    ``link``: ``copy`` makes a self-contained folder; ``symlink``/``hardlink`` save the space of large sets.
    """
    if link not in LINK_MODES:
        raise ValueError(f"link must be one of {', '.join(LINK_MODES)}, got {link!r}")
    if not box_enlargement > 0:
        raise ValueError(f"box_enlargement must be positive, got {box_enlargement}")
    npz_path, images_root, out_folder = Path(npz_path), Path(images_root), Path(out_folder)
    needed = ("imgname", "center", "scale", "part", "pose", "shape")
    try:  # only the fields used: other fields (e.g. pickled metadata) need not be readable
        with np.load(npz_path, allow_pickle=False) as data:
            missing = [name for name in needed if name not in data.files]
            if missing:
                raise ValueError(f"not a SPIN-style NPZ, it lacks {', '.join(missing)}")
            arrays = {name: data[name] for name in (*needed, "has_smpl") if name in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{npz_path}: cannot read ({str(err).splitlines()[0]})") from None
    count = len(arrays["imgname"])
    keypoints = spin_to_coco17(arrays["part"])
    has_smpl = arrays.get("has_smpl", np.ones(count))
    sides = 200.0 * arrays["scale"].astype(np.float64).reshape(-1) / box_enlargement
    records, sources = [], {}
    for row in range(count):
        if not has_smpl[row]:
            continue
        raw_name = arrays["imgname"][row]
        raw_name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        name = PurePosixPath(raw_name.replace("\\", "/"))
        rel = str(PurePosixPath(IMAGES_DIR, *[p for p in name.parts if p not in ("/", "..", ".")]))
        sources.setdefault(rel, (images_root / name, row))
        (cx, cy), side, pose = arrays["center"][row], sides[row], arrays["pose"][row].astype(np.float64)
        records.append({
            "image": rel, "box": [cx - side / 2.0, cy - side / 2.0, side, side],
            "keypoints_2d": keypoints[row].tolist(), "body": "smpl", "global_orient": pose[:3].tolist(),
            "pose": pose[3:72].tolist(), "shape": arrays["shape"][row][:10].astype(np.float64).tolist(),
            "split": split,
        })
    for rel, (source, row) in sources.items():
        if not source.is_file():
            raise ValueError(f"{npz_path} row {row}: image {source} not found")
        _place(source, out_folder / rel, link)
    path = write_dataset(out_folder, records, table=table)
    return ConvertReport(people=len(records), skipped_no_smpl=count - len(records), images=len(sources), table=path)


def _place(source: Path, target: Path, link: str) -> None:
    """Put ``source`` at ``target``: an atomic copy, or a (replaced) link."""
    if link == "copy":
        atomic_write_bytes(target, source.read_bytes())
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if link == "symlink":
        os.symlink(source.resolve(), target)
    else:
        os.link(source, target)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.convert_spin",
                                     description="Convert a SPIN-style NPZ into a megaviewer dataset folder.")
    parser.add_argument("npz", help="SPIN-style NPZ (imgname, center, scale, part, pose, shape)")
    parser.add_argument("images_root", help="folder the NPZ's imgname paths are relative to")
    parser.add_argument("out", help="dataset folder to write")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--link", default="copy", choices=LINK_MODES, help="how images get into OUT/images")
    parser.add_argument("--box-enlargement", type=float, default=1.2,
                        help="factor SPIN's box already includes (the stored box is divided by it)")
    parser.add_argument("--table", default="jsonl", choices=("jsonl", "npz"))
    args = parser.parse_args(argv)
    try:
        report = convert_spin(args.npz, args.images_root, args.out, split=args.split, link=args.link,
                              box_enlargement=args.box_enlargement, table=args.table)
    except (ValueError, OSError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"wrote {report.people} people ({report.images} images) to {report.table}; "
          f"skipped {report.skipped_no_smpl} without SMPL")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
