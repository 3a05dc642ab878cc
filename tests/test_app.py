"""The Qt-free application layer: file names, the one Person type, shared settings (no display, no MediaPipe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from megaviewer.app.exports import output_name, unique_stems
from megaviewer.app.pipeline import Person, nearest_person, recover_people
from megaviewer.settings import DEFAULTS, MODES, RecoverySettings
from megaviewer.vision.detector import PersonDetection
from tests._engines import tiny_engine
from tests._gui_helpers import StubDetector, person_keypoints


def test_output_names_keep_the_full_stem():
    assert output_name("take.001", "npz", person=0) == "take.001_person0.npz"
    assert output_name("S1_Directions_1.54138969_000001", ".obj", person=0) == \
        "S1_Directions_1.54138969_000001_person0.obj"
    assert output_name("a", "ply", person=1, hypothesis=2) == "a_person1_sample2.ply"
    assert output_name("a", "obj", person=0, hypothesis="mean", step=3) == "a_person0_mean_step3.obj"
    assert output_name("a.b", "png", view="overlay") == "a.b_overlay.png"
    assert output_name("clip", "mp4", view="overlay") == "clip_overlay.mp4"


def test_unique_stems_only_rename_repeats_and_never_take_an_input_stem():
    paths = [Path("x/a.jpg"), Path("x/a.png"), Path("y/a.jpg"), Path("a_2.jpg"), Path("take.001.jpg"),
             Path("take.002.jpg")]
    assert unique_stems(paths) == ["a", "a_3", "a_4", "a_2", "take.001", "take.002"]
    assert unique_stems([]) == []


def test_person_draws_what_the_model_sees_and_follows_the_nearest():
    kp = person_keypoints(100.0, 20.0, 200.0)
    kp[3, 2] = 0.1  # below the detection threshold: missing for the model
    first = Person(PersonDetection.from_keypoints(kp, (400, 300)))
    assert first.keypoints[3, 2] == 0 and first.keypoints[0, 2] > 0.5
    x0, y0, x1, y1 = first.box
    assert x0 < kp[:, 0].min() and x1 > kp[:, 0].max() and y1 > kp[:, 1].max()
    crop_kp, box = first.crop()
    assert crop_kp.shape == (17, 3) and box.image_size == (400, 300)
    second = Person(PersonDetection.from_keypoints(person_keypoints(300.0, 20.0, 250.0), (400, 300)))
    assert nearest_person([first, second], None) == 1  # the larger
    assert nearest_person([first, second], first) == 0 and nearest_person([], first) == -1


def test_settings_are_one_source():
    assert DEFAULTS.mode in MODES and DEFAULTS.samples == 1
    stochastic = DEFAULTS.with_(mode="stochastic")
    kwargs = stochastic.recover_kwargs()
    assert kwargs["num_samples"] == DEFAULTS.num_samples and kwargs["seed"] == DEFAULTS.seed
    assert kwargs["expected_codes"] is True and DEFAULTS.with_(expected_codes=False).recover_kwargs()[
        "expected_codes"] is False
    fresh = {stochastic.with_(random_seed=True).recover_kwargs()["seed"] for _ in range(5)}
    assert len(fresh) > 1
    assert RecoverySettings.from_dict({"mode": "bogus"}).mode == DEFAULTS.mode
    with pytest.raises(TypeError):
        DEFAULTS.with_(samples=3)


def test_recover_people_fills_each_person_and_reports_timings():
    image = np.zeros((240, 320, 3), np.uint8)
    people = recover_people(tiny_engine(), StubDetector(2), image, mode="stochastic", num_samples=2, steps=2)
    assert people.found and people.message == "recovered 2 people"
    assert all(p.result is not None and p.result.num_samples == 2 for p in people)
    assert {"detect_ms", "recover_ms"} <= set(people.timings_ms)
    assert people[0].result.trace is None  # headless callers skip the trace
    nobody = recover_people(tiny_engine(), None, image, detections=[])
    assert not nobody and "no keypoints given" in nobody.message


def test_summary_counts_existing_files_once(tmp_path):
    from megaviewer.app.batch import Summary

    kept, removed = tmp_path / "a.npz", tmp_path / "b.npz"
    kept.write_bytes(b"x")
    summary = Summary(written=[kept, kept, removed])  # written twice, and one file gone since
    assert summary.files == 1 and "; 1 files written to" in summary.report(tmp_path)
