"""Photos of synthetic people, for running the real 2D/3D pose detector on bodies whose 3D pose is known.

Why: the detector's errors (MediaPipe BlazePose: 2D keypoints and 3D world landmarks) are what a model
meets on real photos. Simulated noise is only as good as its parameters, so those parameters are measured
on these renders (:mod:`training.data.landmark_noise`), and the detector-in-the-loop benchmark
(``benchmarks/detector_loop.py``) evaluates the whole photo -> body pipeline on them.

Each person is an Anny body in clothes (skin on the head, neck and hands; a shirt with short or long
sleeves; trousers, shorts or a skirt-length colour; shoes), drawn with the project's software rasteriser
(:mod:`megaviewer.render.raster`) through the same perspective camera that placed them, on a background
picked from scikit-image's bundled photos without people (brick, grass, gravel, coffee, rocket, ...) or a
lit gradient, with a random light direction and exposure. No download, no GL context.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from megaviewer.render.offscreen import display_mesh, display_scalars
from megaviewer.render.raster import face_shading, orientation, project, rasterize

BACKGROUNDS = ("brick", "grass", "gravel", "coffee", "rocket", "chelsea", "moon", "hubble_deep_field",
               "coins", "page", "text")
"""scikit-image sample photos without a person in them (astronaut and camera have one)."""

SKIN_TONES = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36),
              (92, 58, 35))


@dataclass(frozen=True)
class BodyRegions:
    """Per-working-vertex masks of the clothing regions of an Anny body (from its skinning bones)."""

    head: np.ndarray
    hands: np.ndarray
    forearms: np.ndarray
    upper_arms: np.ndarray
    thighs: np.ndarray
    shins: np.ndarray
    feet: np.ndarray

    @classmethod
    def of(cls, body) -> BodyRegions:
        def mask(*roots: str) -> np.ndarray:
            return body.region_mask(tuple(f"{r}.{s}" for r in roots for s in "LR")).numpy()

        return cls(head=body.region_mask(("neck01",)).numpy(), hands=mask("wrist"),
                   forearms=mask("lowerarm01") & ~mask("wrist"),
                   upper_arms=mask("upperarm01") & ~mask("lowerarm01"),
                   thighs=mask("upperleg01") & ~mask("lowerleg01"),
                   shins=mask("lowerleg01") & ~mask("foot"), feet=mask("foot"))


def clothing_colours(regions: BodyRegions, rng: np.random.Generator) -> np.ndarray:
    """(V, 3) uint8 RGB: one random outfit on the working vertices."""
    skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))], np.float64) * rng.uniform(0.9, 1.05)
    shirt, trousers, shoes = (rng.uniform(20, 235, 3) for _ in range(3))
    shoes *= 0.5
    colours = np.broadcast_to(shirt, (regions.head.shape[0], 3)).copy()  # torso and what is left
    colours[regions.thighs | regions.shins] = trousers
    if rng.random() < 0.3:  # shorts
        colours[regions.shins] = skin
    colours[regions.upper_arms] = shirt if rng.random() < 0.7 else skin
    colours[regions.forearms] = shirt if rng.random() < 0.5 else skin
    colours[regions.head | regions.hands] = skin
    colours[regions.feet] = shoes
    return np.clip(colours, 0, 255).astype(np.uint8)


def background(name_or_seed: str | int, image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A BGR background of ``image_size`` = (W, H): a random crop of a bundled photo, or a lit gradient."""
    width, height = image_size
    if isinstance(name_or_seed, str):
        import skimage.data

        photo = np.asarray(getattr(skimage.data, name_or_seed)())
        if photo.ndim == 2:
            photo = np.repeat(photo[..., None], 3, axis=2)
        photo = cv2.cvtColor(np.ascontiguousarray(photo[..., :3]), cv2.COLOR_RGB2BGR)
        zoom = max(width / photo.shape[1], height / photo.shape[0]) * rng.uniform(1.0, 1.6)
        photo = cv2.resize(photo, (int(np.ceil(photo.shape[1] * zoom)), int(np.ceil(photo.shape[0] * zoom))))
        x0 = rng.integers(0, photo.shape[1] - width + 1)
        y0 = rng.integers(0, photo.shape[0] - height + 1)
        return np.ascontiguousarray(photo[y0:y0 + height, x0:x0 + width])
    top, bottom = rng.uniform(40, 230, 3), rng.uniform(20, 200, 3)
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (top * (1 - t) + bottom * t) * np.ones((1, width, 1))
    image += rng.normal(0.0, 6.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def render_person(camera_vertices: np.ndarray, colours: np.ndarray, focal: float, image_size: tuple[int, int],
                  backdrop: np.ndarray, rng: np.random.Generator, assets=None) -> np.ndarray:
    """The person (working-topology camera-frame vertices (V, 3), OpenCV axes, metres) over ``backdrop``.

    Drawn as the smooth display mesh with per-vertex clothing colours, a random light and exposure.
    """
    verts, faces = display_mesh(camera_vertices, assets)
    rgb = np.stack([display_scalars(colours[:, c].astype(np.float32), assets) for c in range(3)], axis=1)
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.8, 0.1), -1.0])
    light /= np.linalg.norm(light)
    shading = face_shading(verts, faces, light) * rng.uniform(0.8, 1.15)
    layer = rasterize(project(verts, focal, image_size), verts[:, 2], faces, image_size,
                      np.clip(rgb, 0, 255).astype(np.uint8), shading, cull=orientation(verts, faces))
    cover = layer[..., 3:4].astype(np.float32) / 255.0
    out = backdrop.astype(np.float32) * (1 - cover) + layer[..., 2::-1].astype(np.float32) * cover
    out += rng.normal(0.0, 2.0, out.shape)  # sensor noise, so edges are not perfectly clean
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass
class RenderedPeople:
    """Photos of known bodies: one person per photo, the ground truth of the camera that took it."""

    images: list[np.ndarray]  # BGR uint8
    vertices: torch.Tensor  # (B, V, 3) oriented, centroid-centred (camera axes), as the benchmark's
    joints_cam: torch.Tensor  # (B, 17, 3) COCO-17 joints in the camera frame, metres
    rot_cam: torch.Tensor  # (B, 3, 3)
    focal: torch.Tensor  # (B,) px
    translation: torch.Tensor  # (B, 3)


def render_people(meshes, count: int, seed: int, obs_config=None, progress: bool = False) -> RenderedPeople:
    """``count`` people from ``meshes`` (a :class:`~training.data.meshes.SyntheticMeshes`) placed by the
    benchmark's camera model and rendered; a pure function of ``seed``."""
    from megaviewer.geometry import metrics
    from training.data.observations import ObservationConfig, synthesize
    from training.data.pool import MeshPool

    held = meshes.heldout(count, seed=seed)
    canonical = metrics.center(held.vertices)
    joints = meshes.body.joints(canonical)
    tokens = torch.zeros(count, 1, dtype=torch.long)  # the camera model does not look at tokens
    obs = synthesize(MeshPool(tokens, joints, held.params.global_orient.float()), obs_config or ObservationConfig(),
                     torch.Generator().manual_seed(seed + 1))
    oriented = canonical @ obs.rot_cam.transpose(-1, -2)
    camera = oriented + obs.translation[:, None]
    regions = BodyRegions.of(meshes.body)
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        size = (int(obs.image_size[i, 0]), int(obs.image_size[i, 1]))
        choice = rng.integers(len(BACKGROUNDS) + 3)
        backdrop = background(BACKGROUNDS[choice] if choice < len(BACKGROUNDS) else int(choice), size, rng)
        images.append(render_person(camera[i].numpy(), clothing_colours(regions, rng), float(obs.focal[i]), size,
                                    backdrop, rng))
        if progress and (i + 1) % 16 == 0:
            print(f"rendered {i + 1}/{count}", flush=True)
    return RenderedPeople(images, oriented, joints @ obs.rot_cam.transpose(-1, -2) + obs.translation[:, None],
                          obs.rot_cam, obs.focal, obs.translation)


def pixels_of(people: RenderedPeople) -> np.ndarray:
    """The true pixel positions (B, 17, 2) of the rendered people's joints."""
    from megaviewer.camera import perspective_project

    size = torch.tensor([[image.shape[1], image.shape[0]] for image in people.images], dtype=torch.float64)
    return perspective_project(people.joints_cam.double(), people.focal.double(), size / 2.0).numpy()
