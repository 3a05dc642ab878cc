"""Tokenizer and MEGA on the SMPL topology, end to end, on the licence-free synthetic SMPL file.

No licensed SMPL file is used: :func:`megaviewer.body.smpl_synthetic.write_synthetic_smpl` writes a small
stand-in (193 vertices) with exactly the arrays of the real files, into the test's temporary folder. The chain
is the user's: ``megaviewer-train tokenizer --body smpl --model-path FILE`` -> ``eval-tokenizer`` ->
``pretrain`` / ``train`` on that tokenizer -> ``Engine.from_pretrained(final)`` and ``megaviewer infer --model``,
with tiny step counts (the figures are meaningless; shapes, files, bodies and errors are what is checked).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from megaviewer.body.pose_prior import DOF_NAMES
from megaviewer.body.smpl_body import SmplBody
from megaviewer.body.smpl_synthetic import write_synthetic_smpl
from megaviewer.tokenizer.levels import level_sizes_for
from training.cli import main as train_main

TINY_TOKENIZER = ["--steps", "30", "--batch-size", "8", "--channels", "8,8,8", "--ckpt-every", "30",
                  "--lr", "3e-3", "--threads", "1"]
TINY_MEGA = ["--preset", "test_tiny", "--steps", "12", "--batch-size", "8", "--lr", "1e-3", "--warmup", "2",
             "--pool-size", "64", "--ckpt-every", "12", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return write_synthetic_smpl(tmp_path_factory.mktemp("smpl_model") / "SMPL_NEUTRAL.npz", "smpl")


@pytest.fixture(scope="module")
def body(model_file) -> SmplBody:
    return SmplBody(model_file)


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory, model_file) -> Path:
    """``megaviewer-train tokenizer --body smpl``: the run's final folder."""
    out = tmp_path_factory.mktemp("smpl_runs") / "tokenizer"
    code = train_main(["tokenizer", "--body", "smpl", "--model-path", str(model_file), "--out", str(out),
                       "--eval-count", "32", *TINY_TOKENIZER])
    assert code == 0
    return out / "final"


@pytest.fixture(scope="module")
def mega_run(tokenizer_run, model_file) -> Path:
    """``pretrain`` then keypoint-conditioned ``train`` on the SMPL tokenizer: the conditioned run's final folder."""
    root = tokenizer_run.parent.parent
    common = ["--tokenizer", str(tokenizer_run), "--pool", str(root / "pool_smpl.safetensors"), *TINY_MEGA]
    assert train_main(["pretrain", "--out", str(root / "pretrain"), "--body", "smpl", "--model-path",
                       str(model_file), *common]) == 0
    assert train_main(["train", "--out", str(root / "mega"), "--init", str(root / "pretrain" / "final"),
                       "--body", "smpl", *common]) == 0  # the pool exists: no model file needed any more
    return root / "mega" / "final"


def joints_of(body: SmplBody, prior, **angles: float) -> dict[str, torch.Tensor]:
    """Skeleton joints (rest shape) of the body posed by anatomical angles in degrees."""
    values = torch.zeros(1, len(DOF_NAMES))
    for name, value in angles.items():
        values[0, DOF_NAMES.index(name)] = value
    pose = prior.angles_to_pose(values)
    skeleton = body.smplx_output(pose, torch.zeros(1, len(body.shape_names))).joints[0]
    return {name: skeleton[i] for i, name in enumerate(body.joint_names)}


# ------------------------------------------------------------------------------------------------ levels
def test_level_sizes_follow_the_vertex_count() -> None:
    assert level_sizes_for(6890) == [6890, 1925, 400, 54]  # the original Mesh-VQ-VAE's
    for count in (40, 100, 193, 322, 1229, 20_000):
        sizes = level_sizes_for(count)
        assert sizes[0] == count and len(sizes) == 4
        assert all(b < a for a, b in zip(sizes, sizes[1:], strict=False)), sizes
        assert sizes[-1] == max(4, min(54, count // 16)), sizes  # >= 16 vertices per token, at most 54
    with pytest.raises(ValueError, match="too small"):
        level_sizes_for(6)


def test_hierarchy_is_built_for_the_smpl_mesh_outside_the_resources(tmp_path, body) -> None:
    from megaviewer.paths import tokenizer_dir
    from megaviewer.tokenizer.model import TokenizerConfig
    from training.tokenizer import build_tokenizer

    shipped = sorted(p.name for p in tokenizer_dir().iterdir())
    config = TokenizerConfig(body="smpl", level_sizes=level_sizes_for(body.num_vertices), channels=[4, 4, 4])
    model = build_tokenizer(config, body, cache_folder=tmp_path)
    assert model.num_vertices == body.num_vertices == 193 and model.num_tokens == config.level_sizes[-1]
    assert [p.name for p in tmp_path.iterdir()] == [f"hierarchy-{model.config.hierarchy_fingerprint}.safetensors"]
    assert sorted(p.name for p in tokenizer_dir().iterdir()) == shipped  # nothing derived from SMPL lands there
    zero = body.zero_params(2)
    meshes = body.canonical_vertices(zero.pose, zero.shape)
    with torch.no_grad():
        assert model(meshes).vertices.shape == (2, 193, 3)
    with pytest.raises(ValueError, match="'anny' body"):
        build_tokenizer(TokenizerConfig(channels=[4, 4, 4]), body, cache_folder=tmp_path)


# ------------------------------------------------------------------------------------------------- prior
@pytest.mark.parametrize("model_type", ["smpl", "smplh"])
def test_anatomical_angles_move_the_smpl_limbs_as_named(tmp_path, model_type) -> None:
    from megaviewer.body.smpl_pose_prior import SmplPosePrior

    body = SmplBody(write_synthetic_smpl(tmp_path / f"{model_type}.npz", model_type), model_type=model_type)
    prior = SmplPosePrior(body)
    rest = joints_of(body, prior)
    hanging = rest["left_wrist"] - rest["left_shoulder"]
    assert hanging[1] < -0.4 and hanging[[0, 2]].abs().max() < 1e-4  # neutral: the arm hangs (rest is a T-pose)
    moved = joints_of(body, prior, shoulder_abd_l=90.0)
    assert (moved["left_wrist"] - moved["left_shoulder"])[0] > 0.4  # abduction: out to the body's left (+x)
    moved = joints_of(body, prior, shoulder_flex_r=90.0)
    assert (moved["right_wrist"] - moved["right_shoulder"])[2] > 0.4  # flexion: forward (+z)
    moved = joints_of(body, prior, elbow_flex_l=90.0)
    assert (moved["left_wrist"] - moved["left_elbow"])[2] > 0.2  # the forearm comes forward
    moved = joints_of(body, prior, hip_flex_l=90.0, knee_flex_r=90.0)
    assert (moved["left_knee"] - moved["left_hip"])[2] > 0.3  # thigh forward
    assert (moved["right_ankle"] - moved["right_knee"])[2] < -0.3  # shank backward
    moved = joints_of(body, prior, hip_rot_l=40.0, knee_flex_l=90.0)  # internal rotation swings the foot out
    assert (moved["left_ankle"] - moved["left_knee"])[0] > 0.2
    moved = joints_of(body, prior, spine_rot=45.0)  # turning left brings the left shoulder back
    assert moved["left_shoulder"][2] < -0.05 < 0.05 < moved["right_shoulder"][2]
    moved = joints_of(body, prior, spine_bend=30.0, spine_flex=30.0)
    neck = moved["neck"] - rest["neck"]
    assert neck[0] > 0.05 and neck[2] > 0.05  # bent to the left and forward


def test_smpl_prior_samples_plausible_bodies_reproducibly(body) -> None:
    from training.data.meshes import SyntheticMeshes

    meshes = SyntheticMeshes(body=body, prior_kind="keyposes")
    batch = meshes.sample(64, torch.Generator().manual_seed(3))
    again = meshes.sample(64, torch.Generator().manual_seed(3))
    assert batch.vertices.shape == (64, 193, 3) and torch.equal(batch.vertices, again.vertices)
    assert batch.params.pose.shape == (64, 23, 3) and batch.params.shape.abs().max() <= 3.0
    assert not meshes.prior.capsules.intersects(batch.params.pose).any()
    assert batch.vertices.mean(dim=1).abs().max() < 1e-5  # canonical: centroid-centred
    spread = (batch.vertices - batch.vertices.mean(dim=0)).norm(dim=-1).mean()
    assert spread > 0.05  # poses differ (a constant prior would give ~0)


# ----------------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_run_writes_a_self_contained_smpl_folder(tokenizer_run, body) -> None:
    from megaviewer.body.assets import BodyAssets
    from megaviewer.io.checkpoint import load_tensors
    from megaviewer.tokenizer.model import MeshVQVAE

    config = json.loads((tokenizer_run / "config.json").read_text())
    assert config["body"] == "smpl" and config["level_sizes"] == level_sizes_for(193)
    names = {p.name for p in tokenizer_run.iterdir()}
    assert {"config.json", "model.safetensors", "body.safetensors", "metrics.json"} <= names
    assert any(n.startswith("hierarchy-") for n in names)
    assets = BodyAssets.for_tokenizer(MeshVQVAE.from_pretrained(tokenizer_run))
    assert torch.equal(assets.faces, body.faces.long()) and torch.equal(assets.display_faces, assets.faces)
    torch.testing.assert_close(assets.coco_regressor, body.coco_regressor)
    zero = body.zero_params(1)
    torch.testing.assert_close(assets.template, body.canonical_vertices(zero.pose, zero.shape)[0])
    torch.testing.assert_close(assets.upsample(assets.template), assets.template)  # display = working mesh
    from safetensors import safe_open

    with safe_open(str(tokenizer_run / "body.safetensors"), "pt") as handle:
        assert "licensed" in handle.metadata()["licence"]
    assert set(load_tensors(tokenizer_run / "body.safetensors")) == set(BodyAssets.__dataclass_fields__)
    metrics = json.loads((tokenizer_run / "metrics.json").read_text())
    assert metrics["heldout_meshes"] == 32 and metrics["hands_feet_vertices"] > 0


# The stand-in has SMPL's vertex count but not its vertex numbering, so the real topology's face-keypoint vertices
# land anywhere on it, which the body's own check reports.
@pytest.mark.filterwarnings("ignore:.*COCO face keypoints may be mirrored")
def test_full_size_smpl_topology_gets_the_original_levels_end_to_end(tmp_path) -> None:
    """A model file with the real SMPL's 6,890 vertices: the tokenizer command builds the original Mesh-VQ-VAE's
    hierarchy (6,890 -> 1,925 -> 400 -> 54), trains, and the result encodes and decodes meshes of that size."""
    from megaviewer.tokenizer.model import MeshVQVAE

    model_file = write_synthetic_smpl(tmp_path / "SMPL_NEUTRAL.npz", "smpl", num_vertices=6890, exact=True)
    full = SmplBody(model_file)
    assert full.num_vertices == 6890
    out = tmp_path / "tokenizer"
    assert train_main(["tokenizer", "--body", "smpl", "--model-path", str(model_file), "--out", str(out),
                       "--eval-count", "8", "--steps", "2", "--batch-size", "2", "--channels", "4,4,4",
                       "--ckpt-every", "2", "--threads", "1"]) == 0
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["level_sizes"] == [6890, 1925, 400, 54]
    model = MeshVQVAE.from_pretrained(out / "final")
    zero = full.zero_params(2)
    with torch.inference_mode():
        ids = model.encode(full.canonical_vertices(zero.pose, zero.shape).float())
        assert ids.shape == (2, 54) and model.decode(ids).shape == (2, 6890, 3)


def test_eval_tokenizer_on_the_smpl_topology(tokenizer_run, model_file, tmp_path, capsys) -> None:
    out = tmp_path / "metrics.json"
    assert train_main(["eval-tokenizer", str(tokenizer_run), "--model-path", str(model_file), "--count", "16",
                       "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["heldout_meshes"] == 16 and np.isfinite(metrics["pve_mm"]) and metrics["pa_mpjpe_mm"] > 0
    assert metrics["hands_feet_vertices"] == int(SmplBody(model_file).region_mask(
        ("left_wrist", "right_wrist", "left_ankle", "right_ankle")).sum())


def test_smpl_commands_without_or_with_a_wrong_model_file_say_why(tokenizer_run, tmp_path, capsys) -> None:
    assert train_main(["tokenizer", "--body", "smpl", "--out", str(tmp_path / "t"), *TINY_TOKENIZER]) == 2
    assert "--body smpl needs --model-path" in capsys.readouterr().err
    assert train_main(["eval-tokenizer", str(tokenizer_run), "--count", "4"]) == 2
    assert "--model-path" in capsys.readouterr().err
    missing = tmp_path / "nowhere" / "SMPL_NEUTRAL.npz"
    assert train_main(["eval-tokenizer", str(tokenizer_run), "--count", "4", "--model-path", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "smpl.is.tue.mpg.de" in err
    other = write_synthetic_smpl(tmp_path / "other" / "SMPL_NEUTRAL.npz", "smpl", num_vertices=320)
    assert train_main(["eval-tokenizer", str(tokenizer_run), "--count", "4", "--model-path", str(other)]) == 2
    assert "not the model file it was trained with" in capsys.readouterr().err
    common = ["--tokenizer", str(tokenizer_run), "--pool", str(tmp_path / "pool.safetensors"), *TINY_MEGA]
    assert train_main(["pretrain", "--out", str(tmp_path / "p"), *common]) == 2  # forgot --body smpl
    assert "encodes 'smpl' meshes" in capsys.readouterr().err
    assert train_main(["pretrain", "--out", str(tmp_path / "p"), "--body", "smpl", *common]) == 2
    assert "--body smpl needs --model-path" in capsys.readouterr().err


def test_default_pool_is_per_body() -> None:
    from training.mega_pretrain import default_pool_path

    assert default_pool_path("anny") == "runs/pool.safetensors"
    assert default_pool_path("smpl") == "runs/pool_smpl.safetensors"


# ------------------------------------------------------------------------------------------------- MEGA
def test_mega_runs_keep_their_smpl_tokenizer(mega_run, tokenizer_run) -> None:
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.pool import MeshPool, tokenizer_fingerprint

    for final in (mega_run, mega_run.parent.parent / "pretrain" / "final"):
        bundled = final / "tokenizer"
        assert {"config.json", "model.safetensors", "body.safetensors"} <= {p.name for p in bundled.iterdir()}
        assert tokenizer_fingerprint(MeshVQVAE.from_pretrained(bundled)) == tokenizer_fingerprint(
            MeshVQVAE.from_pretrained(tokenizer_run))
        assert (bundled / "body.safetensors").read_bytes() == (tokenizer_run / "body.safetensors").read_bytes()
    pool = MeshPool.load(mega_run.parent.parent / "pool_smpl.safetensors",
                         tokenizer=MeshVQVAE.from_pretrained(tokenizer_run))
    assert len(pool) == 64 and pool.tokens.shape[1] == level_sizes_for(193)[-1]


def test_engine_recovers_smpl_meshes_from_the_checkpoint_folder_alone(mega_run, tokenizer_run, body) -> None:
    from megaviewer.engine import CropBox, Engine

    engine = Engine.from_pretrained(mega_run, device="cpu")
    assert "smpl" in engine.label() and engine.describe()["body"] == "smpl"
    assert engine.tokenizer.source_dir == mega_run / "tokenizer"
    assert torch.equal(engine.faces, body.faces.long())
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[:, 0] = np.linspace(-0.3, 0.3, 17)
    keypoints[:, 1] = np.linspace(-0.8, 0.8, 17)
    keypoints[:, 2] = 1.0
    crop = CropBox(center=(160.0, 120.0), side=200.0, image_size=(320, 240))
    first = engine.recover(keypoints, mode="deterministic", crop=crop)
    second = engine.recover(keypoints, mode="deterministic", crop=crop)
    assert first.camera_vertices.shape == (1, body.num_vertices, 3)
    assert torch.isfinite(first.camera_vertices).all() and "smpl" in first.model
    assert torch.equal(first.tokens, second.tokens)
    torch.testing.assert_close(first.joints, torch.einsum("jv,qvc->qjc", body.coco_regressor,
                                                          first.camera_vertices))
    from megaviewer.gui.scene import BodyScene  # what the app builds after File > Open model… (Qt-free)

    scene = BodyScene.for_engine(engine)
    assert scene.num_tokens == engine.tokenizer.num_tokens and scene.display_token.shape == (body.num_vertices,)
    np.testing.assert_allclose(scene.upsample(first.canonical_vertices[0]), first.canonical_vertices[0].numpy())
    explicit = Engine.from_pretrained(mega_run, device="cpu", tokenizer_path=tokenizer_run)
    assert explicit.tokenizer.source_dir == tokenizer_run
    assert torch.equal(explicit.recover(keypoints, mode="deterministic", crop=crop).tokens, first.tokens)


def test_smpl_tokenizer_without_its_body_data_is_a_clear_error(tokenizer_run, tmp_path) -> None:
    import shutil

    from megaviewer.body.assets import BodyAssets
    from megaviewer.tokenizer.model import MeshVQVAE

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tokenizer_run / name, bare / name)
    with pytest.raises(FileNotFoundError, match="body.safetensors"):
        BodyAssets.for_tokenizer(MeshVQVAE.from_pretrained(bare))


def test_infer_command_runs_the_smpl_model(mega_run, body, tmp_path, capsys) -> None:
    from megaviewer.cli import main
    from tests._gui_helpers import blank_photo_with_keypoints

    _, keypoints = blank_photo_with_keypoints(tmp_path)
    out = tmp_path / "out"
    code = main(["infer", str(tmp_path / "blank.png"), "--out", str(out), "--model", str(mega_run), "--keypoints",
                 str(keypoints), "--formats", "npz,obj,png", "--device", "cpu", "--quiet"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "model: mega (keypoints, smpl)" in stdout
    data = np.load(out / "blank_person0.npz")
    assert data["camera_vertices"].shape == (1, body.num_vertices, 3)
    assert {"blank_overlay.png", "blank_side.png", "blank_person0.obj"} <= {p.name for p in out.iterdir()}


# ------------------------------------------------------------------------------------------ dataset training
def write_smpl_dataset(folder: Path, body: SmplBody, count: int = 8) -> Path:
    """``count`` people posed through the SMPL file, stored as SMPL parameters, drawn by the software rasteriser
    (grey bodies on black; the images only need to exist and be croppable)."""
    from megaviewer.geometry.rotations import matrix_to_rotvec, rotvec_to_matrix
    from megaviewer.render.raster import overlay_layer, project
    from training.data.dataset_format import write_dataset

    gen = torch.Generator().manual_seed(4)
    pose = 0.2 * torch.randn(count, len(body.pose_joint_names), 3, generator=gen)
    shape = torch.randn(count, len(body.shape_names), generator=gen)
    orient = rotvec_to_matrix(torch.tensor([np.pi, 0.0, 0.0])).expand(count, 3, 3)  # upright in OpenCV axes
    canonical = body.canonical_vertices(pose, shape)
    camera = canonical @ orient.transpose(-1, -2) + torch.tensor([0.0, 0.0, 3.0])
    focal, size = 120.0, (128, 128)
    records, images = [], {}
    for i in range(count):
        verts = camera[i].double().numpy()
        joints = project(body.coco_regressor.double().numpy() @ verts, focal, size)
        name = f"images/{i}.png"
        layer = overlay_layer([verts], body.faces.numpy(), focal, size, np.array([200, 200, 200], np.uint8))
        images[name] = layer[..., 2::-1].copy()
        records.append({"image": name, "keypoints_2d": np.concatenate([joints, np.ones((17, 1))], 1).tolist(),
                        "body": "smpl", "pose": pose[i].flatten().tolist(), "shape": shape[i].tolist(),
                        "global_orient": matrix_to_rotvec(orient[i]).tolist(), "focal": focal,
                        "split": "val" if i >= count - 2 else "train"})
    write_dataset(folder, records, images)
    return folder


def test_image_model_trains_on_a_dataset_of_smpl_people(tokenizer_run, model_file, body, tmp_path):
    from megaviewer.engine import Engine

    data = write_smpl_dataset(tmp_path / "data", body)
    args = ["train", "--data", str(data), "--tokenizer", str(tokenizer_run), "--out", str(tmp_path / "run"),
            "--preset", "test_tiny", "--backbone", "resnet18", "--image-size", "64", "--steps", "2",
            "--batch-size", "4", "--warmup", "1", "--workers", "0", "--no-progress", "--threads", "1"]
    assert train_main(args) == 2  # an SMPL tokenizer without --body smpl: refused with a hint
    assert train_main([*args, "--body", "smpl", "--model-path", str(model_file)]) == 0
    final = tmp_path / "run" / "final"
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["held_out_people"] == 2 and metrics["deterministic"]["pve"] > 0
    engine = Engine.from_pretrained(final, device="cpu")  # its tokenizer and SMPL body travel in final/tokenizer
    assert engine.label() == "run (image, smpl)"
    result = engine.recover(image=torch.zeros(3, 64, 64))
    assert result.camera_vertices.shape == (1, body.num_vertices, 3)
