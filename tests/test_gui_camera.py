"""The photo's camera in the app, driven for real under Xvfb: the result line (focal in px and 35 mm equivalent,
where it came from, distance), the overlay drawn with that focal, and the whole-scene GLB export.

pytest-xvfb provides the display; never run these with ``QT_QPA_PLATFORM=offscreen`` (the GL viewport cannot
exist there).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtGui import QImage

from megaviewer.intrinsics import TAG_EXIF_IFD, TAG_FOCAL_35MM
from tests._engines import trained_engine, trained_model_available
from tests._gui_helpers import WAIT_MS, gui_marks, open_window, stub_factory, tiny_engine

pytestmark = gui_marks()


@pytest.fixture(scope="module")
def engine():
    return tiny_engine(seed=0)


@pytest.fixture
def make_window(qtbot, tmp_path):
    def make(engine, people: int | None = 1):
        """``people``: that many stub people, or ``None`` for the real MediaPipe detector."""
        factory = stub_factory(people) if people is not None else None
        return open_window(qtbot, engine, tmp_path / "settings.ini", factory)

    return make


def _photo(path: Path, focal_35mm: int | None, rgb: np.ndarray | None = None) -> Path:
    """A JPEG (a 640 x 480 gradient by default) whose EXIF gives a 35 mm-equivalent focal, if any."""
    if rgb is None:
        yy, xx = np.mgrid[0:480, 0:640]
        rgb = np.stack([xx % 256, yy % 256, np.full_like(xx, 128)], -1).astype(np.uint8)
    exif = Image.Exif()
    if focal_35mm is not None:
        exif.get_ifd(TAG_EXIF_IFD)[TAG_FOCAL_35MM] = focal_35mm
    Image.fromarray(rgb).save(path, "JPEG", quality=95, exif=exif)
    return path


def _pixels(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    data = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    return data.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3].reshape(
        image.height(), image.width(), 3).astype(int)


def _recovered(qtbot, window, path: Path):
    """The result for the photo at ``path`` (a new photo clears the old result; a late one for the old photo
    can still land before the new photo has been read, so the photo is checked too)."""
    qtbot.waitUntil(lambda: window.state.image_path == path and window.state.result is not None, timeout=WAIT_MS)
    qtbot.wait(200)  # let the labels and the overlay repaint
    return window.state.result


def test_result_line_shows_focal_equivalent_and_distance(make_window, engine, tmp_path, qtbot):
    window = make_window(engine)
    window.open_path(_photo(tmp_path / "phone.jpg", focal_35mm=50))
    result = _recovered(qtbot, window, tmp_path / "phone.jpg")
    assert window.state.camera.source == "exif-35mm" and result.focal_source == "exif-35mm"
    assert result.focal == pytest.approx(50 / 43.2666 * 800, rel=1e-4)  # 640 x 480: 800 px diagonal
    text = window.controls.summary.text()
    line = next(part for part in text.split("<br>") if part.startswith("camera:"))
    assert f"focal {result.focal:.0f} px" in line and "(50 mm equiv., from the photo's EXIF" in line
    distance = float(re.search(r"body ([0-9.]+) m from the camera", line).group(1))
    assert distance == pytest.approx(result.distance_m, abs=0.006)
    exif_label = _pixels(window.controls.summary)
    assert exif_label.std() > 10  # the text is drawn, not just set

    # A photo without EXIF: the typical lens, and the line says it is assumed.
    window.open_path(_photo(tmp_path / "plain.jpg", focal_35mm=None))
    result = _recovered(qtbot, window, tmp_path / "plain.jpg")
    line = next(part for part in window.controls.summary.text().split("<br>") if part.startswith("camera:"))
    assert result.focal_source == "default-fov" and "(42 mm equiv., assumed: 55° diagonal field of view" in line
    plain_label = _pixels(window.controls.summary)  # the drawn line changed (the label may change height too)
    h, w = min(plain_label.shape[0], exif_label.shape[0]), min(plain_label.shape[1], exif_label.shape[1])
    assert plain_label.shape != exif_label.shape or np.abs(plain_label[:h, :w] - exif_label[:h, :w]).max() > 30


def test_scene_export_holds_every_person(make_window, engine, tmp_path, qtbot):
    import trimesh

    window = make_window(engine, people=2)
    window.open_path(_photo(tmp_path / "pair.jpg", focal_35mm=35))
    result = _recovered(qtbot, window, tmp_path / "pair.jpg")
    assert len(window.state.people) == 2 and window.actions_by_name["export_scene"].isEnabled()
    path = tmp_path / "out" / "pair_scene.glb"
    window.export_scene(path)
    qtbot.waitUntil(path.exists, timeout=WAIT_MS)
    scene = trimesh.load(path)
    assert sorted(scene.graph.nodes_geometry) == ["person0", "person1"]
    display = window.session.scene.upsample(result.mean_camera.numpy())
    shown = f"person{window.state.person}"
    assert len(scene.geometry[shown].vertices) == len(display)
    np.testing.assert_allclose(scene.geometry[shown].vertices, display, rtol=1e-5, atol=1e-4)  # the mesh on screen
    other = scene.geometry[f"person{1 - window.state.person}"]
    assert len(other.vertices) == len(display) and not np.allclose(other.vertices.mean(0), display.mean(0))


@pytest.mark.skipif(not trained_model_available(), reason="needs the shipped model (resources/default)")
def test_overlay_with_the_exif_focal_lands_on_the_person(make_window, tmp_path, qtbot):
    """The shipped model on the astronaut photo with an 85 mm EXIF focal: the mesh drawn over the photo (the
    pixels the overlay changes) lies on the detected person's box."""
    skimage_data = pytest.importorskip("skimage.data")
    window = make_window(trained_engine(), people=None)  # the shipped MediaPipe detector
    window.open_path(_photo(tmp_path / "astronaut.jpg", focal_35mm=85, rgb=skimage_data.astronaut()))
    result = _recovered(qtbot, window, tmp_path / "astronaut.jpg")
    assert result.focal_source == "exif-35mm" and 2.0 < result.distance_m < 6.0
    person = window.state.current_person
    shown = _pixels(window.image_view)
    window.actions_by_name["overlay"].trigger()
    qtbot.wait(200)
    plain = _pixels(window.image_view)
    changed = np.abs(shown - plain).max(axis=-1) > 20
    ys, xs = np.nonzero(changed)
    assert len(xs) > 1000, "no overlay drawn"
    view = window.image_view  # the 512 x 512 photo fitted into the panel, centred
    scale = min(view.width(), view.height()) / 512
    px = (xs - (view.width() - 512 * scale) / 2) / scale
    py = (ys - (view.height() - 512 * scale) / 2) / scale
    x0, y0, x1, y1 = person.box
    grow = 0.1 * max(x1 - x0, y1 - y0)  # the body's surface reaches past its joints (shoulders, hips, arms)
    inside = (px >= x0 - grow) & (px <= x1 + grow) & (py >= y0 - grow) & (py <= y1 + grow)
    # A misplaced mesh (a wrong focal moves and scales it) puts most of it off the box; the pose may put some of an
    # arm the photo hides (the astronaut's left, behind the helmet) beside it.
    assert inside.mean() > 0.85, f"only {inside.mean():.0%} of the overlay lies on the person's box {person.box}"
