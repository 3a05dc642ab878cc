"""SMPL / SMPL-H from the user's own model files, through ``smplx``, as a :class:`BodyModel`.

Why an adapter: the original MEGA works on SMPL-H meshes (docs/original-implementation.md §1), so users who hold the
licensed files can run and train on exactly that body. The files themselves may not be redistributed:
each user downloads them from the SMPL / MANO / AMASS websites, and this module never ships, fetches or
caches them (it also keeps their arrays out of every ``state_dict``, so checkpoints never contain them).

Conventions, as in the original: SMPL-H with flat hands (zero hand pose and ``flat_hand_mean=True``),
body pose = 21 joints (SMPL-H) or 23 joints (SMPL) in axis-angle, in smplx's joint order and axes; the
root orientation is forced to zero and there is no translation, so :meth:`SmplBody.posed_vertices` is in
SMPL's own rest frame (metres, y up, facing +z), which is the shared frame; canonicalisation (centroid
removal) and the global rotation come from :class:`BodyModel`.

Files: ``.npz`` (read with ``allow_pickle=False``, i.e. never unpickled) or ``.pkl``. A ``.pkl`` file is
*unpickled*, which can run arbitrary code: that is acceptable only because it is the user's own SMPL
file from the official source. Pickles holding ``chumpy`` objects (some official releases) are refused
with instructions; save a chumpy-free copy or an ``.npz`` once.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from megaviewer.body.base import BodyModel
from megaviewer.body.keypoints import COCO17_NAMES

LICENCE_NOTE = (
    "SMPL and SMPL-H model files are licensed by the Max Planck Institute for Intelligent Systems and "
    "cannot be shipped with megaviewer: register and download them yourself (SMPL from "
    "https://smpl.is.tue.mpg.de, SMPL-H from https://mano.is.tue.mpg.de or the 'Extended SMPL+H' "
    "model from https://amass.is.tue.mpg.de)."
)
NUM_JOINTS = {"smpl": 24, "smplh": 52}
STANDARD_NUM_VERTICES = 6890
REQUIRED_KEYS = ("v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs", "posedirs")
HAND_KEYS = ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")
GENDERS = ("neutral", "male", "female")
# Keys of smplx's ``vertex_ids['smplh']`` table for the COCO face points, in COCO-17 order.
COCO_FACE_VERTEX_KEYS = ("nose", "leye", "reye", "lear", "rear")
# Where the face points sit relative to the head joint (metres, +x = body's left), for other topologies.
COCO_FACE_OFFSETS = ((0.0, 0.0, 0.10), (0.035, 0.035, 0.09), (-0.035, 0.035, 0.09), (0.08, 0.0, 0.0),
                     (-0.08, 0.0, 0.0))


class SmplModelFileError(ValueError):
    """A user-supplied SMPL/SMPL-H model file that cannot be used (the message says why and where)."""


def smpl_joint_names(model_type: str) -> tuple[str, ...]:
    """All skeleton joints (root first) in smplx's order: 24 for SMPL, 52 for SMPL-H."""
    from smplx.joint_names import SMPLH_JOINT_NAMES

    if model_type == "smplh":
        return tuple(SMPLH_JOINT_NAMES[:52])
    return tuple(SMPLH_JOINT_NAMES[:22]) + ("left_hand", "right_hand")


def resolve_model_file(model_path: str | Path, model_type: str = "smpl", gender: str = "neutral") -> Path:
    """The model file for a path that is either the file itself or a folder holding it.

    Folder layouts understood: ``SMPLH_NEUTRAL.npz`` (or ``.pkl``) directly inside or in a ``smplh``
    subfolder (smplx's layout), ``neutral/model.npz`` (AMASS; also ``m``/``f`` as in MEGA), and the
    official SMPL names ``basicmodel_neutral_lbs_*.pkl`` / ``basicModel_f_lbs_*.pkl``.
    """
    path = Path(model_path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{model_type.upper()} model file not found: {path}\n{LICENCE_NOTE}")
    stem = f"{model_type.upper()}_{gender.upper()}"
    candidates = [folder / f"{stem}.{ext}" for folder in (path, path / model_type) for ext in ("npz", "pkl")]
    short = {"neutral": ("neutral",), "male": ("male", "m"), "female": ("female", "f")}[gender]
    candidates += [path / name / "model.npz" for name in short]
    if model_type == "smpl":
        candidates += sorted(path.glob(f"basic[Mm]odel_{short[-1]}_lbs_*.pkl"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = "\n  ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no {model_type.upper()} model file ({gender}) found in folder {path}; looked for:\n  {tried}\n"
        f"{LICENCE_NOTE}"
    )


def load_model_data(path: str | Path, model_type: str = "smpl") -> dict[str, Any]:
    """Read and check the arrays of an SMPL/SMPL-H model file (``.npz`` or chumpy-free ``.pkl``).

    Raises :class:`FileNotFoundError` or :class:`SmplModelFileError` with a message naming the file;
    never a bare unpickling or indexing traceback.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{model_type.upper()} model file not found: {path}\n{LICENCE_NOTE}")
    data = _read_pickle(path) if path.suffix.lower() == ".pkl" else _read_npz(path)
    _check_arrays(data, path, model_type)
    if model_type == "smplh":
        # Hands are always flat here (zero pose, flat mean, no PCA), so a file without the MANO hand
        # arrays (some conversions drop them) works just as well: fill in neutral values smplx reads.
        data.setdefault("hands_componentsl", np.eye(45))
        data.setdefault("hands_componentsr", np.eye(45))
        data.setdefault("hands_meanl", np.zeros(45))
        data.setdefault("hands_meanr", np.zeros(45))
    return data


def _read_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle, encoding="latin1")
    except ModuleNotFoundError as error:
        if "chumpy" in str(error):
            raise SmplModelFileError(
                f"{path} stores chumpy objects, which megaviewer does not load. Convert it once to plain "
                "arrays (smplx's tools/clean_ch.py does this, or load it where chumpy is installed and save "
                "each array with np.savez) and point megaviewer at the cleaned file."
            ) from None
        raise SmplModelFileError(f"{path} is not a usable SMPL model pickle ({error})") from None
    except Exception as error:  # any unpickling failure means a damaged or foreign file
        raise SmplModelFileError(
            f"{path} is not a readable SMPL model pickle ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SmplModelFileError(f"{path} does not hold a dictionary of model arrays (found {kind})")
    return dict(data)


def _read_npz(path: Path) -> dict[str, Any]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise SmplModelFileError(f"{path} is not a readable .npz model file ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise SmplModelFileError(f"{path} holds a single array, not an .npz archive of model arrays")
    data: dict[str, Any] = {}
    with archive:
        for key in REQUIRED_KEYS + HAND_KEYS:
            if key not in archive.files:
                continue
            try:
                data[key] = archive[key]
            except ValueError as error:  # object arrays need unpickling, which we refuse for .npz
                raise SmplModelFileError(
                    f"{path}: array {key!r} is stored as pickled objects ({error}); re-save it as a plain "
                    "numeric array"
                ) from None
    return data


def _check_arrays(data: dict[str, Any], path: Path, model_type: str) -> None:
    """Shape checks for everything smplx reads, so a bad file fails here with a readable message."""
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise SmplModelFileError(f"{path} is missing the model arrays {missing}; is it an SMPL model file?")

    def shape(key: str) -> tuple[int, ...]:
        return tuple(getattr(data[key], "shape", np.shape(data[key])))

    joints = NUM_JOINTS[model_type]
    v_template = shape("v_template")
    if len(v_template) != 2 or v_template[1] != 3:
        raise SmplModelFileError(f"{path}: v_template has shape {v_template}, expected (V, 3)")
    verts = v_template[0]
    kintree = shape("kintree_table")
    if len(kintree) != 2 or kintree[0] != 2:
        raise SmplModelFileError(f"{path}: kintree_table has shape {kintree}, expected (2, J)")
    if kintree[1] != joints:
        other = {24: "'smpl'", 52: "'smplh'"}.get(kintree[1])
        hint = f"; load it with model_type={other}" if other else ""
        raise SmplModelFileError(
            f"{path} has {kintree[1]} joints but {model_type.upper()} has {joints}{hint}"
        )
    expected = {
        "J_regressor": (joints, verts),
        "weights": (verts, joints),
        "posedirs": (verts, 3, 9 * (joints - 1)),
    }
    for key, want in expected.items():
        if shape(key) != want:
            raise SmplModelFileError(f"{path}: {key} has shape {shape(key)}, expected {want}")
    shapedirs = shape("shapedirs")
    if len(shapedirs) != 3 or shapedirs[:2] != (verts, 3) or shapedirs[2] < 1:
        raise SmplModelFileError(f"{path}: shapedirs has shape {shapedirs}, expected ({verts}, 3, S)")
    faces = np.asarray(data["f"])
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.size == 0:
        raise SmplModelFileError(f"{path}: f has shape {faces.shape}, expected (F, 3) triangles")
    if faces.min() < 0 or faces.max() >= verts:
        raise SmplModelFileError(f"{path}: f indexes vertices outside 0..{verts - 1}")


def build_coco_regressor(j_regressor: torch.Tensor, v_template: torch.Tensor, weights: torch.Tensor,
                         joint_names: tuple[str, ...]) -> torch.Tensor:
    """COCO-17 keypoints as a (17, V) linear map of the mesh vertices.

    Body points (shoulders to ankles) are the matching rows of the model's own joint regressor (COCO and
    smplx use the same names). Face points: on the standard 6,890-vertex topology, smplx's landmark
    vertices (nose 332, left eye 2800, right eye 6260, left ear 583, right ear 4071); on any other
    topology, the head-skinned vertex nearest to a fixed offset from the head joint (or the head joint
    itself when no vertex is head-skinned), so the points still move rigidly with the head.
    """
    num_verts = v_template.shape[0]
    regressor = torch.zeros(17, num_verts, dtype=j_regressor.dtype)
    for row, name in enumerate(COCO17_NAMES[5:], start=5):
        regressor[row] = j_regressor[joint_names.index(name)]
    head = joint_names.index("head")
    if num_verts == STANDARD_NUM_VERTICES:
        from smplx.vertex_ids import vertex_ids

        ids = [vertex_ids["smplh"][key] for key in COCO_FACE_VERTEX_KEYS]
        if v_template[ids[1], 0] <= v_template[ids[2], 0]:
            warnings.warn("this 6890-vertex model's 'left eye' vertex is not on the +x (left) side; its "
                          "COCO face keypoints may be mirrored", stacklevel=3)
        regressor[torch.arange(5), torch.tensor(ids)] = 1.0
        return regressor
    candidates = torch.nonzero(weights[:, head] >= 0.5).flatten()
    if candidates.numel() == 0:
        regressor[:5] = j_regressor[head]
        return regressor
    head_position = j_regressor[head] @ v_template
    for row, offset in enumerate(COCO_FACE_OFFSETS):
        target = head_position + torch.tensor(offset, dtype=v_template.dtype)
        nearest = candidates[(v_template[candidates] - target).norm(dim=-1).argmin()]
        regressor[row, nearest] = 1.0
    return regressor


class SmplBody(BodyModel):
    """SMPL or SMPL-H behind the shared body interface (see the module docstring for conventions).

    ``model_path`` is the model file (``.npz`` or chumpy-free ``.pkl``) or a folder holding it (see
    :func:`resolve_model_file`). ``num_betas`` is capped by the file (and, as smplx does, at 10 for
    files with fewer than 300 shape components). ``dtype`` is the precision of the model arrays.
    """

    name = "smpl"

    def __init__(self, model_path: str | Path, model_type: str = "smpl", gender: str = "neutral",
                 num_betas: int = 10, dtype: torch.dtype = torch.float32):
        super().__init__()
        if model_type not in NUM_JOINTS:
            raise ValueError(f"model_type must be 'smpl' or 'smplh', got {model_type!r}")
        if gender not in GENDERS:
            raise ValueError(f"gender must be one of {GENDERS}, got {gender!r}")
        self.name = model_type
        self.model_type = model_type
        self.gender = gender
        self.model_file = resolve_model_file(model_path, model_type, gender)
        data = load_model_data(self.model_file, model_type)
        available = int(data["shapedirs"].shape[-1])
        if num_betas > available:
            warnings.warn(f"{self.model_file} has only {available} shape components; using {available}",
                          stacklevel=2)
        self.smpl = _create_smplx_model(data, self.model_file, model_type, gender,
                                        min(num_betas, available), dtype)
        # Keep the licensed arrays out of state_dict(): checkpoints of anything holding this body must
        # never redistribute them. They stay ordinary buffers otherwise (they follow .to(device)).
        for module in self.smpl.modules():
            for key, buffer in list(module.named_buffers(recurse=False)):
                module.register_buffer(key, buffer, persistent=False)

        self.joint_names = smpl_joint_names(model_type)
        self.pose_joint_names = self.joint_names[1:22] if model_type == "smplh" else self.joint_names[1:]
        self.shape_names = tuple(f"beta{i}" for i in range(self.smpl.num_betas))
        self.register_buffer("faces", self.smpl.faces_tensor.clone(), persistent=False)
        coco = build_coco_regressor(self.smpl.J_regressor, self.smpl.v_template, self.smpl.lbs_weights,
                                    self.joint_names)
        self.register_buffer("coco_regressor", coco, persistent=False)

    def posed_vertices(self, pose: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return self.smplx_output(pose, shape).vertices

    def region_mask(self, roots: tuple[str, ...]) -> torch.Tensor:
        """(V,) bool: vertices whose strongest skinning joint is one of ``roots`` (smplx joint names) or
        descends from one, e.g. ``("left_wrist", "right_wrist")`` for the hands; the SMPL counterpart of
        :meth:`AnnyBody.region_mask`, so evaluation can report errors on the same body parts."""
        unknown = [name for name in roots if name not in self.joint_names]
        if unknown:
            raise ValueError(f"unknown {self.name} joints {unknown}; joints are {self.joint_names}")
        parents = [int(p) for p in self.smpl.parents]
        inside = [False] * len(self.joint_names)
        for i, name in enumerate(self.joint_names):  # parents precede children in smplx's order
            inside[i] = name in roots or (parents[i] >= 0 and inside[parents[i]])
        strongest = self.smpl.lbs_weights.argmax(dim=-1)
        return torch.tensor(inside)[strongest.long().cpu()]

    def smplx_output(self, pose: torch.Tensor, shape: torch.Tensor) -> Any:
        """Raw smplx output (vertices, skeleton joints, ...) for zero root orientation and no translation."""
        num_pose, num_shape = len(self.pose_joint_names), len(self.shape_names)
        if pose.ndim != 3 or pose.shape[1:] != (num_pose, 3):
            raise ValueError(f"{self.name} pose must have shape (B, {num_pose}, 3), got {tuple(pose.shape)}")
        if shape.ndim != 2 or shape.shape != (pose.shape[0], num_shape):
            raise ValueError(f"{self.name} shape must have shape ({pose.shape[0]}, {num_shape}), "
                             f"got {tuple(shape.shape)}")
        dtype = self.smpl.v_template.dtype
        batch = pose.shape[0]
        zeros = pose.new_zeros(batch, 3, dtype=dtype)
        inputs = {"betas": shape.to(dtype), "body_pose": pose.to(dtype).reshape(batch, -1),
                  "global_orient": zeros}
        if self.model_type == "smplh":
            hand = pose.new_zeros(batch, 45, dtype=dtype)
            inputs.update(left_hand_pose=hand, right_hand_pose=hand)
        return self.smpl(**inputs)


def _create_smplx_model(data: dict[str, Any], path: Path, model_type: str, gender: str, num_betas: int,
                        dtype: torch.dtype) -> torch.nn.Module:
    """smplx's own SMPL/SMPLH module over already-checked arrays, without per-instance pose parameters."""
    import smplx
    from smplx.utils import Struct
    from smplx.vertex_ids import vertex_ids as smplx_vertex_ids

    # smplx always gathers its extra landmark joints by 6890-topology vertex ids; on another topology
    # point them at vertex 0 (we never use those joints) so they cannot index out of range.
    num_verts = int(np.shape(data["v_template"])[0])
    vertex_ids = None if num_verts == STANDARD_NUM_VERTICES else dict.fromkeys(smplx_vertex_ids["smplh"], 0)
    common = dict(
        model_path=str(path), data_struct=Struct(**data), gender=gender, num_betas=num_betas, dtype=dtype,
        vertex_ids=vertex_ids, create_betas=False, create_global_orient=False, create_body_pose=False,
        create_transl=False,
    )
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note for 10-beta files
            if model_type == "smplh":
                return smplx.SMPLH(use_pca=False, flat_hand_mean=True, create_left_hand_pose=False,
                                   create_right_hand_pose=False, **common)
            return smplx.SMPL(**common)
    except Exception as error:  # arrays passed our checks, so this is an unusual dtype or layout
        raise SmplModelFileError(f"smplx could not build a model from {path} "
                                 f"({type(error).__name__}: {error})") from None
