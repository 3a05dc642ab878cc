"""Training on a dataset folder: targets from the people's bodies, held-out splits, short image- and
image+keypoint-conditioned runs through ``megaviewer-train train --data``, and the result in the engine and
``megaviewer infer``.

The data are a dozen rendered Anny people with known bodies (:mod:`training.data.demo_dataset`), written once
per module in the dataset format, as vertices, as Anny parameters and mixed. The runs are a few steps of a
``test_tiny`` model with a random resnet18 at 64x64: what is checked is the whole path, not accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from megaviewer.geometry.rotations import rotvec_to_matrix
from training.data.body_targets import BodyTargets, mirror_permutation
from training.data.dataset import DatasetReader, ReaderConfig
from training.data.dataset_format import read_table
from training.mega_dataset import make_target_maker, split_indices

PEOPLE = 12
TRAIN = ["--preset", "test_tiny", "--backbone", "resnet18", "--image-size", "64", "--steps", "4", "--batch-size", "4",
         "--warmup", "1", "--threads", "1", "--workers", "0", "--no-progress", "--ckpt-every", "2"]


@pytest.fixture(scope="module")
def tokenizer():
    from megaviewer.tokenizer.model import MeshVQVAE

    return MeshVQVAE.from_pretrained()


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict:
    from training.data.demo_dataset import write_demo_dataset
    from training.data.meshes import SyntheticMeshes

    meshes = SyntheticMeshes()
    root = tmp_path_factory.mktemp("datasets")
    return {kind: write_demo_dataset(root / kind, PEOPLE, seed=3, body=kind, meshes=meshes).parent
            for kind in ("vertices", "params", "mixed")}


def targets_of(folder, tokenizer, rows=range(PEOPLE)) -> BodyTargets:
    maker, _ = make_target_maker(tokenizer, needs_params=True)
    reader = DatasetReader(folder, ReaderConfig(crop_size=32))
    return maker.from_samples([reader.load(i) for i in rows])


# ------------------------------------------------------------------------------------------------- targets
def test_parameters_and_vertices_give_the_same_people(datasets, tokenizer):
    from_vertices = targets_of(datasets["vertices"], tokenizer)
    from_params = targets_of(datasets["params"], tokenizer)
    # the oriented meshes agree to a fraction of a millimetre (the vertices were stored to 10 µm)
    assert (from_vertices.oriented - from_params.oriented).norm(dim=-1).max() < 1e-3
    # parameters give the true root; vertices an estimate from the pelvis, a few degrees off
    orients = np.stack([r.params.global_orient for r in read_table(datasets["params"])])
    true_rot = rotvec_to_matrix(torch.from_numpy(orients).float())
    torch.testing.assert_close(from_params.rot_cam, true_rot, atol=1e-5, rtol=0)
    cos = ((from_vertices.rot_cam.transpose(-1, -2) @ true_rot).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    degrees = torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
    assert degrees.max() < 15 and degrees.median() < 8, degrees
    # the canonical mesh is the tokenizer's: tokenising and decoding it loses little
    decoded = tokenizer.decode(tokenizer.encode(from_vertices.canonical))
    assert (decoded - from_vertices.canonical).norm(dim=-1).mean() < 0.03


def test_mixed_tables_take_each_person_as_given(datasets, tokenizer):
    mixed = targets_of(datasets["mixed"], tokenizer)
    plain = targets_of(datasets["vertices"], tokenizer)
    assert (mixed.oriented - plain.oriented).norm(dim=-1).max() < 1e-3


def test_people_of_another_topology_are_refused(tmp_path, tokenizer):
    from training.data.dataset_format import write_dataset

    image = np.zeros((64, 64, 3), np.uint8)
    write_dataset(tmp_path, [{"image": "a.png", "box": [8, 8, 40, 40], "vertices": np.zeros((50, 3)).tolist()}],
                  {"a.png": image})
    with pytest.raises(ValueError, match="50 vertices.*train a tokenizer on this topology"):
        targets_of(tmp_path, tokenizer, rows=[0])


def test_mirror_permutation_of_the_shipped_mesh(tokenizer):
    from megaviewer.body.assets import BodyAssets

    template = BodyAssets.load(tokenizer.config.body).template
    perm = mirror_permutation(template)
    assert perm is not None and np.array_equal(perm[perm], np.arange(len(perm)))  # an involution
    mirrored = template.numpy() * [-1.0, 1.0, 1.0]
    assert np.abs(mirrored - template.numpy()[perm]).max() < 0.01
    assert mirror_permutation(template.numpy() + [0.05, 0.0, 0.0]) is None  # not symmetric about x = 0


def test_held_out_people_follow_the_table_or_a_fixed_tenth(datasets, tmp_path):
    reader = DatasetReader(datasets["vertices"])
    train_rows, val_rows = split_indices(reader, "train", "val")
    assert val_rows == [9, 10, 11] and train_rows == list(range(9))
    reader.records = [r.__class__(**{**r.__dict__, "split": None}) for r in reader.records]
    train_rows, val_rows = split_indices(reader, "train", "val")
    assert val_rows and not set(train_rows) & set(val_rows) and len(train_rows) + len(val_rows) == PEOPLE


# ------------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def trained(datasets, tmp_path_factory) -> dict:
    from training.cli import main

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for kinds in ("image", "image,keypoints"):
        out = root / kinds.replace(",", "_")
        assert main(["train", "--data", str(datasets["mixed"]), "--condition", kinds, "--out", str(out), *TRAIN]) == 0
        runs[kinds] = out / "final"
    return runs


@pytest.mark.slow
def test_two_ranks_train_on_the_dataset_under_torchrun(datasets, tmp_path):
    """``torchrun --nproc_per_node=2 -m training.cli train --data``: DDP (gloo on CPU), one final folder, metrics."""
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training.cli",
         "train", "--data", str(datasets["mixed"]), "--condition", "image,keypoints", "--out", str(out), *TRAIN],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    state = json.loads((out / "checkpoints" / "step-00000004" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    metrics = json.loads((out / "final" / "metrics.json").read_text())
    assert metrics["held_out_people"] == 3 and np.isfinite(metrics["deterministic"]["pa_mpjpe"])


@pytest.mark.parametrize("kinds", ["image", "image,keypoints"])
def test_a_short_run_trains_evaluates_and_records_what_it_reads(trained, kinds):
    final = trained[kinds]
    config = json.loads((final / "config.json").read_text())
    assert config["conditioning"]["kinds"] == kinds.split(",")
    assert config["conditioning"]["image_backbone"] == "resnet18" and config["conditioning"]["image_size"] == [64, 64]
    metrics = json.loads((final / "metrics.json").read_text())
    assert metrics["held_out_people"] == 3 and metrics["training_people"] == 9
    for key in ("pve", "mpjpe", "pa_mpjpe"):
        assert np.isfinite(metrics["deterministic"][key]) and metrics["deterministic"][key] > 0
        assert metrics["min_of_q"]["25"][key] <= metrics["min_of_q"]["1"][key] + 1e-6
    assert metrics["mean_of_q"]["25"]["sd"] > 0


def test_training_loss_goes_down_on_a_fixed_batch(datasets, tokenizer):
    """Proof the path learns: 30 steps on the same 4 people lower the loss by a quarter and more."""
    from dataclasses import replace

    from training.data.dataset import AugmentConfig
    from training.mega_dataset import DatasetTask, DatasetTrainConfig
    from training.mega_pretrain import build_mega

    torch.manual_seed(0)
    cfg = DatasetTrainConfig(data=str(datasets["vertices"]), preset="test_tiny", batch_size=4, workers=0,
                             augment=AugmentConfig(enabled=False), image_size=64)
    model = build_mega("test_tiny", tokenizer, kinds=("image",), head_dropout=0.0,
                       conditioning={"image_backbone": "resnet18", "image_size": (64, 64)})
    maker, regressor = make_target_maker(tokenizer, needs_params=False)
    reader = DatasetReader(cfg.data, ReaderConfig(crop_size=64))
    task = DatasetTask(model, reader, [0, 1, 2, 3], maker, tokenizer, regressor, replace(cfg, masking="full"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for step in range(30):
        loss, _ = task.training_step(model, step, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:3]), losses


def test_a_rerun_resumes_and_a_changed_dataset_is_refused(trained, datasets, tmp_path):
    from training.cli import main

    out = trained["image"].parent
    assert main(["train", "--data", str(datasets["mixed"]), "--condition", "image", "--out", str(out), *TRAIN]) == 0
    code = main(["train", "--data", str(datasets["params"]), "--condition", "image", "--out", str(out), *TRAIN])
    assert code == 2


def test_missing_folder_and_unsupported_conditioning_say_so(tmp_path, datasets, capsys):
    from training.cli import main

    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), *TRAIN]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert main(["train", "--data", str(datasets["mixed"]), "--condition", "keypoints,landmarks",
                 "--out", str(tmp_path / "l"), *TRAIN]) == 2
    err = capsys.readouterr().err
    assert "image or keypoints or image+keypoints; this one reads ['keypoints', 'landmarks']" in err
    assert not (tmp_path / "l").exists()  # refused before anything was written


# --------------------------------------------------------------------------------------------- inference
@pytest.mark.parametrize("kinds", ["image", "image,keypoints"])
def test_the_trained_model_recovers_people_in_the_engine(trained, kinds, datasets):
    from megaviewer.engine import Engine

    engine = Engine.from_pretrained(trained[kinds], device="cpu")
    assert engine.kinds == tuple(kinds.split(",")) and engine.label().startswith(f"{kinds.replace(',', '_')} (")
    sample = DatasetReader(datasets["mixed"], ReaderConfig(crop_size=64)).load(9)
    inputs = {"image": sample["image"]}
    if "keypoints" in kinds:
        inputs["keypoints"] = sample["keypoints"]
    result = engine.recover(**inputs)
    assert result.camera_vertices.shape == (1, engine.tokenizer.num_vertices, 3)
    assert torch.isfinite(result.camera_vertices).all()


def test_infer_runs_the_trained_model_on_a_dataset_photo(trained, datasets, tmp_path, capsys, monkeypatch):
    from megaviewer.cli import main
    from tests._gui_helpers import StubDetector

    monkeypatch.setattr("megaviewer.app.pipeline.load_detector", lambda *a, **k: StubDetector(1))
    photo = tmp_path / "person.png"
    cv2.imwrite(str(photo), cv2.imread(str(datasets["mixed"] / "images" / "00009.jpg")))
    code = main(["infer", str(photo), "--out", str(tmp_path / "out"), "--model", str(trained["image"]),
                 "--formats", "obj", "--device", "cpu", "--quiet"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "model: image (image, anny)" in out.out.splitlines()
    assert (tmp_path / "out" / "person_person0.obj").is_file()


def test_backbone_weights_come_from_the_local_file(datasets, tmp_path):
    """``--backbone-weights``: the run starts from the file's backbone (lr 0 keeps it; BN statistics still move)."""
    from megaviewer.io.checkpoint import load_checkpoint_tensors, save_tensors
    from megaviewer.model.conditioning import _create_backbone
    from training.cli import main

    torch.manual_seed(7)
    weights = {k: v.clone() for k, v in _create_backbone("resnet18", (64, 64)).state_dict().items()}
    weights["fc.weight"] = torch.zeros(1000, 512)  # a classifier the backbone has no slot for is dropped
    save_tensors(tmp_path / "resnet18.safetensors", weights)
    args = [a if a != "4" else "1" for a in TRAIN]  # one step
    assert main(["train", "--data", str(datasets["vertices"]), "--out", str(tmp_path / "run"), "--lr", "0",
                 "--backbone-weights", str(tmp_path / "resnet18.safetensors"), *args]) == 0
    saved = load_checkpoint_tensors(tmp_path / "run" / "final")
    prefix = next(k for k in saved if k.endswith("backbone.conv1.weight"))[: -len("conv1.weight")]
    for name in ("conv1.weight", "layer4.1.conv2.weight"):
        torch.testing.assert_close(saved[prefix + name], weights[name])


def test_synthetic_training_sends_image_models_to_a_dataset_at_once(tmp_path, capsys):
    from training.cli import main

    pool = tmp_path / "pool.safetensors"
    assert main(["train", "--condition", "image", "--out", str(tmp_path / "r"), "--pool", str(pool),
                 "--preset", "test_tiny", "--steps", "1"]) == 2
    assert "a model that reads images trains on photos, --data FOLDER" in capsys.readouterr().err
    assert not pool.exists()  # refused before minutes of posing meshes
