"""The detector's 3D landmarks: parsed, checked and carried from the detector or the keypoints JSON file through
the engine into the NPZ export; bad input is one clear line."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from megaviewer.cli import main
from megaviewer.vision.landmarks import parse_landmarks_3d
from tests._engines import random_keypoints, tiny_engine


def landmarks(seed: int = 0, visibility: bool = True) -> np.ndarray:
    """33 plausible landmarks: within half a metre of the hips, visibility in [0, 1]."""
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-0.5, 0.5, (33, 3))
    return np.concatenate([xyz, rng.uniform(0, 1, (33, 1))], axis=1) if visibility else xyz


def test_parse_accepts_mediapipe_layouts():
    full = landmarks()
    np.testing.assert_allclose(parse_landmarks_3d(full.tolist()), full, rtol=1e-6)
    np.testing.assert_allclose(parse_landmarks_3d(full.ravel()), full, rtol=1e-6)  # flat 132 numbers
    no_vis = parse_landmarks_3d(landmarks(visibility=False).ravel().tolist())  # flat 99: visibility 1
    assert no_vis.shape == (33, 4) and no_vis.dtype == np.float32 and (no_vis[:, 3] == 1).all()
    batch = parse_landmarks_3d(np.stack([full, full]))
    assert batch.shape == (2, 33, 4)
    loud = full.copy()
    loud[:, 3] = 7.0
    assert (parse_landmarks_3d(loud)[:, 3] == 1.0).all()  # visibility is a probability


@pytest.mark.parametrize(("value", "message"), [
    (np.zeros((17, 3)), "must be 33 landmarks .* got shape \\(17, 3\\)"),
    (np.zeros(100), "got shape \\(100,\\)"),
    ([["a", "b", "c"]] * 33, "must be 33 landmarks of \\(x, y, z\\[, visibility\\]\\) numbers"),
    ({"x": 1}, "must be 33 landmarks"),
    (np.full((33, 3), np.nan), "NaN or infinite"),
    (np.full((33, 3), 250.0), "reaches 250 m from the hips; .* not pixels"),
])
def test_parse_refuses_bad_input_in_one_line(value, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_landmarks_3d(value)
    assert "\n" not in str(info.value)


def test_engine_keeps_the_landmarks_in_its_result():
    engine = tiny_engine()
    given = landmarks(1)
    res = engine.recover(random_keypoints(1)[0], mode="deterministic", landmarks_3d=given)
    np.testing.assert_allclose(res.landmarks_3d.numpy(), given, rtol=1e-6)
    assert engine.recover(random_keypoints(1)[0], mode="deterministic").landmarks_3d is None
    with pytest.raises(ValueError, match="landmarks_3d must be 33 landmarks"):
        engine.recover(random_keypoints(1)[0], mode="deterministic", landmarks_3d=np.zeros((33, 2)))


def test_detections_and_npz_carry_them(tmp_path):
    from megaviewer.app.pipeline import Person, recover_person
    from megaviewer.io.export import export_npz
    from megaviewer.vision.detector import PersonDetection
    from tests._gui_helpers import person_keypoints

    given = landmarks(2)
    det = PersonDetection.from_keypoints(person_keypoints(320, 40, 400), (640, 480), landmarks_3d=given)
    result = recover_person(tiny_engine(), Person(det)).result
    np.testing.assert_allclose(result.landmarks_3d.numpy(), given, rtol=1e-6)
    path = export_npz(tmp_path / "p.npz", result, 0, det)
    with np.load(path) as data:
        np.testing.assert_allclose(data["landmarks_3d"], given, rtol=1e-6)
    plain = PersonDetection.from_keypoints(person_keypoints(320, 40, 400), (640, 480))
    with np.load(export_npz(tmp_path / "q.npz", recover_person(tiny_engine(), Person(plain)).result, 0, plain)) as d:
        assert "landmarks_3d" not in d.files


def _keypoints_json(path, people: list[dict]):
    path.write_text(json.dumps([{"file_name": "blank.png", **p} for p in people]))
    return path


def _person_entry(**extra) -> dict:
    from tests._gui_helpers import person_keypoints

    return {"keypoints": person_keypoints(160, 20, 200).ravel().tolist(), **extra}


def test_keypoints_json_landmarks_reach_the_npz(tmp_path, capsys):
    """JSON file -> detection -> engine -> NPZ, with MediaPipe's own field name accepted as well."""
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((240, 320, 3), 200, np.uint8))
    first, second = landmarks(3), landmarks(4, visibility=False)
    kp_file = _keypoints_json(tmp_path / "kp.json", [
        _person_entry(landmarks_3d=first.tolist(), score=0.9),
        _person_entry(pose_world_landmarks=second.ravel().tolist(), score=0.8)])
    code = main(["infer", str(tmp_path / "blank.png"), "--out", str(tmp_path / "out"), "--keypoints", str(kp_file),
                 "--formats", "npz", "--quiet"], engine=tiny_engine())
    assert code == 0, capsys.readouterr()
    with np.load(tmp_path / "out" / "blank_person0.npz") as data:
        np.testing.assert_allclose(data["landmarks_3d"], first, rtol=1e-6)
    with np.load(tmp_path / "out" / "blank_person1.npz") as data:
        np.testing.assert_allclose(data["landmarks_3d"][:, :3], second, rtol=1e-6)
        assert (data["landmarks_3d"][:, 3] == 1).all()


def test_infer_says_when_a_landmark_model_gets_keypoints_without_landmarks(tmp_path, capsys):
    from tests._engines import build_tiny_engine

    cv2.imwrite(str(tmp_path / "blank.png"), np.full((240, 320, 3), 200, np.uint8))
    kp_file = _keypoints_json(tmp_path / "kp.json",
                              [_person_entry(), _person_entry(landmarks_3d=landmarks(3).tolist())])
    args = ["infer", str(tmp_path / "blank.png"), "--out", str(tmp_path / "out"), "--keypoints", str(kp_file),
            "--formats", "npz", "--quiet"]
    assert main(args, engine=build_tiny_engine(kinds=("keypoints", "landmarks"))) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "no 3D landmarks for 1 person;" in notes[0] and "less accurate" in notes[0]
    assert main(args, engine=build_tiny_engine(kinds=("keypoints", "landmarks"), lifter_hidden=8)) == 0
    notes = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "lifts them from the keypoints" in notes[0]
    assert main(args, engine=tiny_engine()) == 0  # a keypoint model has nothing to miss
    assert "no 3D landmarks" not in capsys.readouterr().err


@pytest.mark.parametrize(("value", "reason"), [
    (list(range(50)), "got shape \\(50,\\)"),
    ((np.ones((33, 3)) * 300).tolist(), "not pixels"),
    ([[0.1, 0.2, "z"]] * 33, "numbers"),
])
def test_bad_landmarks_in_the_json_file_are_one_line(tmp_path, capsys, value, reason):
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((240, 320, 3), 200, np.uint8))
    kp_file = _keypoints_json(tmp_path / "kp.json", [_person_entry(), _person_entry(landmarks_3d=value)])
    code = main(["infer", str(tmp_path / "blank.png"), "--out", str(tmp_path / "out"), "--keypoints", str(kp_file),
                 "--quiet"], engine=tiny_engine())
    err = capsys.readouterr().err
    assert code == 2
    line = [ln for ln in err.splitlines() if "kp.json" in ln]
    assert len(line) == 1 and "entry 1: landmarks_3d" in line[0]
    assert re.search(reason, line[0])
