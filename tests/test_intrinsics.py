"""The photo's camera: EXIF focal lengths written into real JPEGs, the typical lens without EXIF, bad EXIF."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from megaviewer.camera import default_focal, original_demo_focal
from megaviewer.intrinsics import (
    DEFAULT_DIAGONAL_FOV_DEG,
    FULL_FRAME_DIAGONAL_MM,
    TAG_EXIF_IFD,
    TAG_FOCAL_35MM,
    TAG_FOCAL_LENGTH,
    TAG_FOCAL_PLANE_UNIT,
    TAG_FOCAL_PLANE_X_RES,
    TAG_PIXEL_X,
    TAG_PIXEL_Y,
    PhotoCamera,
    camera_from_exif,
    focal_for_fov,
    typical_camera,
)
from megaviewer.vision.images import read_image


def write_photo(path, size=(400, 300), exif_tags: dict[int, object] | None = None, raw_exif: bytes | None = None):
    """A JPEG of ``size`` with the given Exif-IFD tags (or raw EXIF bytes), as a camera would write it."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    kwargs = {}
    if exif_tags is not None:
        exif = Image.Exif()
        exif.get_ifd(TAG_EXIF_IFD).update(exif_tags)
        kwargs["exif"] = exif
    if raw_exif is not None:
        kwargs["exif"] = raw_exif
    img.save(path, "JPEG", **kwargs)
    return path


def test_typical_camera_is_a_55_degree_diagonal_field_of_view():
    cam = typical_camera((640, 480))
    assert DEFAULT_DIAGONAL_FOV_DEG == 55.0
    assert cam.source == "default-fov" and not cam.measured
    assert cam.focal_px == pytest.approx(800 / (2 * math.tan(math.radians(27.5))))
    assert cam.diagonal_fov_deg == pytest.approx(55.0)
    assert cam.focal_35mm == pytest.approx(FULL_FRAME_DIAGONAL_MM / 2 / math.tan(math.radians(27.5)))  # ~41.6 mm
    assert float(default_focal((640, 480))[0]) == pytest.approx(cam.focal_px, rel=1e-6)  # the engine's default
    # The original demo's camera is a telephoto: over five times longer than a phone's main camera (26 mm).
    assert float(original_demo_focal((640, 480))[0]) * FULL_FRAME_DIAGONAL_MM / 800 > 5 * 26
    with pytest.raises(ValueError, match="between 0 and 180"):
        focal_for_fov((640, 480), 180.0)


def test_photo_without_exif_gets_the_typical_camera(tmp_path):
    loaded = read_image(write_photo(tmp_path / "plain.jpg"))
    assert loaded.camera == typical_camera((400, 300))
    png = tmp_path / "plain.png"
    Image.new("RGB", (64, 48)).save(png)
    assert read_image(png).camera.source == "default-fov"


def test_exif_35mm_equivalent_focal(tmp_path):
    """A 28 mm-equivalent lens (a phone's main camera): same diagonal field of view as 28 mm on 36 x 24 mm."""
    path = write_photo(tmp_path / "phone.jpg", exif_tags={TAG_FOCAL_35MM: 28, TAG_FOCAL_LENGTH: 4.25})
    cam = read_image(path).camera
    assert cam.source == "exif-35mm" and cam.measured
    assert cam.focal_px == pytest.approx(28 / FULL_FRAME_DIAGONAL_MM * 500)  # diagonal of 400 x 300 = 500 px
    assert cam.focal_35mm == pytest.approx(28.0)
    small = read_image(path, max_side=200).camera  # downscaled on loading: the focal follows the pixels
    assert small.image_size == (200, 150) and small.focal_px == pytest.approx(cam.focal_px / 2)


def test_exif_focal_length_with_sensor_resolution(tmp_path):
    """No 35 mm equivalent: FocalLength (mm) x pixels per mm of the focal plane, scaled to the saved size."""
    tags = {TAG_FOCAL_LENGTH: 50.0, TAG_FOCAL_PLANE_X_RES: 250.0, TAG_FOCAL_PLANE_UNIT: 4,  # 250 px/mm
            TAG_PIXEL_X: 6000, TAG_PIXEL_Y: 4000}  # a 24 x 16 mm (APS-C) sensor of 6000 x 4000 px
    cam = read_image(write_photo(tmp_path / "dslr.jpg", size=(600, 400), exif_tags=tags)).camera
    assert cam.source == "exif-sensor"
    assert cam.focal_px == pytest.approx(50 * 250 * 600 / 6000)  # 1250 px
    assert cam.focal_35mm == pytest.approx(50 * FULL_FRAME_DIAGONAL_MM / math.hypot(24, 16), rel=1e-6)  # crop 1.5
    # Without pixel dimensions the file's own size is the reference; the default unit is the inch.
    inch = camera_from_exif({TAG_FOCAL_LENGTH: 50.0, TAG_FOCAL_PLANE_X_RES: 250 * 25.4}, (600, 400), (6000, 4000))
    assert inch is not None and inch.focal_px == pytest.approx(1250.0)


@pytest.mark.parametrize("tags", [
    {TAG_FOCAL_35MM: 0},  # "unknown", as cameras write it
    {TAG_FOCAL_35MM: 65535},  # no lens
    {TAG_FOCAL_35MM: "28mm"},
    {TAG_FOCAL_LENGTH: (50, 0), TAG_FOCAL_PLANE_X_RES: 250.0, TAG_FOCAL_PLANE_UNIT: 4},  # zero denominator
    {TAG_FOCAL_LENGTH: 50.0, TAG_FOCAL_PLANE_X_RES: 250.0, TAG_FOCAL_PLANE_UNIT: 1},  # "no unit"
    {TAG_FOCAL_LENGTH: 50.0, TAG_FOCAL_PLANE_X_RES: 1e-9, TAG_FOCAL_PLANE_UNIT: 4},  # a 0.001 mm lens
    {TAG_FOCAL_LENGTH: 50.0},  # no sensor size
])
def test_unusable_exif_values_are_skipped(tags):
    assert camera_from_exif(tags, (600, 400)) is None


def test_corrupt_exif_falls_back_to_the_typical_camera(tmp_path):
    """A broken EXIF block loads the photo with the typical camera, without an error."""
    garbage = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\xff" + bytes(range(256)) * 2
    loaded = read_image(write_photo(tmp_path / "broken.jpg", raw_exif=garbage))
    assert loaded.image.shape == (300, 400, 3)
    assert loaded.camera == typical_camera((400, 300))
    weird = read_image(write_photo(tmp_path / "weird.jpg", exif_tags={TAG_FOCAL_35MM: 0, TAG_FOCAL_LENGTH: -3.0}))
    assert weird.camera.source == "default-fov"


def test_camera_resizes_with_the_image():
    cam = PhotoCamera(1000.0, (4000, 3000), "exif-35mm")
    half = cam.resized((2000, 1500))
    assert half.focal_px == pytest.approx(500.0) and half.focal_35mm == pytest.approx(cam.focal_35mm)
    assert "EXIF" in cam.describe() and "55°" in typical_camera((10, 10)).describe()


def test_engine_places_the_body_with_the_box_focal():
    """The crop box's focal sets the depth (tz = 2F/(b s)); without one the engine uses the typical lens."""
    from megaviewer.engine import CropBox
    from tests._engines import random_keypoints, tiny_engine

    engine = tiny_engine()
    kp = random_keypoints(1)[0]
    box = CropBox(center=(320.0, 240.0), side=300.0, image_size=(640, 480))
    default = engine.recover(kp, mode="deterministic", crop=box)
    assert default.focal == pytest.approx(typical_camera((640, 480)).focal_px, rel=1e-6)
    assert default.focal_source == "default-fov" and default.image_size == (640, 480)
    box.focal, box.focal_source = 2 * default.focal, "exif-35mm"
    longer = engine.recover(kp, mode="deterministic", crop=box)
    assert longer.focal_source == "exif-35mm"
    assert torch.allclose(longer.translation[:, 2], 2 * default.translation[:, 2], rtol=1e-5)
    assert torch.allclose(longer.translation[:, :2], default.translation[:, :2], atol=1e-5)  # only depth moves
    box.focal = float("nan")
    with pytest.raises(ValueError, match="focal must be a positive number"):
        engine.recover(kp, mode="deterministic", crop=box)
