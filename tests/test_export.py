"""Mesh and NPZ exports: every format read back by an independent reader, atomic writes, clear errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from megaviewer.io import export as export_mod
from megaviewer.io.export import ExportError, export_mesh, export_npz, vertex_normals
from tests._engines import tiny_engine

trimesh = pytest.importorskip("trimesh")


@pytest.fixture(scope="module")
def mesh(body_assets):
    verts = body_assets.template.numpy().astype(np.float32)
    return verts, body_assets.faces.numpy()


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
def test_mesh_formats_read_back(tmp_path, mesh, suffix):
    verts, faces = mesh
    path = export_mesh(tmp_path / f"body{suffix}", verts, faces)
    loaded = trimesh.load(path, process=False, force="mesh")
    assert loaded.vertices.shape == verts.shape and loaded.faces.shape == faces.shape
    np.testing.assert_array_equal(loaded.faces, faces)
    np.testing.assert_allclose(loaded.vertices, verts, atol=2e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_obj_without_normals_and_normals_agree_with_trimesh(tmp_path, mesh):
    verts, faces = mesh
    text = export_mesh(tmp_path / "plain.obj", verts, faces, normals=False).read_text()
    assert "vn " not in text and text.count("\nf ") == len(faces)
    normals = vertex_normals(verts, faces)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    reference = trimesh.Trimesh(verts, faces, process=False).vertex_normals
    agree = (normals * reference).sum(1)
    assert (agree > 0.9).mean() > 0.95  # same side and nearly the same direction (weights differ slightly)


def test_npz_holds_the_documented_schema(tmp_path):
    from megaviewer.engine import CropBox

    engine = tiny_engine()
    res = engine.recover(np.zeros((17, 3), np.float32), mode="stochastic", num_samples=3, return_trace=False,
                         crop=CropBox((100.0, 120.0), 150.0, (320, 240)))
    path = export_npz(tmp_path / "person0.npz", res, person_index=2, image_size=(320, 240))
    data = np.load(path)
    documented = [line.split("``")[1] for line in export_mod.__doc__.splitlines() if line.startswith("``")]
    optional = {"keypoints_2d", "box_center", "box_side", "landmarks_3d"}
    assert res.camera_fit is not None  # the engine fits the camera by default
    assert set(documented) - optional == set(data.files)
    q, v = 3, res.camera_vertices.shape[1]
    assert data["camera_vertices"].shape == (q, v, 3) and data["canonical_vertices"].shape == (q, v, 3)
    assert data["tokens"].dtype == np.int64 and data["faces"].dtype == np.int32
    np.testing.assert_allclose(data["mean_camera_vertices"], res.mean_camera.numpy(), atol=1e-6)
    np.testing.assert_allclose(data["vertex_sd_mm"], res.vertex_sd_mm.numpy(), atol=1e-4)
    assert data["joints"].shape == (q, 17, 3) and list(data["joint_names"])[5] == "left_shoulder"
    assert str(data["mode"]) == "stochastic" and int(data["person_index"]) == 2
    assert float(data["focal"]) == pytest.approx(res.focal) and tuple(data["image_size"]) == (320, 240)
    assert str(data["focal_source"]) == "default-fov"
    assert data["network_rotation"].shape == (q, 3, 3) and data["network_cam"].shape == (q, 3)
    np.testing.assert_allclose(data["network_cam"], res.network_cam.numpy(), atol=1e-6)
    assert data["camera_fit_fitted"].shape == (q,) and data["camera_fit_fitted"].dtype == np.bool_
    assert data["camera_fit_num_keypoints"].shape == (q,) and data["camera_fit_num_keypoints"].dtype == np.int32
    for key in ("error_before", "error_after", "rotation_change_deg"):
        assert data[f"camera_fit_{key}"].shape == (q,) and data[f"camera_fit_{key}"].dtype == np.float32
    assert data["refined_latents"].shape == (q, res.tokens.shape[1], 9) and data["refined"].shape == (q,)
    assert data["latents"].shape == (q, res.tokens.shape[1], 9)  # the expected codes, decoded by default
    np.testing.assert_allclose(data["latents"], res.latents.numpy())

    unfitted = engine.recover(np.zeros((17, 3), np.float32), mode="stochastic", num_samples=3, return_trace=False,
                              crop=CropBox((100.0, 120.0), 150.0, (320, 240)), fit_camera=False)
    files = set(np.load(export_npz(tmp_path / "unfitted.npz", unfitted)).files)
    fit_keys = {k for k in documented if k.startswith(("network_", "camera_fit_", "refine"))}
    assert len(fit_keys) == 11 and not fit_keys & files
    assert set(documented) - optional - fit_keys == files

    argmax = engine.recover(np.zeros((17, 3), np.float32), mode="stochastic", num_samples=3, return_trace=False,
                            expected_codes=False)
    assert "latents" not in np.load(export_npz(tmp_path / "argmax.npz", argmax)).files  # the tokens' own codes


def test_failed_write_leaves_no_partial_file(tmp_path, mesh, monkeypatch):
    verts, faces = mesh
    target = tmp_path / "body.ply"
    target.write_bytes(b"previous export")

    def broken(path, *args):
        path.write_bytes(b"ply\nhalf a mesh")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(export_mod, "_write_ply", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_mesh(target, verts, faces)
    assert target.read_bytes() == b"previous export"  # the old file survives intact
    assert [p.name for p in tmp_path.iterdir()] == ["body.ply"]  # and no temp file remains


def test_unwritable_destination_raises_export_error(tmp_path, mesh):
    verts, faces = mesh
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(ExportError, match="cannot write .*file.txt/body.obj"):
        export_mesh(blocker / "body.obj", verts, faces)
    if os.geteuid() != 0:  # root ignores permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ExportError, match="permission denied"):
            export_mesh(locked / "body.obj", verts, faces)


def test_bad_inputs_are_refused(tmp_path, mesh):
    verts, faces = mesh
    with pytest.raises(ValueError, match="unknown mesh format"):
        export_mesh(tmp_path / "body.stl", verts, faces)
    bad = verts.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        export_mesh(tmp_path / "body.obj", bad, faces)
    with pytest.raises(ValueError, match="face indices"):
        export_mesh(tmp_path / "body.obj", verts[:10], faces)
    assert not list(tmp_path.iterdir())
    torch_verts = torch.as_tensor(verts)
    assert export_mesh(tmp_path / "t.ply", torch_verts, torch.as_tensor(faces)).exists()  # tensors accepted


def test_png_export_is_atomic_and_reads_back(tmp_path, monkeypatch):
    import cv2

    from megaviewer.io.export import export_png

    bgr = np.zeros((20, 30, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    assert (cv2.imread(str(export_png(tmp_path / "a.b.png", bgr)))[..., 2] == 255).all()
    assert (cv2.imread(str(export_png(tmp_path / "rgb.png", bgr[..., ::-1], rgb=True)))[..., 2] == 255).all()
    target = tmp_path / "a.b.png"
    before = target.read_bytes()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(target), "write_bytes", broken)
    with pytest.raises(ExportError, match="no space left"):
        export_png(target, np.full((20, 30, 3), 9, np.uint8))
    monkeypatch.undo()
    assert target.read_bytes() == before  # the previous picture survives, no temp file remains
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.b.png", "rgb.png"]
