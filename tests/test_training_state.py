"""A training state saved into a versioned folder continues, on a fresh run folder, bit for bit."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from megaviewer.io.checkpoint import load_checkpoint_tensors
from megaviewer.tokenizer.model import TokenizerConfig
from training.data.meshes import SyntheticMeshes
from training.loop import TRAINING_SUMMARY_NAME, find_last_checkpoint, training_record
from training.state import checkpoint_step, restore, snapshot
from training.tokenizer import TokenizerTrainConfig, train_tokenizer


@pytest.fixture(scope="module")
def meshes(anny_body):
    return SyntheticMeshes(anny_body)


def _config(out, **kw) -> TokenizerTrainConfig:
    """A tiny tokenizer whose mesh chunks change every two steps (8 meshes, batch 4, each drawn once)."""
    return TokenizerTrainConfig(out_dir=str(out), steps=6, batch_size=4, lr=3e-3, warmup_steps=1, ckpt_every=2,
                                restart_every=3, chunk_size=8, chunk_reuse=1, progress=False,
                                tokenizer=TokenizerConfig(channels=[4, 4, 4], residual_scale=5.0), **kw)


def test_saved_state_continues_bit_identical(tmp_path, meshes):
    whole = train_tokenizer(_config(tmp_path / "whole"), meshes)

    first = tmp_path / "first_machine"
    stopped = train_tokenizer(_config(first, stop_at=4), meshes)
    assert stopped.name == "step-00000004"
    state = tmp_path / "repo" / "training_state" / "tokenizer"
    saved = snapshot(first, state)
    assert saved is not None and checkpoint_step(saved) == 4
    assert snapshot(first, state) == saved  # nothing newer: left alone

    second = tmp_path / "second_machine"
    restored = restore(state, second)
    assert restored is not None and find_last_checkpoint(second) == restored
    assert restore(state, second) is None  # the run is already as far as the state
    final = train_tokenizer(_config(second), meshes)

    a, b = load_checkpoint_tensors(whole), load_checkpoint_tensors(final)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    seconds = json.loads((final / TRAINING_SUMMARY_NAME).read_text())["train_seconds"]
    saved_seconds = json.loads((saved / "trainer_state.json").read_text())["train_seconds"]
    assert seconds > saved_seconds > 0  # wall-clock time adds up across machines
    assert training_record(final) == (6, seconds) and training_record(saved) == (4, saved_seconds)


def test_different_chunks_give_different_weights(tmp_path, meshes):
    """The comparison above can fail: another data stream (seed) ends with other weights."""
    a = load_checkpoint_tensors(train_tokenizer(_config(tmp_path / "a"), meshes))
    b = load_checkpoint_tensors(train_tokenizer(replace(_config(tmp_path / "b"), seed=1), meshes))
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_finished_stage_is_saved_with_zero_moments_and_resumes_to_the_same_weights(tmp_path, meshes):
    """A finished stage's optimizer moments are never read again: the state keeps them as zeros (they cost git
    almost nothing), and the restored run ends with the same final weights."""
    from megaviewer.io.checkpoint import load_tensors
    from training.state import is_finished

    first = tmp_path / "first_machine"
    final = train_tokenizer(_config(first), meshes)
    last = find_last_checkpoint(first)
    assert is_finished(last) and checkpoint_step(last) == 6
    saved = snapshot(first, tmp_path / "state")
    kept, original = load_tensors(saved / "optimizer.safetensors"), load_tensors(last / "optimizer.safetensors")
    assert kept.keys() == original.keys()
    moments = [k for k in kept if k.endswith("exp_avg") or k.endswith("exp_avg_sq")]
    assert moments and all(not kept[k].any() for k in moments) and any(original[k].any() for k in moments)
    assert all(torch.equal(kept[k], original[k]) for k in kept if k not in moments)  # steps and learning rates

    second = tmp_path / "second_machine"
    restore(tmp_path / "state", second)
    again = train_tokenizer(_config(second), meshes)
    a, b = load_checkpoint_tensors(final), load_checkpoint_tensors(again)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unfinished_stage_keeps_its_moments(tmp_path, meshes):
    from megaviewer.io.checkpoint import load_tensors
    from training.state import is_finished

    run = tmp_path / "run"
    stopped = train_tokenizer(_config(run, stop_at=4), meshes)
    assert not is_finished(stopped)
    saved = snapshot(run, tmp_path / "state")
    kept, original = load_tensors(saved / "optimizer.safetensors"), load_tensors(stopped / "optimizer.safetensors")
    assert all(torch.equal(kept[k], original[k]) for k in original)
