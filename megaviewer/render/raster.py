"""The one software rasteriser (numpy + OpenCV): photo overlays and gallery thumbnails.

Why not the GL viewport or VTK: overlays are needed for Q meshes at once, on every live frame, and by the
headless command line; drawing the working triangles with a painter's algorithm costs a few milliseconds,
needs no GL context and gives the same pixels on every machine, so the app and ``megaviewer infer`` show
the same overlay. No Qt here.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

LIGHT = np.array([0.3, -0.4, -1.0]) / np.linalg.norm([0.3, -0.4, -1.0])
"""Head-light from slightly above-left of the camera, in the OpenCV camera frame (z forward)."""


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit face normals (F, 3) (zero for degenerate faces)."""
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return normals / (np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12)


def face_shading(vertices: np.ndarray, faces: np.ndarray, light: np.ndarray = LIGHT) -> np.ndarray:
    """Lambert factor per face in [0.25, 1] (two-sided, so a mesh seen from behind is still lit)."""
    return 0.25 + 0.75 * np.abs(face_normals(vertices, faces) @ light)


def orientation(vertices: np.ndarray, faces: np.ndarray) -> int:
    """+1 when the faces wind counter-clockwise seen from outside (positive signed volume), else -1."""
    tri = vertices[faces].astype(np.float64)
    return 1 if np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() >= 0 else -1


def rasterize(pixels: np.ndarray, depth: np.ndarray, faces: np.ndarray, size: tuple[int, int],
              colours: np.ndarray, shading: np.ndarray, alpha: int = 255, antialias: bool = True,
              cull: int = 0) -> np.ndarray:
    """Draw triangles far-to-near into an RGBA image of ``size`` = (W, H).

    ``pixels`` (V, 2) image coordinates, ``depth`` (V,) larger = farther, ``colours`` (V, 3) or (3,) RGB uint8,
    ``shading`` (F,) multiplies each face colour. ``cull`` = :func:`orientation` of the camera-frame mesh
    skips faces turned away from the viewer (hidden on a closed body anyway: half the triangles drawn);
    0 draws all.
    """
    width, height = size
    out = np.zeros((height, width, 4), np.uint8)
    tri_px = pixels[faces]
    area = ((tri_px[:, 1, 0] - tri_px[:, 0, 0]) * (tri_px[:, 2, 1] - tri_px[:, 0, 1])
            - (tri_px[:, 2, 0] - tri_px[:, 0, 0]) * (tri_px[:, 1, 1] - tri_px[:, 0, 1]))
    # In pixels (y down), a face whose outward normal points at the camera has negative signed area.
    front = np.isfinite(area) & ((area * cull <= 0) if cull else True)
    keep = np.flatnonzero(front)
    colours = np.asarray(colours, np.float32)
    face_rgb = colours[faces[keep]].mean(axis=1) if colours.ndim == 2 else np.broadcast_to(colours, (len(keep), 3))
    face_rgb = np.clip(face_rgb * shading[keep, None], 0, 255).astype(np.uint8)
    order = np.argsort(-depth[faces[keep]].mean(axis=1), kind="stable")
    tris = np.round(tri_px[keep][order] * 4).astype(np.int32)  # 2 bits of sub-pixel precision
    rgba = np.concatenate([face_rgb[order], np.full((len(order), 1), alpha, np.uint8)], axis=1).tolist()
    line = cv2.LINE_AA if antialias else cv2.LINE_8
    fill = cv2.fillConvexPoly
    for tri, colour in zip(tris, rgba, strict=True):
        fill(out, tri, colour, line, 2)
    return out


def project(camera_vertices: np.ndarray, focal: float, image_size: tuple[int, int]) -> np.ndarray:
    """OpenCV-frame points (V, 3) -> pixels (V, 2), principal point at the image centre (the model's camera)."""
    width, height = image_size
    z = np.where(camera_vertices[:, 2] > 1e-6, camera_vertices[:, 2], np.nan)
    u = focal * camera_vertices[:, 0] / z + width / 2.0
    v = focal * camera_vertices[:, 1] / z + height / 2.0
    return np.stack([u, v], axis=1)


def overlay_layer(meshes: Sequence[np.ndarray], faces: np.ndarray, focal: float, image_size: tuple[int, int],
                  colours: np.ndarray | Sequence[np.ndarray], max_side: int | None = None) -> np.ndarray:
    """Every mesh (camera-frame vertices (V, 3)) over a photo of ``image_size``, depth-sorted across meshes.

    ``colours`` is one uint8 array for all meshes (RGB (3,) or per vertex (V, 3)), or a list of them, one
    per mesh. The layer is drawn at the photo's size capped to ``max_side`` on its long side (a translucent
    layer needs no more detail); its width over the photo's is the scale to show it at.
    """
    width, height = image_size
    factor = min(1.0, max_side / max(width, height)) if max_side else 1.0
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if not len(meshes):
        return np.zeros((size[1], size[0], 4), np.uint8)
    per_mesh = [colours] * len(meshes) if isinstance(colours, np.ndarray) else list(colours)
    verts = np.concatenate([np.asarray(m, np.float64).reshape(-1, 3) for m in meshes])
    offsets = np.cumsum([0] + [len(m) for m in meshes[:-1]])
    tris = np.concatenate([np.asarray(faces, np.int64) + o for o in offsets])
    rgb = np.concatenate([np.broadcast_to(np.asarray(c, np.uint8), (len(m), 3)) for c, m in zip(per_mesh, meshes,
                                                                                              strict=True)])
    # Culling needs one winding for all meshes; the first one's is every body's (same topology).
    pixels = project(verts, focal * factor, size)
    return rasterize(pixels, verts[:, 2], tris, size, rgb, face_shading(verts, tris),
                     cull=orientation(np.asarray(meshes[0], np.float64).reshape(-1, 3), np.asarray(faces)))


def blend(photo_bgr: np.ndarray, layer_rgba: np.ndarray, alpha: float = 0.8) -> np.ndarray:
    """The photo (resized to the layer) with the RGBA layer composited at ``alpha`` opacity, BGR uint8."""
    photo = np.asarray(photo_bgr)
    if photo.ndim == 2:
        photo = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR)
    h, w = layer_rgba.shape[:2]
    if photo.shape[:2] != (h, w):
        photo = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    cover = layer_rgba[..., 3:4].astype(np.float32) / 255.0 * float(np.clip(alpha, 0.0, 1.0))
    out = photo[..., :3].astype(np.float32) * (1.0 - cover) + layer_rgba[..., 2::-1].astype(np.float32) * cover
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def thumbnail_rgba(display_vertices: np.ndarray, faces: np.ndarray, size: tuple[int, int],
                   colours: np.ndarray, margin: float = 0.08) -> np.ndarray:
    """Orthographic front view of a display-frame mesh (y up, viewer on +z), fitted into ``size``."""
    width, height = size
    xy = display_vertices[:, :2].astype(np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9)
    scale = min(width / extent[0], height / extent[1]) * (1 - 2 * margin)
    centre = (lo + hi) / 2
    pixels = np.stack([(xy[:, 0] - centre[0]) * scale + width / 2,
                       height / 2 - (xy[:, 1] - centre[1]) * scale], axis=1)
    cam_frame = display_vertices * np.array([1.0, -1.0, -1.0])  # back to x right, y down, z away
    shading = face_shading(cam_frame, faces)
    return rasterize(pixels, cam_frame[:, 2], faces, size, colours, shading, antialias=False,
                     cull=orientation(cam_frame, faces))
