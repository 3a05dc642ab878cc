"""Photos of synthetic people (training.data.renders) and the detector-in-the-loop benchmark on a few of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.renders import BACKGROUNDS, BodyRegions, background, clothing_colours, pixels_of, render_people


@pytest.fixture(scope="module")
def people(synthetic_meshes):
    return render_people(synthetic_meshes, 3, seed=11)


def test_renders_show_the_body_where_its_camera_puts_it(people):
    assert len(people.images) == 3 and people.joints_cam.shape == (3, 17, 3)
    for image, pixels in zip(people.images, pixels_of(people), strict=True):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        height, width = image.shape[:2]
        inside = (pixels[:, 0] > 2) & (pixels[:, 0] < width - 3) & (pixels[:, 1] > 2) & (pixels[:, 1] < height - 3)
        assert inside.sum() >= 10  # the benchmark's camera keeps most of the body in view
    # The joints' true positions lie on the drawn body: re-render one person over a flat backdrop and compare.
    first = people.images[0]
    hips = pixels_of(people)[0, 11:13].mean(0).round().astype(int)
    patch = first[max(hips[1] - 2, 0):hips[1] + 3, max(hips[0] - 2, 0):hips[0] + 3].reshape(-1, 3).astype(float)
    assert patch.std(axis=0).max() < 40  # clothing, not the textured backdrop's edges


def test_renders_are_a_function_of_the_seed(synthetic_meshes, people):
    again = render_people(synthetic_meshes, 3, seed=11)
    assert all(np.array_equal(a, b) for a, b in zip(people.images, again.images, strict=True))
    assert torch.equal(people.joints_cam, again.joints_cam)
    other = render_people(synthetic_meshes, 1, seed=12)
    assert not torch.equal(other.joints_cam[0], people.joints_cam[0])


def test_outfits_cover_the_body_and_backgrounds_fill_the_frame(anny_body):
    regions = BodyRegions.of(anny_body)
    assert regions.hands.any() and regions.feet.any() and regions.head.any()
    assert not (regions.hands & regions.forearms).any() and not (regions.feet & regions.shins).any()
    rng = np.random.default_rng(0)
    colours = clothing_colours(regions, rng)
    assert colours.shape == (anny_body.num_vertices, 3) and colours.dtype == np.uint8
    assert len(np.unique(colours[regions.hands], axis=0)) == 1  # skin
    for name in (BACKGROUNDS[0], 7):
        image = background(name, (320, 200), rng)
        assert image.shape == (200, 320, 3) and image.std() > 5


def test_detector_loop_scores_every_row_on_the_same_people(monkeypatch, synthetic_meshes):
    from benchmarks import detector_loop
    from tests._engines import tiny_engine

    monkeypatch.setattr("megaviewer.engine.Engine.from_pretrained", classmethod(lambda cls, folder=None: tiny_engine()))
    split = detector_loop.build_split("main", 4, meshes=synthetic_meshes)
    monkeypatch.setattr(detector_loop, "build_split", lambda name, count, **_: split)
    decoded = []
    real_run_engine = detector_loop.run_engine
    monkeypatch.setattr(detector_loop, "run_engine", lambda *a: decoded.append(a[4]) or real_run_engine(*a))
    report = detector_loop.run({"tiny": None, "tiny+expected_codes": None}, ("main",), {"main": 4}, progress=False)
    main = report["splits"]["main"]
    assert main["scored"] == len(split.usable) >= 1
    rows = main["rows"]
    assert set(rows) == {"mediapipe_landmarks", "tiny", "tiny +fit", "tiny+expected_codes",
                         "tiny+expected_codes +fit"}
    for row in rows.values():
        assert 0 < row["pa_mpjpe"] < 1000 and 0 < row["pa_mpjpe_limbs12"] < 1000
    assert len(rows["tiny"]["per_person_pa_mpjpe"]) == main["scored"]
    assert decoded == [False, False, True, True]  # the argmax codes unless the name asks for expected ones


def test_cached_detections_rebuild_the_same_people(tmp_path):
    """The detector-in-the-loop cache keeps arrays only (no pickles) and rebuilds the detections from them."""
    from megaviewer.vision.detector import PersonDetection
    from training.data.landmark_noise import Detections

    rng = np.random.default_rng(0)
    keypoints = np.concatenate([rng.uniform(10, 200, (2, 17, 2)), rng.uniform(0.3, 1.0, (2, 17, 1))], axis=-1)
    landmarks = np.concatenate([rng.normal(0, 0.3, (2, 33, 3)), rng.uniform(0, 1, (2, 33, 1))], axis=-1)
    sizes = np.array([[320, 240], [640, 480]])
    people = [PersonDetection.from_keypoints(keypoints[0], (320, 240), landmarks_3d=landmarks[0]), None]
    found = Detections(np.array([True, False]), keypoints, landmarks, np.array([True, False]), people, sizes)
    found.save(tmp_path / "d.npz")
    back = Detections.load(tmp_path / "d.npz")
    assert back.detections[1] is None and np.array_equal(back.found, found.found)
    again = back.detections[0]
    assert np.array_equal(again.valid, people[0].valid) and np.allclose(again.box_center, people[0].box_center)
    assert np.allclose(again.landmarks_3d, people[0].landmarks_3d) and again.image_size == (320, 240)
    assert back.landmarks.shape == (2, 17, 4)
