"""The decoder fine-tune sharpens what decodes the tokens and nothing else: every token id stays as it was."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from megaviewer.geometry import metrics
from megaviewer.io.checkpoint import CheckpointError, load_checkpoint_tensors
from megaviewer.paths import tokenizer_dir as shipped_tokenizer_dir
from megaviewer.tokenizer.cache import hierarchy_cache_path
from megaviewer.tokenizer.model import MeshVQVAE, TokenizerConfig
from training.data.meshes import SyntheticMeshes
from training.data.pool import tokenizer_fingerprint
from training.decoder import DecoderTask, DecoderTrainConfig, train_decoder, vertex_weights
from training.tokenizer import TokenizerTask, build_tokenizer, hands_feet_mask


@pytest.fixture(scope="module")
def meshes(anny_body):
    return SyntheticMeshes(anny_body)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, meshes):
    """A tiny tokenizer with a seeded codebook (random weights are enough: only the decoder trains)."""
    torch.manual_seed(0)
    model = build_tokenizer(TokenizerConfig(channels=[4, 4, 4], residual_scale=5.0))
    model.train()
    model(metrics.center(meshes.sample(8, torch.Generator().manual_seed(0)).vertices))
    model.quantizer.restart_dead_codes(torch.Generator().manual_seed(1))
    folder = model.save(tmp_path_factory.mktemp("tokenizer"))
    cached = hierarchy_cache_path(shipped_tokenizer_dir(), model.config.hierarchy_fingerprint)
    shutil.copyfile(cached, folder / cached.name)  # as a trained tokenizer's final/ keeps it
    return folder


def _config(out, init, **kw) -> DecoderTrainConfig:
    return DecoderTrainConfig(out_dir=str(out), init=str(init), steps=4, batch_size=4, lr=1e-2, warmup_steps=1,
                              chunk_size=8, chunk_reuse=1, ckpt_every=2, progress=False, **kw)


def test_vertex_weights_put_the_weight_on_hands_and_feet(anny_body):
    mask = hands_feet_mask(anny_body)
    weights = vertex_weights(anny_body, 8.0)
    assert weights.shape == (anny_body.num_vertices,) and weights.mean().item() == pytest.approx(1.0)
    assert torch.allclose(weights[mask] / weights[~mask].mean(), torch.tensor(8.0))
    assert torch.allclose(vertex_weights(anny_body, 1.0), torch.ones(anny_body.num_vertices))


def test_frozen_codes_forward_trains_only_the_decoder(tokenizer_dir, meshes):
    model = MeshVQVAE.from_pretrained(tokenizer_dir).train()
    codebook = model.quantizer.codebook.clone()
    target = metrics.center(meshes.sample(4, torch.Generator().manual_seed(5)).vertices)
    out = model(target, frozen_codes=True)
    assert torch.equal(out.ids, model.encode(target))
    out.vertices.norm(dim=-1).mean().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    assert torch.equal(model.quantizer.codebook, codebook)  # no EMA update in training mode either


def test_unweighted_decoder_loss_is_the_tokenizers_reconstruction_term(tokenizer_dir, meshes, anny_body):
    """With weight 1 the decoder's loss is the tokenizer's own reconstruction loss on the same batch."""
    from training.data.meshes import ChunkedMeshStream

    model = MeshVQVAE.from_pretrained(tokenizer_dir)
    stream = ChunkedMeshStream(meshes, 8, 1)
    task = DecoderTask(model, stream, 4, vertex_weights(anny_body, 1.0))
    loss, _ = task.training_step(model.eval(), 0, torch.Generator().manual_seed(3))
    original = TokenizerTask(model, meshes, 4, 100, stream=stream)
    reference, _ = original.training_step(model.eval(), 0, torch.Generator().manual_seed(3))
    commitment = model(metrics.center(stream.batch(0, 4, torch.Generator().manual_seed(3)))).commitment_loss
    assert loss.item() == pytest.approx((reference - commitment).item(), rel=1e-5)


def test_fine_tuned_decoder_keeps_every_token(tmp_path, tokenizer_dir, meshes):
    final = train_decoder(_config(tmp_path / "run", tokenizer_dir), meshes)
    assert final.name == "final" and any(final.glob("hierarchy-*.safetensors"))
    before, after = MeshVQVAE.from_pretrained(tokenizer_dir), MeshVQVAE.from_pretrained(final)
    assert tokenizer_fingerprint(before) == tokenizer_fingerprint(after)  # pools and MEGA models stay valid
    held = metrics.center(meshes.heldout(6).vertices)
    assert torch.equal(before.encode(held), after.encode(held))
    a, b = load_checkpoint_tensors(tokenizer_dir), load_checkpoint_tensors(final)
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(k.startswith("decoder.") for k in changed)


def test_decoder_run_resumes_bit_identical_and_refuses_other_settings(tmp_path, tokenizer_dir, meshes):
    whole = train_decoder(_config(tmp_path / "whole", tokenizer_dir), meshes)
    split = tmp_path / "split"
    assert train_decoder(_config(split, tokenizer_dir, stop_at=2), meshes).name == "step-00000002"
    with pytest.raises(CheckpointError, match="extremity_weight"):
        train_decoder(replace(_config(split, tokenizer_dir), extremity_weight=2.0), meshes)
    final = train_decoder(_config(split, tokenizer_dir), meshes)
    a, b = load_checkpoint_tensors(whole), load_checkpoint_tensors(final)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_decoder_command_reports_before_and_after(tmp_path, tokenizer_dir):
    import json

    from training.cli import main

    out = tmp_path / "cli"
    args = ["decoder", str(tokenizer_dir), "--out", str(out), "--steps", "2", "--batch-size", "2",
            "--chunk-size", "4", "--eval-count", "4", "--threads", "1"]
    assert main(args) == 0
    result = json.loads((out / "final" / "metrics.json").read_text())
    assert result["before"]["pve_mm"] != result["after"]["pve_mm"]
    assert result["before"]["codes_used"] == result["after"]["codes_used"]  # the same ids, decoded differently
