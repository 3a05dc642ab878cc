"""Mesh-VQ-VAE: hierarchy, layers, quantiser restart, round trip of the shipped tokenizer, resume."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest
import torch

from megaviewer.geometry import metrics
from megaviewer.tokenizer.hierarchy import build_hierarchy
from megaviewer.tokenizer.layers import VcConv
from megaviewer.tokenizer.model import MeshVQVAE, TokenizerConfig
from megaviewer.tokenizer.quantizer import EMAQuantizer

LEVELS = [1229, 400, 128, 54]


@pytest.fixture(scope="module")
def hierarchy(body_assets):
    return build_hierarchy(body_assets.template.numpy(), body_assets.faces.numpy(), LEVELS)


def test_hierarchy_shapes_and_tables(hierarchy, body_assets):
    assert hierarchy.level_sizes == LEVELS
    assert [len(v) for v in hierarchy.level_vertices] == LEVELS
    # Level vertices are nested subsets of level 0, sorted by level-0 id (token order).
    for coarse in hierarchy.level_vertices[1:]:
        assert np.all(np.diff(coarse) > 0)
    for level, table in enumerate(hierarchy.conv):
        assert table.index.shape[0] == LEVELS[level]
        assert np.array_equal(table.index[:, 0], np.arange(LEVELS[level]))  # self first
        assert np.all(table.index[~table.mask] == LEVELS[level])  # padding points at the zero row
    for level, (pool, unpool) in enumerate(zip(hierarchy.pool, hierarchy.unpool, strict=True)):
        assert pool.index.shape[0] == LEVELS[level + 1] and pool.num_in == LEVELS[level]
        assert unpool.index.shape[0] == LEVELS[level] and unpool.num_in == LEVELS[level + 1]
        # Every fine vertex feeds at least one coarse vertex, every fine vertex reads some centre.
        covered = np.unique(pool.index[pool.mask])
        assert np.array_equal(covered, np.arange(LEVELS[level]))
        assert unpool.mask[:, 0].all()
        assert np.all(unpool.index[unpool.mask] < LEVELS[level + 1])
    assert hierarchy.pool[0].mean_size > 5 and hierarchy.conv[0].mean_size > 5


def test_hierarchy_is_deterministic(hierarchy, body_assets):
    again = build_hierarchy(body_assets.template.numpy(), body_assets.faces.numpy(), LEVELS)
    assert again.fingerprint == hierarchy.fingerprint
    for a, b in zip(hierarchy.pool, again.pool, strict=True):
        assert np.array_equal(a.index, b.index)


def _region(body_assets) -> np.ndarray:
    """Two separate blobs at the extremes of the template (stand-ins for a hand and a foot)."""
    template = body_assets.template.numpy()
    return (template[:, 1] > np.quantile(template[:, 1], 0.97)) | (template[:, 1] < np.quantile(template[:, 1], 0.03))


def test_inflated_region_gets_more_coarse_vertices(hierarchy, body_assets):
    from megaviewer.tokenizer.hierarchy import inflate_region, mesh_fingerprint

    template, faces = body_assets.template.numpy(), body_assets.faces.numpy()
    region = _region(body_assets)
    points = inflate_region(template, faces, region, 2.0)
    assert np.array_equal(points[~region], template[~region])
    assert np.ptp(points[region], axis=0).max() > np.ptp(template[region], axis=0).max()
    dense = build_hierarchy(template, faces, LEVELS, region, 2.0)
    for even_ids, dense_ids in zip(hierarchy.level_vertices[1:], dense.level_vertices[1:], strict=True):
        assert region[dense_ids].sum() > region[even_ids].sum()
    assert dense.fingerprint != hierarchy.fingerprint
    assert dense.fingerprint == mesh_fingerprint(faces, len(template), LEVELS, 2.0)
    assert hierarchy.fingerprint == mesh_fingerprint(faces, len(template), LEVELS)  # the even layout's, as always
    with pytest.raises(ValueError, match="region"):
        build_hierarchy(template, faces, LEVELS, None, 2.0)


def test_checkpoint_recovers_level_vertices(body_assets, tmp_path):
    """A saved tokenizer knows where its tokens sit (the app's token regions) from its own tables."""
    template, faces = body_assets.template.numpy(), body_assets.faces.numpy()
    dense = build_hierarchy(template, faces, LEVELS, _region(body_assets), 2.0)
    model = MeshVQVAE(TokenizerConfig(channels=[4, 4, 4], extremity_density=2.0), dense, body_assets.template)
    assert np.array_equal(model.token_vertices, dense.level_vertices[-1])
    model.save(tmp_path / "tok")
    loaded = MeshVQVAE.from_pretrained(tmp_path / "tok")
    assert np.array_equal(loaded.token_vertices, dense.level_vertices[-1])
    assert loaded.config.extremity_density == 2.0 and loaded.config.hierarchy_fingerprint == dense.fingerprint


def _slow_conv(layer: VcConv, x: torch.Tensor) -> torch.Tensor:
    """Obvious per-vertex, per-neighbour reference of the conv branch (batch-major input)."""
    w = layer.coeffs.shape[-1]
    basis = layer.basis.view(w, layer.out_channels, layer.in_channels)
    out = torch.zeros(x.shape[0], layer.num_out, layer.out_channels)
    for o in range(layer.num_out):
        for m in range(layer.index.shape[1]):
            if layer.mask[o, m]:
                kernel = (layer.coeffs[o, m][:, None, None] * basis).sum(0)
                out[:, o] += x[:, layer.index[o, m]] @ kernel.T
    return torch.nn.functional.elu(out + layer.bias)


def test_vcconv_matches_slow_reference(hierarchy):
    torch.manual_seed(0)
    layer = VcConv(hierarchy.conv[3], 5, 4, 3, 0.0, activation=True)
    x = torch.randn(2, 54, 5)
    fast = layer(x.transpose(0, 1)).transpose(0, 1)
    assert torch.allclose(fast, _slow_conv(layer, x), atol=1e-5)


def test_pool_is_normalised_average(hierarchy):
    layer = VcConv(hierarchy.pool[2], 3, 3, 0, 1.0, activation=False)
    ones = torch.ones(128, 2, 3)
    assert torch.allclose(layer(ones), torch.ones(54, 2, 3), atol=1e-5)  # weights sum to one


def test_quantizer_dead_code_restart():
    torch.manual_seed(0)
    q = EMAQuantizer(num_codes=16, dim=3, restart_threshold=0.5)
    q.train()
    latents = torch.randn(4, 10, 3) * 0.01 + 5.0  # far from every N(0,1) code
    q(latents)
    used = torch.unique(q.nearest(latents))
    assert len(used) <= 2  # collapsed onto one or two codes
    restarted = q.restart_dead_codes(torch.Generator().manual_seed(0))
    assert restarted >= 14
    # Revived codes now sit on the data, so the batch spreads over many codes.
    assert (q.codebook[q.ema_count == 1.0] - 5.0).abs().max() < 0.1
    assert len(torch.unique(q.nearest(latents))) > len(used)


def test_quantizer_without_dead_codes_restarts_nothing():
    q = EMAQuantizer(num_codes=8, dim=2, restart_threshold=0.0)
    q.train()
    q(torch.randn(2, 5, 2))
    assert q.restart_dead_codes() == 0


def test_tiny_tokenizer_batch_agnostic_and_half(hierarchy):
    torch.manual_seed(0)
    model = MeshVQVAE(TokenizerConfig(channels=[4, 8, 8]), hierarchy).eval()
    verts = torch.randn(3, 1229, 3) * 0.3
    ids = model.encode(verts)
    assert ids.shape == (3, 54) and ids.dtype == torch.long
    single = torch.cat([model.encode(verts[i:i + 1]) for i in range(3)])
    assert torch.equal(ids, single)
    out = model.decode(ids)
    assert out.shape == (3, 1229, 3)
    assert torch.allclose(out.mean(1), torch.zeros(3, 3), atol=1e-5)
    half = MeshVQVAE(TokenizerConfig(channels=[4, 8, 8]), hierarchy)
    half.load_state_dict(model.state_dict())
    half = half.half().eval()
    assert torch.allclose(half.decode(ids).float(), out, atol=2e-3)
    with torch.no_grad():  # the inference route in half precision: cached kernels (no sparse half products)
        assert torch.allclose(half.decode(ids).float(), out, atol=2e-3)
    assert all("kernel" in layer._inference_weights() for layer in half.decoder if hasattr(layer, "coeffs"))


def test_inference_route_matches_training_route(hierarchy):
    """Autograd off, any batch takes the cached channel-major route (``VcConv.infer``); it must
    give the trainable route's numbers, and a parameter change must refresh its cached kernels."""
    from megaviewer.tokenizer.layers import BATCHED_BASIS_MIN_BATCH

    torch.manual_seed(1)
    model = MeshVQVAE(TokenizerConfig(channels=[16, 8, 8]), hierarchy).eval()
    for layer in model.modules():  # exercise every branch: mixed conv + residual with a channel change
        if isinstance(layer, VcConv) and layer.residual_rate == 0.0 and hasattr(layer, "coeffs"):
            layer.residual_rate = 0.3
            if layer.in_channels != layer.out_channels:
                layer.res_proj = torch.nn.Parameter(torch.randn(layer.out_channels, layer.in_channels) / 4)
            break
    verts = torch.randn(BATCHED_BASIS_MIN_BATCH + 1, 1229, 3) * 0.3  # the batched-basis branch
    with torch.no_grad():
        fast_lat, fast_out = model.encode_latents(verts), model.decode_latents(model.encode_latents(verts))
    with torch.enable_grad():
        slow_lat = model.encode_latents(verts)
        slow_out = model.decode_latents(slow_lat)
    torch.testing.assert_close(fast_lat, slow_lat.detach(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast_out, slow_out.detach(), atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # one mesh (deterministic mode, the live loop) and a few: the one-matmul branch
        for few in (1, 4):
            torch.testing.assert_close(model.decode_latents(fast_lat[:few]), slow_out[:few].detach(), atol=1e-5,
                                       rtol=1e-4)
    with torch.no_grad():  # float64 vertices into the float32 model, as before the sparse route
        for few in (1, len(verts)):
            torch.testing.assert_close(model.encode_latents(verts[:few].double()).float(), fast_lat[:few], atol=1e-5,
                                       rtol=1e-4)
    # a used model (its caches hold sparse CSR matrices) still deep-copies and pickles; the copy rebuilds them
    assert pickle.loads(pickle.dumps(model.decoder[-1])).index.shape == model.decoder[-1].index.shape
    # the cached-kernel route (GPU, half precision) for every layer gives the same numbers
    kernels_only = copy.deepcopy(model)
    for layer in kernels_only.modules():
        if isinstance(layer, VcConv):
            layer._mixes_sparsely = lambda: False
    with torch.no_grad():
        torch.testing.assert_close(kernels_only.decode_latents(fast_lat), slow_out.detach(), atol=1e-5, rtol=1e-4)
    assert all("mix" not in layer._inference_weights() for layer in kernels_only.decoder if hasattr(layer, "coeffs"))
    # the last layer shrinks 16 -> 3 channels: basis first, then the sparse mix; 3 -> 16 keeps the kernels
    assert "mix" in model.decoder[-1]._inference_weights() and "kernel" not in model.decoder[-1]._inference_weights()
    assert "kernel" in model.encoder[0]._inference_weights() and "mix" not in model.encoder[0]._inference_weights()
    with torch.no_grad():
        model.decoder[-1].basis.mul_(2.0)  # in-place edit: the cache key (version counter) changes
        edited = model.decode_latents(fast_lat)
    with torch.enable_grad():
        reference = model.decode_latents(fast_lat).detach()
    torch.testing.assert_close(edited, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(edited, 2 * fast_out, atol=1e-6, rtol=1e-4)  # last layer is linear in its basis


def test_residual_scale_learns_offsets_from_the_template_and_survives_a_checkpoint(hierarchy, body_assets,
                                                                                  tmp_path):
    """residual_scale > 0: the network sees (mesh - rest template) * scale. An untrained network's output
    is then near the template (not near the origin), and save/load keeps the template and the numbers."""
    torch.manual_seed(2)
    config = TokenizerConfig(channels=[4, 8, 8], residual_scale=5.0)
    model = MeshVQVAE(config, hierarchy, body_assets.template).eval()
    template = body_assets.template - body_assets.template.mean(dim=0)
    torch.testing.assert_close(model.template, template)
    with torch.no_grad():
        for p in model.decoder[-1].parameters():
            p.zero_()  # the network's output is 0: the decode must be the template itself
        out = model.decode(torch.zeros(1, 54, dtype=torch.long))
    torch.testing.assert_close(out[0], template, atol=1e-6, rtol=0)
    ids = model.encode(template[None] + 0.01 * torch.randn(2, 1229, 3))
    model.save(tmp_path / "tok")
    loaded = MeshVQVAE.from_pretrained(tmp_path / "tok")
    assert loaded.config.residual_scale == 5.0
    torch.testing.assert_close(loaded.template, template)
    torch.testing.assert_close(loaded.decode(ids), model.decode(ids))
    plain = MeshVQVAE(TokenizerConfig(channels=[4, 8, 8]), hierarchy, body_assets.template)
    assert "template" not in plain.state_dict()  # off: checkpoints stay as before (the shipped one loads)


@pytest.fixture(scope="module")
def shipped_tokenizer():
    from megaviewer.paths import tokenizer_dir

    return MeshVQVAE.from_pretrained(tokenizer_dir())


def test_shipped_tokenizer_round_trip_on_unseen_meshes(shipped_tokenizer, synthetic_meshes):
    """Meshes from a seed no training stream uses reconstruct as well as the shipped metrics say (+15 %), and
    the shipped figure itself meets the project's target of PVE <= 6 mm."""
    from megaviewer.paths import tokenizer_dir

    recorded = json.loads((tokenizer_dir() / "metrics.json").read_text())
    target = recorded.get("keyposes", recorded)  # a recipe records one evaluation per prior; the fixture's is keyposes
    assert target["pve_mm"] <= 6.0
    held = synthetic_meshes.heldout(96, seed=424242)
    with torch.inference_mode():
        ids = shipped_tokenizer.encode(held.vertices)
        rec = shipped_tokenizer.decode(ids)
    pve = metrics.pve(rec, held.vertices).mean().item()
    assert pve <= 1.15 * target["pve_mm"], f"PVE {pve:.2f} mm, shipped metrics say {target['pve_mm']:.2f} mm"
    assert len(torch.unique(ids)) > 100


def test_tokenizer_training_resumes_exactly(tmp_path, synthetic_meshes):
    from training.loop import LoopConfig, train
    from training.tokenizer import TokenizerTask, build_tokenizer

    def run(out, stop_at=None):
        torch.manual_seed(0)
        model = build_tokenizer(TokenizerConfig(channels=[4, 4, 4]))
        task = TokenizerTask(model, synthetic_meshes, batch_size=2, restart_every=2)
        cfg = LoopConfig(out_dir=str(out), total_steps=6, batch_size=2, ckpt_every=3, progress=False,
                         stop_at=stop_at)
        train(task, cfg)
        return model

    full = run(tmp_path / "full")
    run(tmp_path / "cut", stop_at=3)
    resumed = run(tmp_path / "cut")
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_extremity_weight_reweighs_the_reconstruction_loss_only(synthetic_meshes):
    """Weight 1 is the plain loss; weight 4 moves the loss towards the hands and feet while the logged PVE stays
    the plain per-vertex mean (what the figures report)."""
    from training.tokenizer import TokenizerTask, build_tokenizer, hands_feet_mask, vertex_weights

    torch.manual_seed(0)
    model = build_tokenizer(TokenizerConfig(channels=[4, 4, 4])).eval()
    body = synthetic_meshes.body

    def step(weights):
        task = TokenizerTask(model, synthetic_meshes, batch_size=2, restart_every=100, weights=weights)
        return task.training_step(model, 0, torch.Generator().manual_seed(4))

    plain, plain_logs = step(None)
    same, _ = step(vertex_weights(body, 1.0))
    heavy, heavy_logs = step(vertex_weights(body, 4.0))
    assert same.item() == pytest.approx(plain.item(), rel=1e-6)
    assert heavy_logs["pve_mm"] == pytest.approx(plain_logs["pve_mm"], rel=1e-6)
    target = synthetic_meshes.sample(2, torch.Generator().manual_seed(4)).vertices
    out = model(target)
    error = (out.vertices - metrics.center(target)).norm(dim=-1)
    weights = vertex_weights(body, 4.0)
    assert weights[hands_feet_mask(body)].min() > weights.mean()
    assert heavy.item() == pytest.approx(((error * weights).mean() + out.commitment_loss).item(), rel=1e-5)
    assert heavy.item() != pytest.approx(plain.item(), rel=1e-3)


def test_tokenizer_run_refuses_to_continue_with_another_loss(tmp_path, synthetic_meshes):
    from megaviewer.io.checkpoint import CheckpointError
    from training.tokenizer import TokenizerTrainConfig, train_tokenizer

    def config(**kw):
        return TokenizerTrainConfig(out_dir=str(tmp_path / "run"), steps=2, batch_size=2, ckpt_every=1,
                                    progress=False, tokenizer=TokenizerConfig(channels=[4, 4, 4]), **kw)

    assert train_tokenizer(config(stop_at=1), synthetic_meshes).name == "step-00000001"
    with pytest.raises(CheckpointError, match="extremity_weight"):
        train_tokenizer(config(extremity_weight=2.0), synthetic_meshes)
    assert train_tokenizer(config(), synthetic_meshes).name == "final"
