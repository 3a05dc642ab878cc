"""Every person of a picture in one binary glTF file: the photo's 3D scene, seen from its camera.

Why one file: per-person meshes each sit in the camera frame already, but a user who wants the group (who
stands in front of whom, how far apart) would have to load and align several files. Here each person is a
named node (``person0``, ``person1``, ... in the order of the picture's people) holding that person's mesh
with the vertices exactly as in the per-person camera-frame exports (OpenCV axes: x right, y down, z
forward, metres). Each node's transform turns them by 180° about x into glTF's axes (y up, the camera looking
down -z), so viewers show the scene upright, and a perspective camera node at the origin has the photo's
vertical field of view and aspect ratio: looking through it in Blender or a web viewer frames the scene as
the photo did.

Written atomically, as every export (:mod:`megaviewer.io.export`).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CAMERA_TO_GLTF = np.diag([1.0, -1.0, -1.0, 1.0])
"""OpenCV camera axes (y down, z forward) -> glTF axes (y up, camera looking down -z)."""

Z_NEAR_M = 0.01


def export_scene(path: str | os.PathLike, meshes: Sequence[tuple[np.ndarray, np.ndarray]],
                 focal: float | None = None, image_size: tuple[int, int] | None = None,
                 names: Sequence[str] | None = None) -> Path:
    """Write ``meshes`` ((V, 3) camera-frame vertices, (F, 3) faces) as one ``.glb`` scene.

    ``focal`` (px) and ``image_size`` (W, H) add the photo's camera; ``names`` default to ``person{i}``.
    Raises ``ValueError`` for no meshes, a wrong suffix or bad arrays, :class:`~megaviewer.io.export.ExportError`
    when the file cannot be written.
    """
    import trimesh

    from megaviewer.io.export import _as_faces, _as_vertices, _atomic

    path = Path(path)
    if path.suffix.lower() != ".glb":
        raise ValueError(f"{path}: a scene export needs the .glb suffix")
    if not meshes:
        raise ValueError(f"{path}: a scene needs at least one mesh")
    names = list(names) if names is not None else [f"person{i}" for i in range(len(meshes))]
    if len(names) != len(meshes) or len(set(names)) != len(names):
        raise ValueError(f"{path}: need {len(meshes)} distinct names, got {names}")
    scene = trimesh.Scene()
    for name, (vertices, faces) in zip(names, meshes, strict=True):
        verts = _as_vertices(vertices)
        mesh = trimesh.Trimesh(vertices=verts.astype(np.float64), faces=_as_faces(faces, len(verts)), process=False)
        scene.add_geometry(mesh, node_name=name, geom_name=name, transform=CAMERA_TO_GLTF)
    data = scene.export(file_type="glb")
    if focal is not None and image_size is not None:
        data = _with_camera(data, float(focal), (int(image_size[0]), int(image_size[1])))
    with _atomic(path) as tmp:
        tmp.write_bytes(data)
    return path


def _with_camera(glb: bytes, focal: float, image_size: tuple[int, int]) -> bytes:
    """Add a perspective camera node at the origin (glTF's camera looks down -z, y up) to a GLB's JSON."""
    width, height = image_size
    if not (math.isfinite(focal) and focal > 0 and width > 0 and height > 0):
        return glb
    gltf, binary = _split_glb(glb)
    gltf.setdefault("cameras", []).append({
        "name": "photo_camera", "type": "perspective",
        "perspective": {"yfov": 2.0 * math.atan(height / (2.0 * focal)), "aspectRatio": width / height,
                        "znear": Z_NEAR_M}})
    nodes = gltf.setdefault("nodes", [])
    nodes.append({"name": "photo_camera", "camera": len(gltf["cameras"]) - 1})
    scene = gltf.get("scene", 0)
    gltf["scenes"][scene].setdefault("nodes", []).append(len(nodes) - 1)
    return _join_glb(gltf, binary)


def _split_glb(glb: bytes) -> tuple[dict, bytes]:
    """A GLB's JSON chunk (parsed) and its binary chunk (raw, possibly empty)."""
    magic, _version, _length = struct.unpack_from("<4sII", glb, 0)
    if magic != b"glTF":
        raise ValueError("not a binary glTF")
    json_len, json_type = struct.unpack_from("<I4s", glb, 12)
    if json_type != b"JSON":
        raise ValueError("a binary glTF must start with its JSON chunk")
    gltf = json.loads(glb[20:20 + json_len].decode("utf-8"))
    return gltf, glb[20 + json_len:]


def _join_glb(gltf: dict, binary_chunks: bytes) -> bytes:
    """Header + JSON chunk (padded with spaces to 4 bytes, as the spec asks) + the unchanged binary chunks."""
    text = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    body = struct.pack("<I4s", len(text), b"JSON") + text + binary_chunks
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body
