"""Tests for the generic training loop: LR schedule, exact resume (in-process, after SIGKILL), refusal of a
changed task config, and a two-process DDP smoke run. All on CPU with a tiny MLP task."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from megaviewer.io.checkpoint import CheckpointError, load_checkpoint_tensors
from tests._tiny_task import TinyTask, weights_hash
from training.loop import LoopConfig, find_last_checkpoint, train
from training.optim import lr_at

REPO_ROOT = Path(__file__).resolve().parents[1]


def _cfg(out: Path, total: int = 60, **overrides) -> LoopConfig:
    values = dict(out_dir=str(out), total_steps=total, batch_size=8, lr=1e-2, warmup_steps=5, ckpt_every=10,
                  log_every=5, progress=False)
    values.update(overrides)
    return LoopConfig(**values)


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def test_lr_schedule_warmup_cosine_and_constant(tmp_path):
    cfg = _cfg(tmp_path, total=101, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)  # warmup never wastes a zero-lr step
    assert lr_at(4, cfg) == pytest.approx(0.5)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55)  # halfway through the cosine
    assert lr_at(100, cfg) == pytest.approx(0.1)  # the last step reaches min_lr_ratio * lr exactly
    assert lr_at(500, cfg) == pytest.approx(0.1)
    values = [lr_at(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    constant = _cfg(tmp_path, total=101, lr=1.0, warmup_steps=4, schedule="constant")
    assert [lr_at(s, constant) for s in (0, 3, 4, 100)] == pytest.approx([0.25, 1.0, 1.0, 1.0])
    no_warmup = _cfg(tmp_path, total=3, lr=2.0, warmup_steps=0, min_lr_ratio=0.0)
    assert [lr_at(s, no_warmup) for s in range(3)] == pytest.approx([2.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="schedule"):
        _cfg(tmp_path, schedule="linear")
    assert math.isfinite(lr_at(0, _cfg(tmp_path, total=1)))


def test_resume_after_stop_and_crash_matches_uninterrupted_run(tmp_path):
    reference_task = TinyTask()
    final = train(reference_task, _cfg(tmp_path / "ref", progress=True))
    assert final == tmp_path / "ref" / "final"
    reference = load_checkpoint_tensors(final)
    _assert_same_weights(reference, reference_task.model.state_dict())
    assert int(reference_task.restarts) == 60 // 7

    # (1) stop at step 30 (a preempted job slot), then continue with a freshly (differently) initialised task.
    out = tmp_path / "stopped"
    stopped = train(TinyTask(), _cfg(out, stop_at=30))
    assert stopped == out / "checkpoints" / "step-00000030" and not (out / "final").exists()
    # Simulate a kill while step 40 was being written: a garbage, uncommitted folder must be ignored.
    partial = out / "checkpoints" / "step-00000040"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half a file")
    (partial / ".optimizer.safetensors.abc.safetensors").write_bytes(b"stray temp")
    resumed_task = TinyTask(init_seed=99)
    train(resumed_task, _cfg(out))
    _assert_same_weights(reference, load_checkpoint_tensors(out / "final"))
    assert int(resumed_task.restarts) == int(reference_task.restarts)  # extra_state was restored

    # keep_last=2 prunes older folders; last.json points at the newest; only safetensors + JSON on disk.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.json", "step-00000050",
                                                                        "step-00000060"]
    assert find_last_checkpoint(out) == out / "checkpoints" / "step-00000060"
    assert not (out / "checkpoints" / "step-00000060" / ".optimizer.safetensors.abc.safetensors").exists()
    suffixes = {p.suffix for p in out.rglob("*") if p.is_file() and p.parent.name != "tb"}
    assert suffixes == {".json", ".safetensors"}

    # (2) an exception mid-run (step 35): the step-30 checkpoint stays committed and resume is exact.
    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(TinyTask(fail_at=35), _cfg(out))
    assert json.loads((out / "checkpoints" / "last.json").read_text())["step"] == 30
    train(TinyTask(), _cfg(out))
    _assert_same_weights(reference, load_checkpoint_tensors(out / "final"))


def test_lr_scale_multiplies_the_named_parameters_rate_and_resumes_exactly(tmp_path):
    """``LoopConfig.lr_scale`` (the fresh conditioners of a warm-started MEGA): the named parameters follow the
    schedule times their factor, the others the schedule; a run with scaled parameters resumes bit-identically;
    a name the model lacks or a factor that is not positive is refused."""
    from training.optim import make_optimizer, set_lr

    task = TinyTask()
    scaled = {"3.weight": 5.0, "3.bias": 5.0}
    cfg = _cfg(tmp_path / "ref", lr_scale=scaled)
    optimizer = make_optimizer(task.model, cfg)
    set_lr(optimizer, 0.02)
    names = {id(p): n for n, p in task.model.named_parameters()}
    rate = {names[id(p)]: g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert rate == pytest.approx({"0.weight": 0.02, "0.bias": 0.02, "3.weight": 0.1, "3.bias": 0.1})
    decayed = make_optimizer(task.model, _cfg(tmp_path, lr_scale=scaled, weight_decay=0.01))
    assert [(g["lr_scale"], g["weight_decay"]) for g in decayed.param_groups] == [(1.0, 0.01), (1.0, 0.0),
                                                                                   (5.0, 0.01), (5.0, 0.0)]
    plain = make_optimizer(TinyTask().model, _cfg(tmp_path / "plain"))
    assert [len(g["params"]) for g in plain.param_groups] == [2, 2]  # unscaled runs keep their two groups

    reference = load_checkpoint_tensors(train(TinyTask(), cfg))
    different = load_checkpoint_tensors(train(TinyTask(), _cfg(tmp_path / "unscaled")))
    assert not torch.equal(reference["3.weight"], different["3.weight"])
    out = tmp_path / "stopped"
    train(TinyTask(), _cfg(out, stop_at=30, lr_scale=scaled))
    train(TinyTask(init_seed=7), _cfg(out, lr_scale=scaled))
    _assert_same_weights(reference, load_checkpoint_tensors(out / "final"))
    with pytest.raises(ValueError, match="names no parameter"):
        make_optimizer(TinyTask().model, _cfg(tmp_path, lr_scale={"9.weight": 2.0}))
    with pytest.raises(ValueError, match="must be > 0"):
        _cfg(tmp_path, lr_scale={"3.weight": 0.0})


def test_resume_with_changed_task_config_is_refused(tmp_path):
    train(TinyTask(hidden=8), _cfg(tmp_path, total=20, stop_at=10))
    with pytest.raises(CheckpointError, match=r"different task config.*hidden: 8 -> 16"):
        train(TinyTask(hidden=16), _cfg(tmp_path, total=20))
    # A changed loop setting that alters the maths is allowed but warned about.
    with pytest.warns(UserWarning, match="lr"):
        train(TinyTask(hidden=8), _cfg(tmp_path, total=20, lr=5e-3, stop_at=12))


@pytest.mark.slow
def test_sigkill_mid_run_then_restart_matches_uninterrupted_run(tmp_path):
    def command(out: Path, sleep: float) -> list[str]:
        return [sys.executable, "-m", "tests._tiny_task", "--out", str(out), "--steps", "100",
                "--ckpt-every", "10", "--sleep", str(sleep)]

    env = _subprocess_env()
    reference = subprocess.Popen(command(tmp_path / "ref", 0.0), cwd=REPO_ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim_out = tmp_path / "victim"
    victim = subprocess.Popen(command(victim_out, 0.02), cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = victim_out / "checkpoints" / "last.json"
    deadline = time.monotonic() + 60
    while not pointer.exists():
        assert victim.poll() is None, "the training subprocess exited before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared within 60 s"
        time.sleep(0.01)
    time.sleep(0.13)  # land somewhere mid-run, not right at the checkpoint
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    killed_at = json.loads(pointer.read_text())["step"]
    assert 0 < killed_at < 100 and not (victim_out / "final").exists(), "the kill did not land mid-run"

    restart = subprocess.run(command(victim_out, 0.0), cwd=REPO_ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
    assert restart.returncode == 0, restart.stderr[-3000:]
    _, ref_err = reference.communicate(timeout=120)
    assert reference.returncode == 0, ref_err.decode()[-3000:]
    _assert_same_weights(load_checkpoint_tensors(tmp_path / "ref" / "final"),
                         load_checkpoint_tensors(victim_out / "final"))


@pytest.mark.slow
def test_ddp_two_ranks_gloo_smoke(tmp_path):
    hashes = tmp_path / "hashes"
    hashes.mkdir()
    out = tmp_path / "ddp"
    env = _subprocess_env() | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "tests._tiny_task", "--out", str(out), "--steps", "8", "--ckpt-every", "4",
         "--log-every", "2", "--hash-dir", str(hashes)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "config.json").is_file()
    assert json.loads((out / "checkpoints" / "last.json").read_text())["step"] == 8
    state = json.loads((out / "checkpoints" / "step-00000008" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    rank0, rank1 = (hashes / "rank0.sha256").read_text(), (hashes / "rank1.sha256").read_text()
    assert rank0 == rank1, "DDP ranks ended with different weights"
    saved = TinyTask()
    saved.model.load_state_dict(load_checkpoint_tensors(out / "final"))
    assert weights_hash(saved.model) == rank0
