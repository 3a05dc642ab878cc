"""MEGA pre-training, conditioned training, their CLI, DDP and the image path -- all on tiny models.

Never depends on the shipped tokenizer: a tiny random tokenizer (its codebook seeded from encoder outputs
so tokens vary) and a 64-mesh pool are built once per module.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from megaviewer.io.checkpoint import CheckpointError, load_checkpoint_tensors
from megaviewer.model import load_mega, save_mega
from training.data.pool import MeshPool
from training.loop import LoopConfig, train
from training.mega_conditioned import (
    ConditionedConfig,
    ConditionedTask,
    keypoint_regressor,
    load_pretrained,
    train_conditioned,
)
from training.mega_losses import (
    completed_tokens,
    decoded_joints,
    geometry_loss,
    hmr_losses,
    masked_token_loss,
    reprojection_loss,
)
from training.mega_pretrain import PretrainConfig, PretrainTask, build_mega, pretrain

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_CODES = 32


@pytest.fixture(scope="module")
def tiny_tokenizer(synthetic_meshes):
    from megaviewer.tokenizer.model import TokenizerConfig
    from training.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer(TokenizerConfig(channels=[8, 8, 8], num_codes=NUM_CODES))
    generator = torch.Generator().manual_seed(0)
    tokenizer.train()
    with torch.no_grad():  # one EMA pass records encoder outputs; the restart spreads codes over them
        tokenizer(synthetic_meshes.sample(64, generator).vertices)
    tokenizer.quantizer.restart_dead_codes(generator)
    return tokenizer.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def tiny_pool(tiny_tokenizer, synthetic_meshes) -> MeshPool:
    pool = MeshPool.build(tiny_tokenizer, synthetic_meshes, 64, seed=1, progress=False)
    assert pool.tokens.unique().numel() > 1
    return pool


def _loop(out: Path, steps: int, batch: int, lr: float = 3e-3) -> LoopConfig:
    return LoopConfig(out_dir=str(out), total_steps=steps, batch_size=batch, lr=lr, weight_decay=0.05,
                      warmup_steps=2, ckpt_every=steps, log_every=steps, progress=False,
                      find_unused_parameters=True)


def _mean_masked_ce(task: PretrainTask, seeds: range) -> float:
    task.model.eval()
    losses = []
    with torch.no_grad():
        for seed in seeds:
            tokens, visible = task.sample(torch.Generator().manual_seed(seed))
            out = task.model(tokens, visible)
            losses.append(float(masked_token_loss(out.logits, tokens, visible).loss))
    return sum(losses) / len(losses)


def test_pretrain_loss_decreases(tmp_path, tiny_tokenizer, tiny_pool):
    torch.manual_seed(0)
    model = build_mega("test_tiny", tiny_tokenizer, kinds=())
    assert model.conditioning is None and model.config.vocab == NUM_CODES
    task = PretrainTask(model, tiny_pool.tokens, batch_size=16)
    before = _mean_masked_ce(task, range(100, 108))
    final = train(task, _loop(tmp_path / "pre", 30, 16))
    after = _mean_masked_ce(task, range(100, 108))
    assert after < 0.7 * before, (before, after)
    assert load_mega(final).config.conditioning.kinds == ()


def test_token_loss_counts_masked_positions_only():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 54, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 16, (3, 54), generator=generator)
    visible = torch.rand(3, 54, generator=generator) < 0.4
    result = masked_token_loss(logits, targets, visible)
    manual = torch.nn.functional.cross_entropy(logits[~visible], targets[~visible])
    assert torch.allclose(result.loss, manual) and result.masked == int((~visible).sum())
    result.loss.backward()
    assert logits.grad[visible].abs().max() == 0
    assert logits.grad[~visible].abs().max() > 0
    # Whatever the logits say at visible positions, the loss does not move.
    shifted = logits.detach().clone()
    shifted[visible] += 100 * torch.randn_like(shifted[visible])
    assert torch.allclose(masked_token_loss(shifted, targets, visible).loss, result.loss)
    # Nothing masked: an exact, differentiable zero (the original skipped such steps).
    none = masked_token_loss(logits, targets, torch.ones_like(visible))
    assert none.loss.item() == 0.0 and none.masked == 0 and math.isnan(none.accuracy)
    none.loss.backward()
    # Reprojection input: GT where visible, argmax where masked.
    mixed = completed_tokens(targets, visible, logits)
    assert torch.equal(mixed[visible], targets[visible])
    assert torch.equal(mixed[~visible], logits.argmax(-1)[~visible])


def test_geometry_loss_is_zero_on_confident_truth_and_trains_logits_only(tiny_tokenizer, tiny_pool):
    targets = tiny_pool.tokens[:4]
    codes = tiny_tokenizer.config.num_codes
    visible = torch.zeros_like(targets, dtype=torch.bool)
    visible[:, ::3] = True
    confident = torch.nn.functional.one_hot(targets, codes).float() * 60.0  # softmax = one-hot
    logits = torch.randn(*targets.shape, codes, requires_grad=True)
    loss = geometry_loss(logits, targets, visible, tiny_tokenizer)
    assert loss.item() > 0  # (the untrained tiny decoder's meshes are small: compare relative sizes)
    assert geometry_loss(confident, targets, visible, tiny_tokenizer).item() < 1e-3 * loss.item()
    loss.backward()
    assert logits.grad[~visible].abs().sum() > 0  # masked positions get a geometric gradient
    assert logits.grad[visible].abs().sum() == 0  # visible ones are the GT code, not the prediction
    assert all(p.grad is None for p in tiny_tokenizer.parameters())
    # a prediction closer to the truth (in code space) scores better
    nearer = logits.detach() + confident * 0.05
    assert geometry_loss(nearer, targets, visible, tiny_tokenizer) < loss


def test_reprojection_on_a_subset_of_rows_scores_those_rows(tiny_tokenizer, tiny_pool):
    task = _conditioned_task(tiny_tokenizer, tiny_pool)
    obs, visible = task.sample(torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = task.model.eval()(obs.tokens, visible, {"keypoints": obs.keypoints})
    args = (out.logits, out.rot6d, out.cam, obs.tokens, visible, obs.rot_cam, obs.joints2d, obs.joints2d_conf,
            tiny_tokenizer, keypoint_regressor())
    _, full = hmr_losses(*args)
    _, sub = hmr_losses(*args, reprojection_rows=3)
    joints = decoded_joints(tiny_tokenizer, completed_tokens(obs.tokens[:3], visible[:3], out.logits[:3]),
                            keypoint_regressor())
    wanted = reprojection_loss(joints, out.rot6d[:3], out.cam[:3], obs.joints2d[:3], obs.joints2d_conf[:3])
    assert sub["reproj_l1"] == pytest.approx(float(wanted), rel=1e-5)
    assert sub["reproj_l1"] != pytest.approx(full["reproj_l1"], rel=1e-3)  # the other rows did count before
    assert sub["token_ce"] == pytest.approx(full["token_ce"])  # the token loss still sees the whole batch


def _conditioned_task(tokenizer, pool, seed: int = 0) -> ConditionedTask:
    torch.manual_seed(seed)
    model = build_mega("test_tiny", tokenizer)  # the preset's keypoint conditioning
    return ConditionedTask(model, pool, tokenizer, keypoint_regressor(), batch_size=8)


def test_conditioned_step_losses_and_gradient_routing(tiny_tokenizer, tiny_pool):
    task = _conditioned_task(tiny_tokenizer, tiny_pool)
    model = task.model.train()
    loss, logs = task.training_step(model, 0, torch.Generator().manual_seed(3))
    assert torch.isfinite(loss)
    for key in ("token_ce", "rot_mse", "reproj_l1"):
        assert math.isfinite(logs[key]) and logs[key] > 0, (key, logs)

    # The 2D loss alone: gradient reaches the rotation/camera head (and the conditioner feeding it), never
    # the token logits, because the mesh it projects is decoded without gradient.
    obs, visible = task.sample(torch.Generator().manual_seed(4))
    out = model(obs.tokens, visible, {"keypoints": obs.keypoints})
    out.logits.retain_grad()
    joints = (keypoint_regressor() @ tiny_tokenizer.decode(completed_tokens(obs.tokens, visible, out.logits)))
    model.zero_grad(set_to_none=True)
    reprojection_loss(joints, out.rot6d, out.cam, obs.joints2d, obs.joints2d_conf).backward()
    assert out.logits.grad is None
    assert model.rotcam.cam.weight.grad.abs().sum() > 0 and model.rotcam.rot.weight.grad.abs().sum() > 0
    assert model.head.weight.grad is None and model.token_emb.weight.grad is None
    assert all(p.grad is None for p in model.decoder.parameters())


def test_init_from_pretrained_loads_transformer_keeps_new_layers_fresh(tmp_path, tiny_tokenizer, tiny_pool):
    torch.manual_seed(1)
    pre = build_mega("test_tiny", tiny_tokenizer, kinds=())
    save_mega(tmp_path / "pre", pre)
    task = _conditioned_task(tiny_tokenizer, tiny_pool, seed=2)
    fresh = {k: v.clone() for k, v in task.model.state_dict().items()}
    report = load_pretrained(task.model, tmp_path / "pre")
    state = task.model.state_dict()
    assert torch.equal(state["encoder.0.attn.qkv.weight"], pre.state_dict()["encoder.0.attn.qkv.weight"])
    assert torch.equal(state["head.weight"], pre.head.weight)
    assert not torch.equal(state["head.weight"], fresh["head.weight"])
    new = [k for k in state if k.startswith(("conditioning.", "rotcam."))]
    assert new and sorted(new) == report.fresh
    assert all(torch.equal(state[k], fresh[k]) for k in new)
    # A transformer of another size is refused, not half-loaded.
    other = build_mega("test_tiny", tiny_tokenizer, dim=16)
    with pytest.raises(CheckpointError, match="dim"):
        load_pretrained(other, tmp_path / "pre")


def test_train_conditioned_starts_from_init_and_refuses_changed_settings(tmp_path, tiny_tokenizer, tiny_pool):
    torch.manual_seed(1)
    pre = build_mega("test_tiny", tiny_tokenizer, kinds=())
    save_mega(tmp_path / "pre", pre)
    cfg = ConditionedConfig(out_dir=str(tmp_path / "cond"), preset="test_tiny", steps=2, batch_size=4,
                            lr=1e-12, warmup_steps=0, ckpt_every=2, log_every=1, progress=False,
                            init=str(tmp_path / "pre"))
    final = train_conditioned(cfg, tokenizer=tiny_tokenizer, pool=tiny_pool)
    trained = load_checkpoint_tensors(final)
    for name in ("encoder.0.mlp.fc1.weight", "decoder.0.attn.proj.weight", "token_emb.weight"):
        assert torch.allclose(trained[name], pre.state_dict()[name], atol=1e-6), name
    assert "rotcam.cam.weight" in trained and load_mega(final).config.conditioning.kinds == ("keypoints",)
    changed = ConditionedConfig(**{**cfg.__dict__, "masking": "full"})
    with pytest.raises(CheckpointError, match="masking"):
        train_conditioned(changed, tokenizer=tiny_tokenizer, pool=tiny_pool)


def test_fresh_lr_scale_trains_only_the_new_tensors_faster(tmp_path, tiny_tokenizer, tiny_pool):
    """``fresh_lr_scale`` multiplies the learning rate of the tensors the init checkpoint lacks: at a vanishing
    base rate the transformer stays the pre-trained one while the new conditioner and head move."""
    torch.manual_seed(1)
    pre = build_mega("test_tiny", tiny_tokenizer, kinds=())
    save_mega(tmp_path / "pre", pre)
    common = dict(preset="test_tiny", steps=2, batch_size=4, lr=1e-12, warmup_steps=0, ckpt_every=2, log_every=1,
                  progress=False, init=str(tmp_path / "pre"))
    plain = load_checkpoint_tensors(train_conditioned(ConditionedConfig(out_dir=str(tmp_path / "plain"), **common),
                                                      tokenizer=tiny_tokenizer, pool=tiny_pool))
    final = train_conditioned(ConditionedConfig(out_dir=str(tmp_path / "scaled"), fresh_lr_scale=1e10, **common),
                              tokenizer=tiny_tokenizer, pool=tiny_pool)
    scaled = load_checkpoint_tensors(final)
    for name in ("encoder.0.mlp.fc1.weight", "decoder.0.attn.proj.weight", "token_emb.weight"):
        assert torch.allclose(scaled[name], pre.state_dict()[name], atol=1e-6), name
    assert not torch.allclose(scaled["rotcam.cam.weight"], plain["rotcam.cam.weight"], atol=1e-4)
    state = json.loads((tmp_path / "scaled" / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    scales = state["loop_config"]["lr_scale"]
    assert scales and set(scales.values()) == {1e10}
    assert all(name.startswith(("conditioning.", "rotcam.")) for name in scales)


def test_pretrain_full_masking_and_stop_at(tmp_path, tiny_tokenizer, tiny_pool):
    cfg = PretrainConfig(out_dir=str(tmp_path / "pre"), preset="test_tiny", steps=4, batch_size=4, lr=1e-3,
                         warmup_steps=0, ckpt_every=2, log_every=1, progress=False, masking="full", stop_at=2)
    first = pretrain(cfg, tokenizer=tiny_tokenizer, pool=tiny_pool)
    assert first.name == "step-00000002"
    cfg.stop_at = None
    assert pretrain(cfg, tokenizer=tiny_tokenizer, pool=tiny_pool).name == "final"


def test_cli_pretrain_then_train_builds_and_reuses_the_pool(tmp_path, tiny_tokenizer, capsys):
    from training.cli import main

    tiny_tokenizer.save(tmp_path / "tok")
    pool = tmp_path / "pool.safetensors"
    common = ["--preset", "test_tiny", "--steps", "3", "--batch-size", "4", "--pool", str(pool),
              "--tokenizer", str(tmp_path / "tok"), "--warmup", "1", "--lr", "1e-3", "--no-progress"]
    assert main(["pretrain", "--out", str(tmp_path / "pre"), "--pool-size", "16", *common]) == 0
    assert pool.exists() and len(MeshPool.load(pool)) == 16
    assert main(["train", "--out", str(tmp_path / "hmr"), "--init", str(tmp_path / "pre" / "final"),
                 "--masking", "linear", "--fresh-lr-scale", "5", *common]) == 0
    assert json.loads((tmp_path / "hmr" / "run_config.json").read_text())["fresh_lr_scale"] == 5.0
    printed = capsys.readouterr().out
    assert f"final checkpoint: {tmp_path / 'hmr' / 'final'}" in printed
    assert load_mega(tmp_path / "hmr" / "final").rotcam is not None
    # An explicit pool size that disagrees with the cached pool is an error, not a silent reuse.
    assert main(["pretrain", "--out", str(tmp_path / "pre2"), "--pool-size", "32", *common]) == 2

    # The trained model scored as the shipped ones are: network alone, engine output, hard poses, APD.
    report = tmp_path / "eval.json"
    assert main(["evaluate", str(tmp_path / "hmr" / "final"), "--tokenizer", str(tmp_path / "tok"),
                 "--pretrained", str(tmp_path / "pre" / "final"), "--people", "6", "--hard-people", "4",
                 "--json", str(report), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "network alone:" in printed and "as the engine returns it:" in printed and "hard poses:" in printed
    result = json.loads(report.read_text())
    assert result["count"] == 6 and result["engine"]["count"] == 6 and result["hard_poses"]["count"] == 4
    assert result["placement"] == "network" and result["engine"]["placement"] == "engine"
    assert result["unconditional_apd_cm"] > 0 and math.isfinite(result["deterministic"]["pa_mpjpe"])
    assert result["expected_codes"] and result["engine"]["expected_codes"]  # decoded as the engine decodes
    # the fit moved the argmax codes' meshes (this barely trained model's expected codes decode to an average body
    # that the fit may leave as it is)
    assert result["engine"]["deterministic_argmax_codes"] != result["deterministic_argmax_codes"]
    # A tokenizer whose codebook the model was not trained on is refused with the reason.
    other = tmp_path / "tok64"
    from training.tokenizer import build_tokenizer

    build_tokenizer(type(tiny_tokenizer.config)(channels=[8, 8, 8], num_codes=2 * NUM_CODES)).save(other)
    assert main(["evaluate", str(tmp_path / "hmr" / "final"), "--tokenizer", str(other), "--people", "2"]) == 2
    assert "the tokenizer" in capsys.readouterr().err
    # An output path that cannot be written is refused before the evaluation runs.
    assert main(["evaluate", str(tmp_path / "hmr" / "final"), "--tokenizer", str(tmp_path / "tok"), "--people", "2",
                 "--json", str(tmp_path / "no_such_folder" / "eval.json")]) == 2
    assert "no_such_folder" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_ranks_pretrain_cli(tmp_path, tiny_tokenizer, tiny_pool):
    tiny_tokenizer.save(tmp_path / "tok")
    tiny_pool.save(tmp_path / "pool.safetensors")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
         "training.cli", "pretrain", "--out", str(out), "--preset", "test_tiny", "--steps", "4",
         "--batch-size", "4", "--pool", str(tmp_path / "pool.safetensors"), "--tokenizer",
         str(tmp_path / "tok"), "--ckpt-every", "2", "--log-every", "1", "--warmup", "1", "--no-progress"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert (out / "final" / "model.safetensors").is_file()
    state = json.loads((out / "checkpoints" / "step-00000004" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    assert load_mega(out / "final").conditioning is None
    assert result.stdout.count("final checkpoint") == 1  # rank 0 only


@pytest.mark.slow
def test_image_path_small(tmp_path, tiny_tokenizer, synthetic_meshes):
    from training.image_path import train_image_path

    result = train_image_path(tmp_path / "img", steps=20, num_images=16, seed=0, tokenizer=tiny_tokenizer,
                              preset="test_tiny", image_size=64, batch_size=8, meshes=synthetic_meshes,
                              progress=False)
    for stage in ("initial", "final"):
        assert all(math.isfinite(v) for v in result[stage].values()), result
    assert result["final"]["token_ce"] < result["initial"]["token_ce"]
    assert list((tmp_path / "img").glob("images-16x64-seed0.safetensors"))
    assert load_mega(result["final_dir"]).config.conditioning.image_backbone == "resnet18"


def test_train_conditioned_carries_the_trained_lifter_frozen(tmp_path, tiny_tokenizer, tiny_pool):
    from megaviewer.model.lifter import LifterConfig, load_lifter
    from training.evaluate import landmark_observations
    from training.lifter import LifterTrainConfig, train_lifter

    lifter_dir = train_lifter(LifterTrainConfig(out_dir=str(tmp_path / "lifter"), steps=3, batch_size=8,
                                                lifter=LifterConfig(hidden=16, depth=1), progress=False), tiny_pool)
    torch.manual_seed(2)
    save_mega(tmp_path / "pre", build_mega("test_tiny", tiny_tokenizer, kinds=()))
    cfg = ConditionedConfig(out_dir=str(tmp_path / "cond"), preset="test_tiny", steps=3, batch_size=4, lr=1e-2,
                            warmup_steps=0, ckpt_every=3, log_every=1, progress=False, init=str(tmp_path / "pre"),
                            kinds=("keypoints", "landmarks"), observation=landmark_observations(0.5),
                            lifter=str(lifter_dir))
    model = load_mega(train_conditioned(cfg, tokenizer=tiny_tokenizer, pool=tiny_pool))
    trained_lifter = load_lifter(lifter_dir)
    assert model.config.conditioning.landmark_lifter_hidden == 16
    for name, value in trained_lifter.state_dict().items():  # loaded after the init, and never trained
        assert torch.equal(model.conditioning.lifter.state_dict()[name], value), name
    other = shutil.copytree(lifter_dir, tmp_path / "other_lifter")
    with pytest.raises(CheckpointError, match="other_lifter"):  # a resume with another lifter is refused
        train_conditioned(ConditionedConfig(**{**cfg.__dict__, "lifter": str(other)}),
                          tokenizer=tiny_tokenizer, pool=tiny_pool)


def _polish_recipe():
    """The default recipe shrunk to the tiny model: two-step rounds of its last warm restart on a 64-mesh pool."""
    from dataclasses import replace

    from training.recipes import get_recipe

    default = get_recipe("default")
    return replace(default, mega=replace(default.mega, preset="test_tiny", pool_size=64, batch_size=4,
                                         polish_steps=2, ckpt_every=2, tail_warmup_steps=1, reprojection_rows=2))


def _installed_landmark_model(folder: Path, tokenizer, recipe, seed: int = 0) -> Path:
    """A landmark model carrying a keypoint lifter, installed with the metrics a recipe run records."""
    from megaviewer.model.lifter import KeypointLifter, LifterConfig
    from training.lifter import lifter_conditioning

    torch.manual_seed(seed)
    lifter = KeypointLifter(LifterConfig(hidden=8, depth=1))
    model = build_mega("test_tiny", tokenizer, kinds=("keypoints", "landmarks"),
                       conditioning=lifter_conditioning(lifter))
    save_mega(folder, model)
    tokenizer.save(folder / "tokenizer")
    recorded = json.loads(json.dumps(recipe.to_dict()))
    del recorded["mega"]["polish_rounds"]  # a model recorded before the setting ran one round
    (folder / "metrics.json").write_text(json.dumps({"recipe": recorded, "train_hours": {"conditioned": 0.5}}))
    return folder


def _runs_with_pool(folder: Path, pool: MeshPool) -> Path:
    folder.mkdir(parents=True)
    pool.save(folder / "pool.safetensors")
    return folder


def test_polish_rounds_continue_an_installed_model_across_machines(tmp_path, tiny_tokenizer, tiny_pool, monkeypatch):
    """Rounds of the last warm restart added to an installed model: each from the round before with its own data
    seed, the latest finished round kept (float16) in the state folder, and a fresh machine continuing from it."""
    from megaviewer.io.checkpoint import load_tensors
    from training import continue_polish as cp

    recipe = _polish_recipe()
    installed = _installed_landmark_model(tmp_path / "installed", tiny_tokenizer, recipe)
    state = tmp_path / "state"
    whole = cp.continue_polish(recipe, _runs_with_pool(tmp_path / "a", tiny_pool), 3, model_dir=installed,
                               state_dir=state, threads=1)
    assert whole == tmp_path / "a" / "polish_3" / "final"
    seeds = [json.loads(next((tmp_path / "a" / f"polish_{r}").glob("checkpoints/*/trainer_state.json")).read_text()
                        )["loop_config"]["seed"] for r in (2, 3)]
    assert seeds == [1, 2]
    assert sorted(p.name for p in state.iterdir()) == ["polish_3"]  # only the latest round is kept
    kept = state / "polish_3"
    record = json.loads((kept / cp.ROUND_FILE).read_text())
    assert (record["round"], record["continues"]) == (3, cp.weights_digest(installed))
    assert set(record["train_hours"]) == {"warm restart 4", "warm restart 5"}
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(str(kept / "model.safetensors")).values()} == {torch.float16}

    # One machine stops after round 2; a fresh one continues from the state alone, without retraining round 2.
    other = tmp_path / "state_b"
    two = cp.continue_polish(recipe, _runs_with_pool(tmp_path / "b", tiny_pool), 2, model_dir=installed,
                             state_dir=other, threads=1)
    first_round = load_checkpoint_tensors(tmp_path / "a" / "polish_2" / "final")
    assert all(torch.equal(v, first_round[k]) for k, v in load_checkpoint_tensors(two).items())  # deterministic
    third = cp.continue_polish(recipe, _runs_with_pool(tmp_path / "c", tiny_pool), 3, model_dir=installed,
                               state_dir=other, threads=1)
    assert not (tmp_path / "c" / "polish_2").exists() and third.parent.name == "polish_3"
    assert sorted(p.name for p in other.iterdir()) == ["polish_3"]
    assert set(json.loads((other / "polish_3" / cp.ROUND_FILE).read_text())["train_hours"]) == {
        "warm restart 4", "warm restart 5"}  # the hours of round 2, trained on the other machine, carried over

    with pytest.raises(ValueError, match="already ran 1 round"):
        cp.continue_polish(recipe, tmp_path / "d", 1, model_dir=installed)
    # A state that continues other weights than the installed ones is refused, not silently mixed in.
    _installed_landmark_model(installed, tiny_tokenizer, recipe, seed=1)
    with pytest.raises(ValueError, match="continues other weights"):
        cp.continue_polish(recipe, tmp_path / "e", 4, model_dir=installed, state_dir=other)

    # Installing scores the last round and records the recipe with its rounds and every stage's hours.
    scored = {}

    def fake_score(grown, runs, final, tokenizer, pretrained, times, hours):
        scored.update(final=final, rounds=grown.mega.polish_rounds, hours=hours)
        return {"recipe": grown.to_dict(), "train_hours": hours}

    monkeypatch.setattr(cp, "score_run", fake_score)
    done = cp.continue_polish(recipe, _runs_with_pool(tmp_path / "f", tiny_pool), 2, model_dir=installed,
                              threads=1, install=True)
    metrics = json.loads((installed / "metrics.json").read_text())
    assert scored["final"] == done and metrics["recipe"]["mega"]["polish_rounds"] == 2 == cp.installed_rounds(installed)
    assert set(metrics["train_hours"]) == {"conditioned", "warm restart 4"}
    shipped = load_tensors(installed / "model.safetensors")
    assert all(torch.equal(shipped[k], v.half().float() if v.is_floating_point() else v)
               for k, v in load_checkpoint_tensors(done).items())
