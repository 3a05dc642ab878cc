"""MEGA model: shapes, padding masks, encoder cache, conditioners, heads, configs and the paper preset."""

from __future__ import annotations

import json

import pytest
import torch

from megaviewer.geometry.rotations import rot6d_to_matrix
from megaviewer.model import (
    CondEncoding,
    ConditioningConfig,
    ImageConditioner,
    KeypointConditioner,
    Mega,
    MegaConfig,
    RotCamHead,
    get_preset,
    list_presets,
    load_mega,
    save_mega,
)
from megaviewer.model.transformer import sinusoidal_encoding
from tests._engines import random_keypoints

N, S = 54, 512


_keypoints = random_keypoints


@pytest.fixture(scope="module")
def tiny() -> Mega:
    torch.manual_seed(0)
    return Mega.from_preset("test_tiny").eval()


def _visible(counts: list[int], seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    vis = torch.zeros(len(counts), N, dtype=torch.bool)
    for i, c in enumerate(counts):
        vis[i, torch.randperm(N, generator=g)[:c]] = True
    return vis


def test_forward_shapes(tiny: Mega) -> None:
    tokens = torch.randint(0, S, (3, N))
    out = tiny(tokens, _visible([0, 10, 53]), {"keypoints": _keypoints(3)})
    assert out.logits.shape == (3, N, S)
    assert out.rot6d.shape == (3, 6) and out.cam.shape == (3, 3)


def test_variable_visible_counts_match_single_samples(tiny: Mega) -> None:
    """Padding + key-padding mask: a sample's logits do not depend on what else is in the batch."""
    tokens = torch.randint(0, S, (4, N), generator=torch.Generator().manual_seed(3))
    vis = _visible([0, 5, 20, 53])
    enc = tiny.encode_conditioning({"keypoints": _keypoints(4)})
    with torch.no_grad():
        batched = tiny.token_logits(tokens, vis, enc, use_cache=False)
        for i in range(4):
            one = CondEncoding(enc.tokens[i : i + 1], enc.pooled[i : i + 1], 1)
            single = tiny.token_logits(tokens[i : i + 1], vis[i : i + 1], one, use_cache=False)
            torch.testing.assert_close(batched[i : i + 1], single, atol=1e-5, rtol=1e-5)


def test_masked_token_values_are_ignored(tiny: Mega) -> None:
    vis = _visible([7, 30])
    a = torch.randint(0, S, (2, N))
    b = torch.where(vis, a, torch.randint(0, S, (2, N)))
    enc = CondEncoding.empty(2)
    with torch.no_grad():
        torch.testing.assert_close(tiny.token_logits(a, vis, enc), tiny.token_logits(b, vis, enc))


def test_encoder_cache_equals_uncached_and_invalidates() -> None:
    torch.manual_seed(1)
    model = Mega.from_preset("test_tiny", conditioning={}).eval()
    tokens = torch.zeros(2, N, dtype=torch.long)
    vis = torch.zeros(2, N, dtype=torch.bool)
    with torch.no_grad():
        cached = model.encode(tokens, vis, use_cache=True)
        uncached = model.encode(tokens, vis, use_cache=False)
        torch.testing.assert_close(cached, uncached)
        assert model.encoder_constant() is model.encoder_constant()  # computed once
        model.cls_token.add_(1.0)  # in-place weight change -> new version -> recomputed
        torch.testing.assert_close(model.encode(tokens, vis), model.encode(tokens, vis, use_cache=False))
    model.load_state_dict(model.state_dict())
    assert model._encoder_cache is None
    model.encoder_constant()
    model.train()
    assert model._encoder_cache is None


def test_all_masked_training_step_has_gradients() -> None:
    """With grad enabled the cache is bypassed, so the encoder still learns from all-masked batches."""
    torch.manual_seed(2)
    model = Mega.from_preset("test_tiny").train()
    out = model(torch.zeros(2, N, dtype=torch.long), torch.zeros(2, N, dtype=torch.bool),
                {"keypoints": _keypoints(2)})
    out.logits.logsumexp(-1).mean().backward()
    assert model.cls_token.grad is not None and model.cls_token.grad.abs().sum() > 0


def test_conditioning_required_and_batch_checked(tiny: Mega) -> None:
    tokens = torch.zeros(2, N, dtype=torch.long)
    vis = torch.zeros(2, N, dtype=torch.bool)
    with pytest.raises(ValueError, match="expects conditioning"):
        tiny(tokens, vis, None)
    with pytest.raises(ValueError, match="batch"):
        tiny(tokens, vis, {"keypoints": _keypoints(3)})
    with pytest.raises(ValueError, match="missing"):
        tiny(tokens, vis, {"image": torch.zeros(2, 3, 8, 8)})
    assert tiny(tokens, vis, CondEncoding.empty(2)).rot6d is None


def test_keypoint_conditioner_ignores_missing_coordinates() -> None:
    torch.manual_seed(0)
    cond = KeypointConditioner(17, 16, hidden=16)
    kp = _keypoints(1)
    kp[0, 5, 2] = 0.0
    moved = kp.clone()
    moved[0, 5, :2] = torch.tensor([float("nan"), -0.7])
    t0, p0 = cond(kp)
    t1, p1 = cond(moved)
    assert t0.shape == (1, 17, 16) and p0.shape == (1, 16)
    torch.testing.assert_close(t0, t1)
    torch.testing.assert_close(p0, p1)
    present = kp.clone()
    present[0, 5, 2] = 0.5
    assert not torch.allclose(cond(present)[0][0, 5], t0[0, 5])


def test_sinusoidal_encoding() -> None:
    pe = sinusoidal_encoding(5, 8)
    pos = torch.arange(5.0)
    torch.testing.assert_close(pe[:, 0], torch.sin(pos))
    torch.testing.assert_close(pe[:, 1], torch.cos(pos))
    torch.testing.assert_close(pe[:, 2], torch.sin(pos / 10000 ** (2 / 8)))
    torch.testing.assert_close(pe[:, 7], torch.cos(pos / 10000 ** (6 / 8)))


def test_rotcam_head_init_and_param_count() -> None:
    torch.manual_seed(0)
    head = RotCamHead(2048, 1024).eval()
    # Same parameter count as the original ResNet-50 head (GELU has none): docs/original-implementation.md §9.
    assert sum(p.numel() for p in head.parameters()) == 2048 * 1024 + 1024 + 1024 * 1024 + 1024 + 6150 + 3075
    rot6d, cam = head(torch.randn(4, 2048))
    torch.testing.assert_close(rot6d_to_matrix(rot6d), torch.eye(3).expand(4, 3, 3), atol=0.05, rtol=0)
    assert torch.all(cam[:, 0] > 0) and torch.allclose(cam[:, 0], torch.full((4,), 0.9), atol=0.05)


def test_image_conditioner_resnet18(tmp_path) -> None:
    torch.manual_seed(0)
    cond = ImageConditioner("resnet18", 32, image_size=(64, 64)).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens, pooled = cond(images)
        assert tokens.shape == (2, 4, 32) and pooled.shape == (2, 512)  # 64/32 = 2x2 feature map
        fmap = cond.backbone.forward_features(images)
        torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3)))
    # local weights file (never a download); classifier tensors in the file are ignored
    from megaviewer.io.checkpoint import save_tensors

    state = dict(cond.backbone.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    save_tensors(tmp_path / "r18.safetensors", state)
    other = ImageConditioner("resnet18", 32, image_size=(64, 64), weights=tmp_path / "r18.safetensors").eval()
    with torch.no_grad():
        torch.testing.assert_close(other(images)[1], pooled)


def test_image_conditioner_vit_drops_prefix_tokens() -> None:
    torch.manual_seed(0)
    cond = ImageConditioner("vit_tiny_patch16_224", 16, image_size=(64, 64)).eval()
    with torch.no_grad():
        tokens, pooled = cond(torch.randn(1, 3, 64, 64))
    assert tokens.shape == (1, 16, 16) and pooled.shape == (1, 192)  # 4x4 patches, cls token dropped


def test_image_and_keypoints_combined() -> None:
    torch.manual_seed(0)
    config = get_preset("test_tiny", conditioning=ConditioningConfig(
        kinds=("keypoints", "image"), image_backbone="resnet18", image_size=(64, 64), keypoint_hidden=16))
    assert config.conditioning.kinds == ("image", "keypoints")  # canonical order
    model = Mega(config).eval()
    cond = {"image": torch.randn(2, 3, 64, 64), "keypoints": _keypoints(2)}
    with torch.no_grad():
        enc = model.encode_conditioning(cond)
        assert enc.tokens.shape == (2, 4 + 17, 32) and enc.pooled.shape == (2, 512 + 16)
        out = model(torch.zeros(2, N, dtype=torch.long), torch.zeros(2, N, dtype=torch.bool), cond)
    assert out.logits.shape == (2, N, S) and out.cam.shape == (2, 3)


def test_config_json_roundtrip_and_presets() -> None:
    assert {"paper", "cpu_small", "test_tiny"} <= set(list_presets())
    cond = ConditioningConfig(kinds=("image", "keypoints"), image_size=96)
    config = get_preset("cpu_small", conditioning=cond)
    data = json.loads(json.dumps(config.to_dict()))
    assert MegaConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="unknown"):
        MegaConfig.from_dict({**data, "dimm": 3})
    with pytest.raises(ValueError):
        ConditioningConfig(kinds=("audio",))
    with pytest.raises(KeyError):
        get_preset("nope")


def test_save_load_roundtrip(tmp_path, tiny: Mega) -> None:
    save_mega(tmp_path / "ckpt", tiny)
    loaded = load_mega(tmp_path / "ckpt")
    tokens, vis = torch.randint(0, S, (2, N)), _visible([3, 40])
    cond = {"keypoints": _keypoints(2)}
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, vis, cond).logits, tiny(tokens, vis, cond).logits)


def test_paper_preset_builds_and_counts() -> None:
    """The paper transformer (keypoint conditioning instead of a backbone, to save memory)."""
    torch.manual_seed(0)
    model = Mega(get_preset("paper", conditioning=ConditioningConfig(kinds=("keypoints",)))).eval()
    counts = model.parameter_counts()
    assert counts["encoder"] == 151_700_480 and counts["decoder"] == 50_954_752  # docs/original-implementation.md §9
    assert counts["encoder"] + counts["decoder"] == 202_655_232
    with torch.inference_mode():
        out = model(torch.zeros(1, N, dtype=torch.long), torch.zeros(1, N, dtype=torch.bool),
                    {"keypoints": _keypoints(1)})
    assert out.logits.shape == (1, N, S) and torch.isfinite(out.logits).all()


def test_block_keep_equals_picking_rows_of_the_full_output() -> None:
    """The decoder's last block computes only the rows asked for (the last k, or an index per sample);
    same numbers as the full block, with and without a key-padding mask."""
    from megaviewer.model.transformer import Block, key_padding_to_attn_mask

    torch.manual_seed(0)
    blk = Block(32, 4, 4.0, qkv_bias=True).eval()
    x = torch.randn(3, 20, 32)
    pad = torch.zeros(3, 20, dtype=torch.bool)
    pad[1, 15:] = True
    rows = torch.stack([torch.randperm(20, generator=torch.Generator().manual_seed(i))[:5] for i in range(3)])
    for mask in (None, key_padding_to_attn_mask(pad)):
        full = blk(x, mask)
        torch.testing.assert_close(blk(x, mask, keep=7), full[:, -7:], atol=1e-6, rtol=1e-5)
        picked = full.gather(1, rows[..., None].expand(-1, -1, 32))
        torch.testing.assert_close(blk(x, mask, keep=rows), picked, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(blk(x, keep=20), blk(x))


def test_decoder_logits_equal_full_decoder_reference(tiny: Mega) -> None:
    """Reference: every decoder block on every row (cond, cls, slots), then the head on the mesh rows."""
    vis = _visible([0, 5, 30])
    tokens = torch.randint(0, S, (3, N))
    with torch.no_grad():
        enc = tiny.encode_conditioning({"keypoints": _keypoints(3)})
        logits = tiny.token_logits(tokens, vis, enc)
        features = tiny.token_features(tokens, vis, enc)
        encoded = tiny.encode(tokens, vis)
        m = encoded.shape[1] - 1
        rank = (vis.cumsum(dim=1) - 1).clamp(0, m - 1)
        picked = encoded[:, 1:].gather(1, rank[..., None].expand(-1, -1, tiny.config.dim))
        slots = torch.where(vis[..., None], picked, tiny.mask_token.expand(3, N, -1))
        x = torch.cat([enc.tokens, torch.cat([encoded[:, :1], slots], dim=1) + tiny.dec_pos], dim=1)
        for blk in tiny.decoder:
            x = blk(x)
        reference = tiny.head(x[:, -N:])
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tiny.head(features), logits)
    slots = torch.stack([(~vis[i]).nonzero()[:20, 0] for i in range(3)])  # 20 masked slots per row
    with torch.no_grad():
        picked = tiny.token_features(tokens, vis, enc, slots=slots)
    torch.testing.assert_close(picked, features.gather(1, slots[..., None].expand(-1, -1, tiny.config.dim)),
                               atol=1e-5, rtol=1e-4)


def test_attend_matches_sdpa_on_both_routes() -> None:
    """The CPU matmul route for short batched sequences gives SDPA's numbers."""
    import torch.nn.functional as F

    from megaviewer.model.transformer import attend

    g = torch.Generator().manual_seed(0)
    for b, lq, lk in ((16, 39, 39), (16, 54, 72), (1, 72, 72), (16, 72, 72), (1, 1, 1), (2, 600, 600)):
        q, k, v = (torch.randn(b, 4, n, 32, generator=g) for n in (lq, lk, lk))
        with torch.no_grad():
            torch.testing.assert_close(attend(q, k, v, None), F.scaled_dot_product_attention(q, k, v),
                                       atol=1e-5, rtol=1e-4)
