"""The scene GLB: every person of a picture in one file, read back with trimesh; written atomically."""

from __future__ import annotations

import json
import math
import struct

import cv2
import numpy as np
import pytest
import trimesh

from megaviewer.cli import main
from megaviewer.io.export import ExportError
from megaviewer.io.scene_glb import export_scene
from tests._engines import tiny_engine


def _box(offset) -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.creation.box(extents=(0.4, 1.7, 0.3))
    return mesh.vertices + np.asarray(offset), mesh.faces


def _gltf_json(path) -> dict:
    data = path.read_bytes()
    length = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20:20 + length])


def test_scene_holds_every_mesh_with_the_camera(tmp_path):
    people = [_box((-0.6, 0.0, 3.0)), _box((0.7, 0.1, 4.5)), _box((0.0, 0.0, 6.0))]
    path = export_scene(tmp_path / "scene.glb", people, focal=700.0, image_size=(640, 480))
    scene = trimesh.load(path)
    assert isinstance(scene, trimesh.Scene) and len(scene.geometry) == 3
    assert sorted(scene.graph.nodes_geometry) == ["person0", "person1", "person2"]
    for i, (vertices, faces) in enumerate(people):
        mesh = scene.geometry[f"person{i}"]
        assert len(mesh.vertices) == len(vertices) and len(mesh.faces) == len(faces)
        np.testing.assert_allclose(mesh.vertices, vertices, atol=1e-6)  # the camera-frame vertices, unchanged
        transform, _ = scene.graph.get(f"person{i}")
        np.testing.assert_allclose(transform, np.diag([1.0, -1.0, -1.0, 1.0]))  # shown y up, in front (-z)
    gltf = _gltf_json(path)
    camera = gltf["cameras"][0]["perspective"]
    assert camera["aspectRatio"] == pytest.approx(640 / 480)
    assert camera["yfov"] == pytest.approx(2 * math.atan(240 / 700))
    assert any(node.get("camera") == 0 for node in gltf["nodes"])


def test_scene_without_camera_and_bad_input(tmp_path):
    path = export_scene(tmp_path / "one.glb", [_box((0, 0, 2))])
    assert "cameras" not in _gltf_json(path) and len(trimesh.load(path).geometry) == 1
    with pytest.raises(ValueError, match="at least one mesh"):
        export_scene(tmp_path / "none.glb", [])
    with pytest.raises(ValueError, match=".glb suffix"):
        export_scene(tmp_path / "scene.obj", [_box((0, 0, 2))])
    bad = (np.full((8, 3), np.nan), trimesh.creation.box().faces)
    with pytest.raises(ValueError, match="NaN"):
        export_scene(tmp_path / "nan.glb", [bad])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.glb"]  # nothing half-written


def test_failed_scene_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = export_scene(tmp_path / "scene.glb", [_box((0, 0, 2))])
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trimesh.Scene, "export", broken)
    with pytest.raises(OSError):
        export_scene(path, [_box((0, 0, 2)), _box((1, 0, 3))])
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["scene.glb"]
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    monkeypatch.undo()
    with pytest.raises(ExportError, match="cannot write"):
        export_scene(blocker / "scene.glb", [_box((0, 0, 2))])


def test_cli_scene_format_writes_all_people_in_one_camera(tmp_path, capsys):
    """Two people from a keypoints file: one scene GLB with both, placed with the photo's one focal."""
    from tests._gui_helpers import person_keypoints

    cv2.imwrite(str(tmp_path / "pair.png"), np.full((480, 640, 3), 200, np.uint8))
    people = [person_keypoints(200, 60, 380), person_keypoints(470, 140, 240)]
    kp_file = tmp_path / "kp.json"
    kp_file.write_text(json.dumps([{"file_name": "pair.png", "keypoints": p.ravel().tolist(), "score": s}
                                   for p, s in zip(people, (0.9, 0.8), strict=True)]))
    out = tmp_path / "out"
    code = main(["infer", str(tmp_path / "pair.png"), "--out", str(out), "--keypoints", str(kp_file),
                 "--formats", "scene,npz", "--quiet"], engine=tiny_engine())
    assert code == 0, capsys.readouterr()
    scene = trimesh.load(out / "pair_scene.glb")
    assert sorted(scene.graph.nodes_geometry) == ["person0", "person1"]
    from megaviewer.body.assets import BodyAssets

    display = BodyAssets.load().num_display_vertices
    assert [len(scene.geometry[f"person{i}"].vertices) for i in range(2)] == [display, display]
    focals = []
    for i in range(2):
        with np.load(out / f"pair_person{i}.npz") as data:
            focals.append(float(data["focal"]))
            np.testing.assert_allclose(scene.geometry[f"person{i}"].vertices.mean(axis=0),
                                       _display_mean(data["mean_camera_vertices"]), rtol=1e-3)
            assert str(data["focal_source"]) == "default-fov"
    assert focals[0] == focals[1]  # one camera for the picture
    camera = _gltf_json(out / "pair_scene.glb")["cameras"][0]["perspective"]
    assert camera["yfov"] == pytest.approx(2 * math.atan(240 / focals[0]), rel=1e-5)


def _display_mean(working: np.ndarray) -> np.ndarray:
    from megaviewer.render.offscreen import display_mesh

    return display_mesh(working)[0].mean(axis=0)
