"""How far away the shipped model puts the people of the README photos, with the camera the photo gives.

scikit-image's ``astronaut`` and ``camera`` are PNGs without EXIF: they get the typical 55° lens. The same
pixels saved with an EXIF block that says 85 mm (35 mm equivalent: a portrait lens, as such portraits are
shot with) go through the EXIF route of ``read_image``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from megaviewer.intrinsics import TAG_EXIF_IFD, TAG_FOCAL_35MM, typical_camera
from tests._engines import trained_engine, trained_model_available

skimage_data = pytest.importorskip("skimage.data")
pytestmark = pytest.mark.skipif(not trained_model_available(), reason="needs the shipped model (resources/default)")

PHOTOS = {"astronaut": lambda: skimage_data.astronaut()[..., ::-1],
          "camera": lambda: cv2.cvtColor(skimage_data.camera(), cv2.COLOR_GRAY2BGR)}


@pytest.fixture(scope="module")
def detector():
    from megaviewer.vision.detector import PoseDetector

    with PoseDetector(max_people=1) as det:
        yield det


def _write(path, bgr: np.ndarray, focal_35mm: int | None = None):
    exif = Image.Exif()
    if focal_35mm is not None:
        exif.get_ifd(TAG_EXIF_IFD)[TAG_FOCAL_35MM] = focal_35mm
    Image.fromarray(np.ascontiguousarray(bgr[..., ::-1])).save(path, exif=exif.tobytes())  # PNG: same pixels
    return path


def _recover(path, detector):
    from megaviewer.app.pipeline import recover_people
    from megaviewer.vision.images import read_image

    loaded = read_image(path)
    people = recover_people(trained_engine(), detector, loaded.image, mode="deterministic", camera=loaded.camera)
    assert len(people) == 1, people.message
    return loaded, people[0].result


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_people_stand_at_plausible_distances(photo, detector, tmp_path):
    # The typical lens: a tight portrait comes out close (1.1 m for the astronaut, 1.6 m for the cameraman),
    # within reach of a phone camera; never the 4-16 m of a telephoto assumed for every photo.
    loaded, res = _recover(_write(tmp_path / f"{photo}.png", PHOTOS[photo]()), detector)
    assert loaded.camera == typical_camera((512, 512))
    assert res.focal == pytest.approx(loaded.camera.focal_px) and res.focal_source == "default-fov"
    assert 1.0 < res.distance_m < 6.0, f"{photo} at {res.distance_m:.2f} m"
    # The photo's EXIF says 85 mm: the distance follows the focal and lands at 2-6 m.
    loaded85, res85 = _recover(_write(tmp_path / f"{photo}_85mm.png", PHOTOS[photo](), focal_35mm=85), detector)
    assert loaded85.camera.source == "exif-35mm" and res85.focal_35mm == pytest.approx(85.0, rel=1e-4)
    assert 2.0 < res85.distance_m < 6.0, f"{photo} at {res85.distance_m:.2f} m with an 85 mm lens"
    depth, depth85 = float(res.translation[0, 2]), float(res85.translation[0, 2])  # depth scales with the focal
    assert depth85 == pytest.approx(depth * res85.focal / res.focal, rel=1e-4)
