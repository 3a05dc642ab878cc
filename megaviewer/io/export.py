"""Exports: OBJ, PLY, GLB meshes, an NPZ of everything a recovery produced, and PNG images.

Every file is written atomically (:mod:`megaviewer.io.atomic`): a crash, a full disk or a bad value
leaves either no file or the previous one, never a half-written mesh that a 3D tool half-loads. A
destination that cannot be written raises :class:`ExportError` naming the path and the reason.

Mesh formats (chosen by the suffix of ``path``):

* ``.obj`` -- text, written here: ``v x y z``, optional ``vn`` area-weighted vertex normals, 1-based
  ``f`` (``f a//a b//b c//c`` with normals). Readable by every 3D tool.
* ``.ply`` -- binary little-endian, written here: float32 ``x y z``, faces as uchar count + int32 indices.
* ``.glb`` -- binary glTF 2.0 through ``trimesh`` (what web viewers and Blender import best).

Vertices are written as given, in metres. Meshes from a :class:`~megaviewer.result.RecoveryResult` are
in the OpenCV camera frame (x right, y *down*, z forward): they line up with the photo, but most 3D
tools (y up) show them upside down; export ``canonical_vertices`` for an upright body.

NPZ schema (``schema_version`` 1), written by :func:`export_npz`; Q = samples, V = working vertices
(1,229 for the shipped body), F = faces, N = tokens, 17 = COCO-17 keypoints (``joint_names``):

==================================  ===============  =====================================================
key                                 shape / dtype    meaning
==================================  ===============  =====================================================
``schema_version``                  () int           1
``mode``                            () str           "deterministic" | "stochastic" | "unconditional"
``person_index``                    () int           which person of the image (0 = first detected)
``camera_vertices``                 (Q, V, 3) f32    per-sample mesh in the camera frame, metres
``canonical_vertices``              (Q, V, 3) f32    per-sample mesh, centroid-centred, y up, facing +z
``mean_camera_vertices``            (V, 3) f32       mean-of-Q mesh in the camera frame (mean canonical mesh,
                                                     mean rotation, mean translation)
``mean_canonical_vertices``         (V, 3) f32       mean of the Q canonical meshes
``vertex_sd_mm``                    (V,) f32         per-vertex spread of the canonical samples, mm (0 if Q = 1)
``faces``                           (F, 3) i32       triangles, 0-based, of the working topology
``tokens``                          (Q, N) i64       the mesh tokens (Mesh-VQ-VAE codebook indices)
``latents``                         (Q, N, D) f32    the expected codes the network's bodies were decoded
                                                     from, when they were (the default)*****
``joints``                          (Q, 17, 3) f32   COCO-17 3D joints in the camera frame, metres
``joint_names``                     (17,) str        COCO-17 keypoint names
``rotation``                        (Q, 3, 3) f32    camera-frame orientation: camera = R · canonical + t
``cam_weak``                        (Q, 3) f32       weak-perspective camera [s, tx, ty] in crop coordinates
``translation``                     (Q, 3) f32       t above: camera-frame position of the mesh centroid
``focal``                           () f32           full-image focal length in px (NaN when unknown)
``focal_source``                    () str           where it came from: "exif-35mm", "exif-sensor",
                                                     "default-fov" (assumed lens), "given" ("" unknown)
``image_size``                      (2,) i32         (W, H) of the image the camera refers to ([0, 0] unknown)
``keypoints_2d``                    (17, 3) f32      input keypoints: x, y px, confidence (0 = missing)*
``box_center``                      (2,) f32         crop box centre in px*
``box_side``                        () f32           crop box side in px*
``landmarks_3d``                    (33, 4) f32      the detector's 3D landmarks: x, y, z metres around the
                                                     hips (MediaPipe's axes), visibility***
``network_rotation``                (Q, 3, 3) f32    the network's own rotation, before the camera fit**
``network_cam``                     (Q, 3) f32       the network's own [s, tx, ty], before the camera fit**
``camera_fit_fitted``               (Q,) bool        whether the fit was used for the hypothesis**
``camera_fit_num_keypoints``        (Q,) i32         usable keypoints per hypothesis**
``camera_fit_error_before``         (Q,) f32         mean 2D keypoint error with the network's camera**
``camera_fit_error_after``          (Q,) f32         mean 2D keypoint error with the returned camera**
``camera_fit_rotation_change_deg``  (Q,) f32         angle between the fitted and the network rotation**
``refined_latents``                 (Q, N, D) f32    the token latents after the keypoint refinement: the
                                                     refined bodies are their decode, not the tokens'****
``refined``                         (Q,) bool        whether the hypothesis kept its refinement****
``refine_error_before``             (Q,) f32         mean 2D keypoint error of the network's body****
``refine_error_after``              (Q,) f32         the same after the refinement****
==================================  ===============  =====================================================

(*) only when the detection is passed. (**) only when the camera was fitted to the keypoints
(:mod:`megaviewer.camera_fit`, the engine's default); errors are in normalised crop units (box side = 2).
(***) only when the detector (or the keypoints file) gave them (:mod:`megaviewer.vision.landmarks`).
(****) only when the bodies were refined to the keypoints (:mod:`megaviewer.refine`, the default for photos).
(*****) only when the engine decoded expected codes instead of the tokens' codes (:mod:`megaviewer.generate`).
Load with ``numpy.load(path)``; string entries are numpy unicode arrays (``str(data["mode"])``).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from megaviewer.io.atomic import atomic_path

if TYPE_CHECKING:
    from megaviewer.result import RecoveryResult

MESH_FORMATS = ("obj", "ply", "glb")
NPZ_SCHEMA_VERSION = 1


class ExportError(OSError):
    """A file that could not be written; the message names the path and the reason."""


def export_mesh(path: str | os.PathLike, vertices, faces, normals: bool = True) -> Path:
    """Write one triangle mesh; the format comes from the suffix (``.obj``, ``.ply``, ``.glb``)."""
    path = Path(path)
    verts = _as_vertices(vertices)
    tris = _as_faces(faces, len(verts))
    suffix = path.suffix.lower().lstrip(".")
    writers = {"obj": lambda p: _write_obj(p, verts, tris, normals), "ply": lambda p: _write_ply(p, verts, tris),
               "glb": lambda p: _write_glb(p, verts, tris)}
    if suffix not in writers:
        raise ValueError(f"{path}: unknown mesh format {path.suffix!r}; use one of .obj, .ply, .glb")
    with _atomic(path) as tmp:
        writers[suffix](tmp)
    return path


def export_npz(path: str | os.PathLike, result: RecoveryResult, person_index: int = 0, detection=None,
               image_size: tuple[int, int] | None = None) -> Path:
    """Write everything ``result`` holds (see the module docstring for the keys), compressed."""
    from megaviewer.body.keypoints import COCO17_NAMES

    def arr(t, dtype=np.float32):
        return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=dtype)

    camera = arr(result.camera_vertices)
    canonical = arr(result.canonical_vertices)
    data: dict[str, np.ndarray] = {
        "schema_version": np.asarray(NPZ_SCHEMA_VERSION, dtype=np.int64),
        "mode": np.asarray(str(result.mode)),
        "person_index": np.asarray(int(person_index), dtype=np.int64),
        "camera_vertices": camera,
        "canonical_vertices": canonical,
        "mean_camera_vertices": arr(result.mean_camera),
        "mean_canonical_vertices": arr(result.mean_canonical),
        "vertex_sd_mm": arr(result.vertex_sd_mm),
        "faces": arr(result.faces, np.int32),
        "tokens": arr(result.tokens, np.int64),
        "joints": arr(result.joints),
        "joint_names": np.asarray(COCO17_NAMES),
        "rotation": arr(result.rotation),
        "cam_weak": arr(result.cam_weak),
        "translation": arr(result.translation),
        "focal": np.asarray(np.nan if result.focal is None else float(result.focal), dtype=np.float32),
        "focal_source": np.asarray(str(getattr(result, "focal_source", None) or "")),
    }
    size = image_size if image_size is not None else getattr(detection, "image_size", None)
    data["image_size"] = np.asarray(size if size is not None else (0, 0), dtype=np.int32)
    if detection is not None:
        kp = np.asarray(detection.keypoints, dtype=np.float32).copy()
        kp[~np.asarray(detection.valid, dtype=bool), 2] = 0.0
        data["keypoints_2d"] = kp
        data["box_center"] = np.asarray(detection.box_center, dtype=np.float32)
        data["box_side"] = np.asarray(detection.box_side, dtype=np.float32)
    landmarks = getattr(result, "landmarks_3d", None)
    if landmarks is None and detection is not None:
        landmarks = getattr(detection, "landmarks_3d", None)
    if landmarks is not None:
        data["landmarks_3d"] = arr(landmarks)
    if getattr(result, "network_rotation", None) is not None:
        data["network_rotation"] = arr(result.network_rotation)
    if getattr(result, "network_cam", None) is not None:
        data["network_cam"] = arr(result.network_cam)
    fit = getattr(result, "camera_fit", None)
    if fit is not None:
        data["camera_fit_fitted"] = arr(fit.fitted, bool)
        data["camera_fit_num_keypoints"] = arr(fit.num_keypoints, np.int32)
        data["camera_fit_error_before"] = arr(fit.error_before)
        data["camera_fit_error_after"] = arr(fit.error_after)
        data["camera_fit_rotation_change_deg"] = arr(fit.rotation_change_deg)
    if getattr(result, "latents", None) is not None:
        data["latents"] = arr(result.latents)
    refinement = getattr(result, "refinement", None)
    if refinement is not None:
        data["refined_latents"] = arr(refinement.latents)
        data["refined"] = arr(refinement.refined, bool)
        data["refine_error_before"] = arr(refinement.error_before)
        data["refine_error_after"] = arr(refinement.error_after)
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ValueError(f"{path}: an NPZ export needs the .npz suffix")
    with _atomic(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **data)
    return path


def export_png(path: str | os.PathLike, image: np.ndarray, rgb: bool = False) -> Path:
    """Write an image (BGR uint8, or RGB with ``rgb=True``; gray and 4-channel kept) as a PNG, atomically.

    The one image writer of the command line and the app, so a crash never leaves half a PNG behind.
    """
    import cv2

    path = Path(path)
    pixels = np.ascontiguousarray(image)
    if rgb and pixels.ndim == 3:
        pixels = np.ascontiguousarray(pixels[..., [2, 1, 0, 3][: pixels.shape[2]]])
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise ExportError(f"cannot encode {path} as PNG")
    with _atomic(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3); isolated vertices get (0, 0, 0)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, f[:, k], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


# ---------------------------------------------------------------------------------------------- writers
def _write_obj(path: Path, verts: np.ndarray, faces: np.ndarray, normals: bool) -> None:
    lines = ["# megaviewer mesh export (metres)"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    idx = faces + 1
    if normals:
        lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in vertex_normals(verts, faces)]
        lines += [f"f {a}//{a} {b}//{b} {c}//{c}" for a, b, c in idx]
    else:
        lines += [f"f {a} {b} {c}" for a, b, c in idx]
    with open(path, "w", encoding="ascii") as handle:
        handle.write("\n".join(lines) + "\n")


def _write_ply(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    header = ("ply\nformat binary_little_endian 1.0\ncomment megaviewer mesh export (metres)\n"
              f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    face_rec = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["idx"] = faces
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(np.ascontiguousarray(verts, dtype="<f4").tobytes())
        handle.write(face_rec.tobytes())


def _write_glb(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    import trimesh

    mesh = trimesh.Trimesh(vertices=verts.astype(np.float64), faces=faces, process=False)
    data = mesh.export(file_type="glb")
    with open(path, "wb") as handle:
        handle.write(data)


# ---------------------------------------------------------------------------------------------- helpers
def _as_vertices(vertices) -> np.ndarray:
    v = np.asarray(vertices.detach().cpu().numpy() if hasattr(vertices, "detach") else vertices, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinite values")
    return v


def _as_faces(faces, num_vertices: int) -> np.ndarray:
    f = np.asarray(faces.detach().cpu().numpy() if hasattr(faces, "detach") else faces, dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3) triangles, got {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= num_vertices):
        raise ValueError(f"face indices must lie in [0, {num_vertices}), got [{f.min()}, {f.max()}]")
    return f


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """``atomic_path`` whose OS errors (folder not writable, disk full, ...) become :class:`ExportError`."""
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except ExportError:
        raise
    except OSError as exc:
        raise _export_error(path, exc) from exc


def _export_error(path: Path, exc: OSError) -> ExportError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EACCES or isinstance(exc, PermissionError):
        reason = "permission denied"
    elif exc.errno == errno.ENOSPC:
        reason = "no space left on the device"
    elif exc.errno == errno.EROFS:
        reason = "read-only file system"
    elif isinstance(exc, (NotADirectoryError, FileExistsError)):
        reason = "a file is in the way of the destination folder"
    return ExportError(f"cannot write {path}: {reason}")
