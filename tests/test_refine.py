"""The keypoint refinement (:mod:`megaviewer.refine`) on synthetic cases made from the shipped tokenizer: it
lowers the reprojection error while staying near the network's body, keeps hypotheses distinct where
keypoints are missing, leaves hypotheses without enough keypoints alone, and never touches the decoder."""

from __future__ import annotations

import pytest
import torch

from megaviewer.camera import FLIP_X, weak_perspective_project
from megaviewer.geometry import metrics
from megaviewer.geometry.rotations import rotvec_to_matrix
from megaviewer.paths import tokenizer_dir
from megaviewer.refine import RefineConfig, refine_hypotheses
from megaviewer.tokenizer.model import MeshVQVAE

pytestmark = pytest.mark.skipif(not (tokenizer_dir() / "model.safetensors").exists(),
                                reason="needs the shipped tokenizer")
RIGHT_ARM = (6, 8, 10)  # COCO shoulder, elbow, wrist


@pytest.fixture(scope="module")
def tokenizer() -> MeshVQVAE:
    return MeshVQVAE.from_pretrained()


@pytest.fixture(scope="module")
def regressor(body_assets) -> torch.Tensor:
    return body_assets.coco_regressor.float()


def _scene(tokenizer, regressor, body_assets, q: int = 1, noise: float = 1.0, seed: int = 0):
    """A true body (the rest template through the tokenizer) seen by a weak-perspective camera with exact
    keypoints, and Q 'network guesses': the true latents disturbed and re-quantised."""
    g = torch.Generator().manual_seed(seed)
    tokens_true = tokenizer.encode(body_assets.template[None].float())
    codebook = tokenizer.quantizer.codebook
    z_true = codebook[tokens_true]
    guesses = tokenizer.quantizer.nearest(z_true + noise * torch.randn(q, *z_true.shape[1:], generator=g))
    rotation = (rotvec_to_matrix(torch.tensor([0.1, 0.4, 0.05])) @ FLIP_X)[None].expand(q, 3, 3)
    cam = torch.tensor([[0.9, 0.05, -0.02]]).expand(q, 3)
    with torch.no_grad():
        true_verts = tokenizer.decode(tokens_true)
    true_joints = regressor @ true_verts
    xy = weak_perspective_project(true_joints @ rotation[:1].transpose(-1, -2), cam[:1])[0]
    keypoints = torch.cat([xy, torch.ones(17, 1)], dim=-1)
    return guesses, rotation.contiguous(), cam.contiguous(), keypoints, true_verts


def _pa_mpjpe(verts, true_verts, regressor):
    return metrics.pa_mpjpe(regressor @ verts, regressor @ true_verts)


def test_fit_lowers_reprojection_error_and_stays_near_the_network_body(tokenizer, regressor, body_assets):
    tokens, rotation, cam, keypoints, true_verts = _scene(tokenizer, regressor, body_assets, seed=3)
    with torch.no_grad():
        start = tokenizer.decode(tokens)
    assert _pa_mpjpe(start, true_verts, regressor) > 30.0  # the guess is visibly wrong

    out = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints)

    assert out.refined.all()
    assert (out.error_after < 0.75 * out.error_before).all()
    # near the network's body: a fraction of a codebook step in latent space, centimetres on the mesh
    assert (out.latent_shift < 0.4).all()
    assert metrics.pve(out.canonical_vertices, start).max() < 40.0
    # and, here where the keypoints are exact, closer to the truth than the network's guess
    assert _pa_mpjpe(out.canonical_vertices, true_verts, regressor) < _pa_mpjpe(start, true_verts, regressor)
    # a stronger anchor moves the body less
    anchored = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints,
                                 RefineConfig(latent_prior=1.0))
    assert (anchored.latent_shift < out.latent_shift).all()
    assert out.canonical_vertices.shape == start.shape and out.latents.shape == (1, tokenizer.num_tokens, 9)


def test_hypotheses_stay_distinct_where_keypoints_are_missing(tokenizer, regressor, body_assets):
    tokens, rotation, cam, keypoints, _ = _scene(tokenizer, regressor, body_assets, q=4, seed=1)
    keypoints[list(RIGHT_ARM), 2] = 0.0  # the right arm is not seen
    with torch.no_grad():
        start = tokenizer.decode(tokens)
    out = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints)
    assert out.refined.all() and (out.error_after < out.error_before).all()

    def arm_spread(verts):
        joints = regressor[list(RIGHT_ARM)] @ verts
        return torch.pdist(joints.reshape(4, -1)).mean()

    assert arm_spread(out.canonical_vertices) > 0.7 * arm_spread(start)
    # each hypothesis is anchored to its own start: nearer to it than to any other hypothesis's start
    z0 = tokenizer.quantizer.codebook[tokens]
    dist = torch.cdist(out.latents.reshape(4, -1), z0.reshape(4, -1))
    assert torch.equal(dist.argmin(dim=1), torch.arange(4))


def test_too_few_keypoints_leave_the_hypothesis_unchanged(tokenizer, regressor, body_assets):
    tokens, rotation, cam, keypoints, _ = _scene(tokenizer, regressor, body_assets, q=2, seed=3)
    rows = keypoints.expand(2, 17, 3).clone()
    rows[1, 4:, 2] = 0.0  # four keypoints: below min_keypoints
    rows[1, 0, 0] = float("nan")  # and a non-finite one, which counts as missing
    out = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, rows)
    assert out.refined.tolist() == [True, False]
    with torch.no_grad():
        start = tokenizer.decode(tokens[1:])
    torch.testing.assert_close(out.canonical_vertices[1:], start, atol=1e-5, rtol=0)
    assert torch.equal(out.rotation[1], rotation[1]) and torch.equal(out.cam[1], cam[1])
    assert torch.isfinite(out.canonical_vertices).all()


def test_runs_inside_inference_mode_and_never_touches_the_decoder(tokenizer, regressor, body_assets):
    tokens, rotation, cam, keypoints, _ = _scene(tokenizer, regressor, body_assets, seed=3)
    before = {k: v.clone() for k, v in tokenizer.state_dict().items()}
    with torch.inference_mode():  # as the engine calls it; the decoder's cache is built in here too
        tokenizer.decode(tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the fit runs in float32 whatever the caller's autocast
            out = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints, RefineConfig())
    assert out.refined.all() and out.canonical_vertices.dtype == torch.float32
    for key, value in tokenizer.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in tokenizer.parameters())
    summary = out.summary()
    assert summary["refined"] == 1 and summary["error_after"] < summary["error_before"]


def test_frozen_decode_matches_the_trainable_route_in_values_and_gradients(tokenizer):
    ids = torch.randint(0, tokenizer.config.num_codes, (3, tokenizer.num_tokens), generator=torch.Generator()
                        .manual_seed(4))
    with torch.inference_mode():
        tokenizer.decode(ids)  # cache built under inference mode, as in the engine
    z = tokenizer.quantizer.lookup(ids).clone().requires_grad_(True)
    frozen = tokenizer.decode_latents_frozen(z)
    trainable = tokenizer.decode_latents(z)
    torch.testing.assert_close(frozen, trainable, atol=1e-5, rtol=1e-4)
    weights = torch.randn(frozen.shape, generator=torch.Generator().manual_seed(5))
    (g_frozen,) = torch.autograd.grad((frozen * weights).sum(), z)
    (g_trainable,) = torch.autograd.grad((trainable * weights).sum(), z)
    torch.testing.assert_close(g_frozen, g_trainable, atol=1e-4, rtol=1e-4)


def test_rejects_mismatched_shapes(tokenizer, regressor):
    tokens = torch.zeros(2, tokenizer.num_tokens, dtype=torch.long)
    with pytest.raises(ValueError, match="expected keypoints"):
        refine_hypotheses(tokenizer, regressor, tokens, torch.eye(3).expand(2, 3, 3), torch.ones(3, 3),
                          torch.zeros(17, 3))


def test_landmarks_pull_the_limbs_toward_their_directions_in_depth(tokenizer, regressor, body_assets):
    """With the true body's 3D landmarks the fit ends closer to it than with the 2D keypoints alone (which
    cannot tell a limb's depth), and a landmark weight of 0 ignores them."""
    tokens, rotation, cam, keypoints, true_verts = _scene(tokenizer, regressor, body_assets, q=4, seed=2)
    true_cam_joints = (regressor @ true_verts)[0] @ rotation[0].T
    landmarks = torch.cat([true_cam_joints - true_cam_joints[11:13].mean(0), torch.ones(17, 1)], dim=-1)
    plain = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints)
    ignored = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints,
                                RefineConfig(landmark_weight=0.0), landmarks=landmarks)
    assert torch.equal(ignored.canonical_vertices, plain.canonical_vertices)
    guided = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints,
                               RefineConfig(landmark_weight=1.0), landmarks=landmarks)
    assert guided.refined.all()
    before = _pa_mpjpe(plain.canonical_vertices, true_verts, regressor).mean()
    after = _pa_mpjpe(guided.canonical_vertices, true_verts, regressor).mean()
    assert after < before - 2.0
    # Invisible landmarks say nothing: visibility 0 everywhere is the plain fit.
    unseen = landmarks.clone()
    unseen[:, 3] = 0.0
    blind = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints,
                              RefineConfig(landmark_weight=1.0), landmarks=unseen)
    assert torch.allclose(blind.canonical_vertices, plain.canonical_vertices, atol=1e-5)


def test_fit_starts_from_and_is_anchored_to_the_latents_it_is_given(tokenizer, regressor, body_assets):
    """Expected codes (megaviewer.generate) are latents off the codebook: the fit starts from them. Given the
    tokens' own codes it is the fit of the tokens; given other latents, its anchor and its start are those."""
    tokens, rotation, cam, keypoints, _ = _scene(tokenizer, regressor, body_assets, seed=3)
    codes = tokenizer.quantizer.codebook.detach()[tokens]
    plain = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints)
    same = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints, latents=codes)
    torch.testing.assert_close(same.latents, plain.latents)
    torch.testing.assert_close(same.canonical_vertices, plain.canonical_vertices)
    other = codes + 0.3 * torch.randn(codes.shape, generator=torch.Generator().manual_seed(0))
    moved = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints, latents=other)
    shift = (moved.latents - other).pow(2).sum(-1).mean(-1).sqrt()
    torch.testing.assert_close(moved.latent_shift, shift)  # measured from the given latents
    idle = refine_hypotheses(tokenizer, regressor, tokens, rotation, cam, keypoints, RefineConfig(steps=0),
                             latents=other)
    with torch.no_grad():
        torch.testing.assert_close(idle.canonical_vertices, tokenizer.decode_latents(other), atol=1e-5, rtol=1e-4)
