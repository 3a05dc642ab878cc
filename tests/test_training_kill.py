"""No lost work in real training: MEGA pre-training (``training/mega_pretrain.py``, ``test_tiny`` preset, a tiny
tokenizer and pool), run through ``python -m training.cli pretrain`` in a subprocess, is killed with SIGKILL
after its first checkpoint, restarted, and must end with exactly the weights of an uninterrupted run.

``test_training_loop.py`` proves the same for a toy MLP; this runs the real task end to end (tokenizer and
pool loading, the run-settings guard, masking, AdamW, checkpoint commit and pruning, TensorBoard purge).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from megaviewer.io.checkpoint import load_checkpoint_tensors
from megaviewer.tokenizer.model import TokenizerConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = 100


@pytest.mark.slow
def test_sigkill_during_mega_pretraining_then_restart_matches_uninterrupted_run(tmp_path):
    from training.data.pool import MeshPool, tokenizer_fingerprint
    from training.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer(TokenizerConfig(channels=[4, 4, 4]))
    tokenizer.save(tmp_path / "tokenizer")
    # Pre-training reads only the pool's token ids: 48 random "meshes" tagged with this tokenizer's fingerprint
    # stand in for posed Anny meshes (building those costs more than the whole test may).
    ids = torch.randint(0, tokenizer.config.num_codes, (48, tokenizer.num_tokens),
                        generator=torch.Generator().manual_seed(1))
    pool = MeshPool(ids, torch.zeros(48, 17, 3), torch.eye(3).expand(48, 3, 3).clone(), seed=1,
                    tokenizer_id=tokenizer_fingerprint(tokenizer))
    pool.save(tmp_path / "pool.safetensors")

    def command(out: Path, progress: bool = False) -> list[str]:
        return [sys.executable, "-m", "training.cli", "pretrain", "--out", str(out), "--preset", "test_tiny",
                "--steps", str(STEPS), "--batch-size", "8", "--warmup", "5", "--ckpt-every", "10",
                "--log-every", "10", "--pool", str(tmp_path / "pool.safetensors"), "--tokenizer",
                str(tmp_path / "tokenizer"), "--threads", "1", *([] if progress else ["--no-progress"])]

    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    children: list[subprocess.Popen] = []

    def start(out: Path) -> subprocess.Popen:
        handle = open(tmp_path / f"{out.name}.log", "wb")  # a file, not a pipe: a full pipe stalls the child
        children.append(subprocess.Popen(command(out), cwd=REPO_ROOT, env=env, stdout=handle, stderr=handle))
        handle.close()
        return children[-1]

    def log(out: Path) -> str:
        return (tmp_path / f"{out.name}.log").read_text(errors="replace")[-3000:]

    victim_out = tmp_path / "victim"
    try:
        reference = start(tmp_path / "ref")  # runs alongside, uninterrupted
        victim = start(victim_out)
        pointer = victim_out / "checkpoints" / "last.json"
        deadline = time.monotonic() + 600  # a guard against hangs only: a free machine needs ~10 s
        while not pointer.exists():
            if victim.poll() is not None:
                pytest.fail(f"pre-training exited before its first checkpoint: {log(victim_out)}")
            assert time.monotonic() < deadline, "no checkpoint appeared within 600 s"
            time.sleep(0.005)
        time.sleep(0.05)  # land between checkpoints, not on one
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
        killed_at = json.loads(pointer.read_text())["step"]
        assert 0 < killed_at < STEPS and not (victim_out / "final").exists(), "the kill did not land mid-run"

        # Restart with the progress bar on: its first frame shows the step the run resumed from.
        restart = subprocess.run(command(victim_out, progress=True), cwd=REPO_ROOT, env=env, capture_output=True,
                                 text=True, timeout=600)
        assert restart.returncode == 0, restart.stderr[-3000:]
        resumed_from = int(re.search(rf"(\d+)/{STEPS}", restart.stderr).group(1))
        assert resumed_from == killed_at, "the restart did not resume from the last checkpoint"
        assert "final checkpoint" in restart.stdout
        assert reference.wait(timeout=600) == 0, log(tmp_path / "ref")
    finally:
        for child in children:  # never leave a training process behind when an assertion fails
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
    ref = load_checkpoint_tensors(tmp_path / "ref" / "final")
    got = load_checkpoint_tensors(victim_out / "final")
    assert ref.keys() == got.keys()
    different = [name for name in ref if not torch.equal(ref[name], got[name])]
    assert not different, f"resumed run differs from the uninterrupted one in {different[:5]}"
    # Only the newest checkpoints are kept, and nothing half-written was left behind.
    names = sorted(p.name for p in (victim_out / "checkpoints").iterdir())
    assert names == ["last.json", f"step-{STEPS - 10:08d}", f"step-{STEPS:08d}"]
    assert not [p for p in victim_out.rglob(".*") if p.is_file()]
