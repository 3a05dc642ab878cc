"""What a recovery writes and what the files are called, for ``megaviewer infer`` and the app.

One naming rule for every file: the input's full stem (``take.001`` for ``take.001.jpg``: names are built by
joining parts, never by swapping a suffix, which cut dotted names short), then the person, the hypothesis
or view, then the extension. Two inputs with the same stem get distinct stems from :func:`unique_stems`.
Every file is written atomically (:mod:`megaviewer.io.export`), and :class:`PictureWriter` remembers what
it wrote so a summary can count the files that exist rather than the writes attempted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from megaviewer.app.pipeline import Person
    from megaviewer.body.assets import BodyAssets

FORMATS = ("obj", "ply", "glb", "npz", "png", "mp4", "scene")
"""What ``megaviewer infer`` can write: meshes, the result archive, pictures, an overlay video, and ``scene``:
every person of a picture in one camera-frame GLB (``{stem}_scene.glb``, :mod:`megaviewer.io.scene_glb`)."""
MESH_FORMATS = ("obj", "ply", "glb")
OVERLAY_MAX_SIDE = 1920
"""Written overlays have the photo's size capped to this long side."""


def output_name(stem: str, ext: str, *, person: int | None = None, hypothesis: int | str | None = None,
                step: int | None = None, view: str | None = None) -> str:
    """``{stem}[_person{i}][_sample{q} | _{hypothesis}][_step{t}][_{view}].{ext}``.

    ``person`` and an integer ``hypothesis`` are 0-based, as the rows of the NPZ export; ``hypothesis`` may
    also name a mesh (``"mean"``, ``"deterministic"``); ``step`` is 1-based as the app shows it; ``view`` is
    a picture's kind (``"overlay"``, ``"side"``, ``"sd"``).
    """
    parts = [stem]
    if person is not None:
        parts.append(f"person{person}")
    if hypothesis is not None:
        parts.append(f"sample{hypothesis}" if isinstance(hypothesis, int) else hypothesis)
    if step is not None:
        parts.append(f"step{step}")
    if view:
        parts.append(view)
    return "_".join(parts) + "." + ext.lstrip(".")


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """The full stem of each path; a repeated stem (``a.jpg`` and ``a.png``, or ``x/a.jpg`` and ``y/a.jpg``)
    gets ``_2``, ``_3``, ... from its second use on, never equal to any input's own stem."""
    stems = [Path(p).stem for p in paths]
    own = set(stems)
    used: set[str] = set()
    out = []
    for stem in stems:
        name, n = stem, 1
        while name in used or (n > 1 and name in own):
            n += 1
            name = f"{stem}_{n}"
        used.add(name)
        out.append(name)
    return out


@dataclass(frozen=True)
class ExportOptions:
    """Which files a recovered picture gives and how its meshes are written."""

    formats: tuple[str, ...] = ("obj", "npz", "png")
    frame: str = "camera"  # per-person meshes in the photo's camera frame (y down) or "canonical" (upright, y up)
    topology: str = "display"  # the smooth display mesh or the model's "working" mesh
    all_samples: bool = False  # every hypothesis too, not only the mean


def overlay_picture(image: np.ndarray, people: Sequence[Person], assets: BodyAssets,
                    max_side: int = OVERLAY_MAX_SIDE) -> np.ndarray:
    """The photo (BGR) with every person's mean mesh drawn over it, depth-sorted, at most ``max_side`` long."""
    from megaviewer.render.offscreen import LIGHT_BLUE, display_mesh
    from megaviewer.render.raster import blend, overlay_layer

    h, w = image.shape[:2]
    placed = [p.result for p in people if p.result is not None and p.result.focal is not None]
    meshes = [display_mesh(r.mean_camera, assets)[0] for r in placed]
    colour = np.round(np.asarray(LIGHT_BLUE) * 255).astype(np.uint8)
    focal = placed[0].focal if placed else 1.0
    layer = overlay_layer(meshes, assets.display_faces.numpy(), focal, (w, h), colour, max_side)
    return blend(image, layer)


def write_scene(path: Path, people: Sequence[Person], assets: BodyAssets, topology: str = "display",
                means: Sequence[np.ndarray] | None = None) -> Path:
    """One GLB of every recovered person's mean camera-frame mesh (:func:`megaviewer.io.scene_glb.export_scene`),
    named ``person{i}`` by their index in ``people``, with the camera of the first placed result."""
    from megaviewer.io.scene_glb import export_scene
    from megaviewer.render.offscreen import display_mesh

    meshes, names = [], []
    for i, person in enumerate(people):
        res = person.result
        if res is None:
            continue
        if topology == "display":
            mesh = (means[i], assets.display_faces.numpy()) if means is not None else display_mesh(res.mean_camera,
                                                                                                   assets)
        else:
            mesh = (res.mean_camera.numpy(), res.faces.numpy())
        meshes.append(mesh)
        names.append(f"person{i}")
    placed = [p.result for p in people if p.result is not None and p.result.focal is not None]
    focal = placed[0].focal if placed else None
    size = placed[0].image_size if placed else None
    return export_scene(path, meshes, focal, size, names)


class PictureWriter:
    """Writes the requested outputs of one recovered picture and lists every path written."""

    def __init__(self, options: ExportOptions, assets: BodyAssets):
        self.options, self.assets = options, assets
        self.written: list[Path] = []

    def write(self, image: np.ndarray, people: Sequence[Person], folder: Path, stem: str) -> np.ndarray:
        """Overlay, side view, per-person heatmaps and meshes; returns the overlay (the photo without one)."""
        from megaviewer.render.offscreen import display_mesh, render_side_view

        formats = self.options.formats
        overlay = image
        if "png" in formats or "mp4" in formats:
            overlay = overlay_picture(image, people, self.assets)
        faces = self.assets.display_faces.numpy()
        means = [display_mesh(p.result.mean_camera, self.assets)[0] for p in people]
        if "png" in formats:
            self.png(folder / output_name(stem, "png", view="overlay"), overlay)
            self.png(folder / output_name(stem, "png", view="side"), render_side_view(means, faces))
        h, w = image.shape[:2]
        for i, person in enumerate(people):
            self._person(person, i, means[i], folder, stem, (w, h))
        if "scene" in formats:
            self.scene(folder / output_name(stem, "glb", view="scene"), people, means)
        return overlay

    def scene(self, path: Path, people: Sequence[Person], means: Sequence[np.ndarray] | None = None) -> None:
        """Every person's mean mesh in the camera frame, in one GLB with the photo's camera (whatever ``frame``
        says: a scene only makes sense in the camera frame). ``means``: their display meshes, when made."""
        self.written.append(write_scene(path, people, self.assets, self.options.topology, means))

    def _person(self, person: Person, index: int, mean_display: np.ndarray, folder: Path, stem: str,
                image_size: tuple[int, int]) -> None:
        from megaviewer.io.export import export_mesh, export_npz
        from megaviewer.render.offscreen import display_mesh, display_scalars, render_sd_heatmap

        opts, res = self.options, person.result
        if "png" in opts.formats and res.num_samples > 1:
            sd = display_scalars(res.vertex_sd_mm, self.assets)
            heatmap = render_sd_heatmap(mean_display, self.assets.display_faces.numpy(), sd)
            self.png(folder / output_name(stem, "png", person=index, view="sd"), heatmap)
        if "npz" in opts.formats:
            path = folder / output_name(stem, "npz", person=index)
            self.written.append(export_npz(path, res, index, detection=person.detection, image_size=image_size))
        camera = opts.frame == "camera"
        meshes: list[tuple[int | None, object]] = [(None, res.mean_camera if camera else res.mean_canonical)]
        if opts.all_samples and res.num_samples > 1:
            verts = res.camera_vertices if camera else res.canonical_vertices
            meshes += [(q, verts[q]) for q in range(res.num_samples)]
        for hypothesis, vertices in meshes:
            if opts.topology == "display":
                v, f = display_mesh(vertices, self.assets)
            else:
                v, f = np.asarray(vertices), res.faces.numpy()
            for fmt in MESH_FORMATS:
                if fmt in opts.formats:
                    path = folder / output_name(stem, fmt, person=index, hypothesis=hypothesis)
                    self.written.append(export_mesh(path, v, f))

    def png(self, path: Path, image: np.ndarray) -> None:
        from megaviewer.io.export import export_png

        self.written.append(export_png(path, image))


class OverlayVideo:
    """An mp4v overlay video written to a temporary file and renamed into place when complete."""

    def __init__(self, path: Path, fps: float):
        from megaviewer.io.atomic import atomic_path

        self.path, self.fps = path, fps
        self._atomic = atomic_path(path)
        self._writer = None

    def __enter__(self) -> OverlayVideo:
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            h, w = frame.shape[:2]
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"cannot open a video writer for {self.path}")
        if frame.shape[1::-1] != self._size:  # overlays of frames over OVERLAY_MAX_SIDE come back smaller
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)

    def __exit__(self, *exc) -> None:
        if self._writer is not None:
            self._writer.release()
        self._atomic.__exit__(*exc)
