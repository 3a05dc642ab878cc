"""``megaviewer infer`` end to end on a tiny random engine: outputs, per-input messages, summary, exit codes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from megaviewer.cli import main
from tests._engines import tiny_engine

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut()[..., ::-1])


@pytest.fixture()
def folder(tmp_path, astronaut):
    d = tmp_path / "photos"
    d.mkdir()
    cv2.imwrite(str(d / "astronaut.png"), astronaut)
    ok, jpg = cv2.imencode(".jpg", astronaut)
    (d / "corrupt.jpg").write_bytes(jpg.tobytes()[:1500])
    cv2.imwrite(str(d / "blank.png"), np.full((240, 320, 3), 210, np.uint8))
    (d / "notes.txt").write_text("not an input")  # skipped: not an image/video extension
    return d


def run(args, capsys):
    code = main(["infer", *map(str, args)], engine=tiny_engine())
    out = capsys.readouterr()
    return code, out.out, out.err


def test_folder_with_good_corrupt_and_empty_images(folder, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, stdout, stderr = run([folder, "--out", out_dir, "--formats", "obj,npz,png", "--quiet"], capsys)
    assert code == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["astronaut_overlay.png", "astronaut_person0.npz", "astronaut_person0.obj", "astronaut_side.png"]
    assert "astronaut.png: recovered 1 person" in stdout
    assert "blank.png: no person found" in stdout
    assert "corrupt.jpg: corrupt or truncated image" in stderr
    summary = stdout[stdout.index("Summary:"):]
    assert "3 inputs: 1 processed (1 person), 1 without people, 1 failed" in summary
    assert "no person found: " in summary and "failed: " in summary and "corrupt.jpg" in summary
    assert cv2.imread(str(out_dir / "astronaut_overlay.png")).shape == (512, 512, 3)


def test_stochastic_outputs_heatmap_and_samples(folder, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, stdout, _ = run([folder / "astronaut.png", "--out", out_dir, "--mode", "stochastic", "--samples", "3",
                           "--formats", "ply,png,npz", "--all-samples", "--topology", "working", "--quiet"], capsys)
    assert code == 0
    names = {p.name for p in out_dir.iterdir()}
    assert {"astronaut_person0_sd.png", "astronaut_person0.ply", "astronaut_person0_sample2.ply"} <= names
    assert np.load(out_dir / "astronaut_person0.npz")["camera_vertices"].shape[0] == 3


def test_keypoints_json_replaces_the_detector(folder, tmp_path, capsys, monkeypatch):
    import megaviewer.vision.detector as detector_mod

    def no_mediapipe(*args, **kwargs):
        raise AssertionError("MediaPipe must not run for images listed in --keypoints")

    monkeypatch.setattr(detector_mod.PoseDetector, "__post_init__", no_mediapipe)
    person = np.zeros((17, 3))
    person[:, 0] = np.linspace(120, 200, 17)
    person[:, 1] = np.linspace(40, 220, 17)
    person[:, 2] = 2
    person[3:5, 2] = 0  # ears not labelled
    kp_file = tmp_path / "keypoints.json"
    kp_file.write_text(json.dumps([{"file_name": "blank.png", "keypoints": person.ravel().tolist(),
                                    "bbox": [100, 30, 120, 200]}]))
    out_dir = tmp_path / "out"
    code, stdout, _ = run([folder / "blank.png", "--out", out_dir, "--keypoints", kp_file, "--formats", "npz",
                           "--quiet"], capsys)
    assert code == 0, stdout
    data = np.load(out_dir / "blank_person0.npz")
    np.testing.assert_allclose(data["keypoints_2d"][:, :2], person[:, :2], atol=1e-4)
    assert list(data["keypoints_2d"][:, 2]) == [1.0] * 3 + [0.0] * 2 + [1.0] * 12


def test_coco_results_format_matches_by_image_id(tmp_path, astronaut, capsys, monkeypatch):
    import megaviewer.vision.detector as detector_mod

    monkeypatch.setattr(detector_mod.PoseDetector, "__post_init__", lambda self: pytest.fail("detector used"))
    cv2.imwrite(str(tmp_path / "000000000042.jpg"), astronaut)
    kp = np.tile([200.0, 200.0, 0.9], 17) + np.repeat(np.arange(17), 3) * np.tile([5.0, 12.0, 0.0], 17)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 42, "category_id": 1, "keypoints": kp.tolist(), "score": 0.8}]))
    code, stdout, _ = run([tmp_path / "000000000042.jpg", "--out", tmp_path / "o", "--keypoints", results,
                           "--formats", "npz", "--quiet"], capsys)
    assert code == 0 and (tmp_path / "o" / "000000000042_person0.npz").exists()
    assert np.load(tmp_path / "o" / "000000000042_person0.npz")["keypoints_2d"][0, 2] == pytest.approx(0.9)


def test_video_input_every_other_frame(tmp_path, astronaut, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (256, 256))
    small = cv2.resize(astronaut, (256, 256))
    for i in range(4):
        writer.write(np.roll(small, 2 * i, axis=1))
    writer.release()
    out_dir = tmp_path / "out"
    code, stdout, _ = run([video, "--out", out_dir, "--every", "2", "--max-people", "1", "--formats", "npz,mp4",
                           "--quiet"], capsys)
    assert code == 0, stdout
    assert sorted(p.name for p in (out_dir / "clip").iterdir()) == ["frame_000000_person0.npz",
                                                                   "frame_000002_person0.npz"]
    cap = cv2.VideoCapture(str(out_dir / "clip_overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    cap.release()
    assert "2 video frames" in stdout


def test_exit_codes(folder, tmp_path, capsys):
    assert run([folder / "corrupt.jpg", tmp_path / "missing.png", "--out", tmp_path / "o"], capsys)[0] == 1
    code, _, stderr = run([folder, "--out", tmp_path / "o", "--no-such-option"], capsys)
    assert code == 2 and "unrecognized arguments" in stderr
    code, _, stderr = run([folder, "--out", tmp_path / "o", "--samples", "3"], capsys)
    assert code == 2 and "--mode stochastic" in stderr
    code, _, stderr = run([folder, "--out", tmp_path / "o", "--formats", "obj,fbx"], capsys)
    assert code == 2 and "fbx" in stderr
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{ not json")
    code, _, stderr = run([folder, "--out", tmp_path / "o", "--keypoints", bad_json], capsys)
    assert code == 2 and "bad.json" in stderr
    assert main(["infer", "--help"]) == 0


def test_gui_without_display_says_so(monkeypatch, capsys):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    assert main([]) == 1
    assert "no display" in capsys.readouterr().err


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _written(stdout: str) -> int:
    import re

    return int(re.search(r"; (\d+) files written to", stdout).group(1))


def test_dotted_names_keep_their_full_stem(tmp_path, astronaut, capsys):
    """``take.001.jpg`` and ``take.002.jpg`` write distinct files; a dotted capture name keeps its person index."""
    photos = tmp_path / "photos"
    photos.mkdir()
    names = ("take.001.jpg", "take.002.jpg", "S1_Directions_1.54138969_000001.jpg")
    for name in names:
        cv2.imwrite(str(photos / name), astronaut)
    out_dir = tmp_path / "out"
    code, stdout, _ = run([photos, "--out", out_dir, "--formats", "obj,npz,png", "--quiet"], capsys)
    assert code == 0, stdout
    stems = [n.removesuffix(".jpg") for n in names]
    expected = sorted(f"{s}_{tail}" for s in stems
                      for tail in ("overlay.png", "side.png", "person0.npz", "person0.obj"))
    assert _files(out_dir) == expected
    assert _written(stdout) == len(expected)


def test_same_stem_from_two_folders_and_two_formats(tmp_path, astronaut, capsys):
    """``x/a.jpg``, ``x/a.png`` and ``y/a.jpg`` each get their own files, told apart by a suffix."""
    sizes = {"x/a.jpg": 512, "x/a.png": 400, "y/a.jpg": 300}
    for name, side in sizes.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / name), cv2.resize(astronaut, (side, side)))
    out_dir = tmp_path / "out"
    code, stdout, _ = run([tmp_path / "x", tmp_path / "y" / "a.jpg", "--out", out_dir, "--formats", "npz,png",
                           "--quiet"], capsys)
    assert code == 0, stdout
    # folders list their files sorted (a.jpg before a.png); the first use of a stem keeps it
    for stem, side in (("a", 512), ("a_2", 400), ("a_3", 300)):
        with np.load(out_dir / f"{stem}_person0.npz") as data:
            assert list(data["image_size"]) == [side, side]
        assert cv2.imread(str(out_dir / f"{stem}_overlay.png")).shape[:2] == (side, side)
    assert _written(stdout) == len(_files(out_dir)) == 9


def test_summary_counts_the_files_in_the_folder(folder, tmp_path, astronaut, capsys):
    """Photos, a stochastic run with every hypothesis, a video: the summary's count is what the folder holds."""
    video = folder / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (256, 256))
    for i in range(2):
        writer.write(np.roll(cv2.resize(astronaut, (256, 256)), 2 * i, axis=1))
    writer.release()
    out_dir = tmp_path / "out"
    code, stdout, _ = run([folder, "--out", out_dir, "--mode", "stochastic", "--samples", "2", "--all-samples",
                           "--formats", "obj,ply,npz,png,mp4", "--max-people", "1", "--quiet"], capsys)
    assert code == 0, stdout
    files = _files(out_dir)
    assert "astronaut_person0_sample1.ply" in files and "clip_overlay.mp4" in files
    assert "clip/frame_000001_person0_sd.png" in files
    assert _written(stdout) == len(files)


def test_defaults_are_the_shared_settings(folder, tmp_path, capsys):
    from megaviewer.cli import build_infer_parser
    from megaviewer.settings import DEFAULTS

    args = build_infer_parser().parse_args(["x", "--out", "o"])
    assert (args.mode, args.steps, args.temperature, args.seed, args.camera_fit, args.expected_codes) == (
        DEFAULTS.mode, DEFAULTS.steps, DEFAULTS.temperature, DEFAULTS.seed, DEFAULTS.fit_camera,
        DEFAULTS.expected_codes)
    assert build_infer_parser().parse_args(["x", "--out", "o", "--argmax-codes"]).expected_codes is False
    out_dir = tmp_path / "out"
    code, stdout, _ = run([folder / "astronaut.png", "--out", out_dir, "--mode", "stochastic", "--formats", "npz",
                           "--quiet"], capsys)
    assert code == 0, stdout
    with np.load(out_dir / "astronaut_person0.npz") as data:
        assert data["tokens"].shape[0] == DEFAULTS.num_samples
