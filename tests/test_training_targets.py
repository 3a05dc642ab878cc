"""Cheaper or softer training signals equal the old ones where they claim to."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from megaviewer.masking import SCHEDULES, cosine_visible, visible_count
from training.mega_losses import code_neighbour_targets, lifting_loss, masked_token_loss


def _codebook() -> torch.Tensor:
    return torch.randn(64, 9, generator=torch.Generator().manual_seed(0))


def test_neighbour_targets_are_distributions_keeping_the_true_code():
    targets = code_neighbour_targets(_codebook(), 0.3)
    assert torch.allclose(targets.sum(1), torch.ones(64))
    assert torch.allclose(targets.diagonal(), torch.full((64,), 0.7), atol=1e-6)
    off = targets - torch.diag(targets.diagonal())
    dist = torch.cdist(_codebook(), _codebook()) + torch.eye(64) * 1e9
    assert torch.equal(off.argmax(1), dist.argmin(1))  # the nearest code gets the most of the rest
    assert torch.equal(code_neighbour_targets(_codebook(), 0.0), torch.eye(64))


def test_soft_loss_with_one_hot_table_equals_plain_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 7, 64, generator=g)
    targets = torch.randint(0, 64, (3, 7), generator=g)
    visible = torch.rand(3, 7, generator=g) < 0.4
    plain = masked_token_loss(logits, targets, visible)
    table = masked_token_loss(logits, targets, visible, code_neighbour_targets(_codebook(), 0.0))
    assert torch.allclose(plain.loss, table.loss, atol=1e-6)
    soft = masked_token_loss(logits, targets, visible, code_neighbour_targets(_codebook(), 0.3))
    expected = F.cross_entropy(logits[~visible], code_neighbour_targets(_codebook(), 0.3)[targets[~visible]])
    assert torch.allclose(soft.loss, expected) and not torch.allclose(soft.loss, plain.loss)


def test_full_share_schedules():
    """cosine_full is the same function as before it became one of a family; cosine_full75 masks 3/4 fully."""
    for i in range(1000):
        tau = i / 1000
        old = 0 if tau < 0.5 else cosine_visible(2.0 * tau - 1.0, 54)
        assert SCHEDULES["cosine_full"](tau, 54) == old
    full = sum(visible_count("cosine_full75", i / 1000, 54) == 0 for i in range(1000))
    cosine_zero = sum(cosine_visible(i / 1000, 54) == 0 for i in range(1000))  # tiny τ: nothing visible either
    assert math.isclose(full, 750 + cosine_zero / 4, abs_tol=2)


def test_lifting_loss_scores_pose_not_placement():
    g = torch.Generator().manual_seed(2)
    joints = torch.randn(4, 17, 3, generator=g)
    assert lifting_loss(joints + torch.tensor([0.3, -1.0, 2.0]), joints).item() < 1e-6
    moved = joints.clone()
    moved[:, 0, 0] += 0.17  # one joint 17 cm off along x
    expected = ((0.17 * 16 / 17) + 16 * (0.17 / 17)) / 17  # the centre moves by 1/17 of it too
    assert abs(lifting_loss(moved, joints).item() - expected) < 1e-5


def test_whole_skeleton_token_and_readout():
    from megaviewer.model import get_preset
    from megaviewer.model.mega import Mega

    kp = torch.rand(2, 17, 3)
    plain, glob, lift = (Mega(get_preset(n)) for n in ("cpu_fast", "cpu_fast_global", "cpu_fast_lift"))
    assert plain.encode_conditioning({"keypoints": kp}).tokens.shape[1] == 17
    assert glob.encode_conditioning({"keypoints": kp}).tokens.shape[1] == 18
    tokens, visible = torch.zeros(2, 54, dtype=torch.long), torch.zeros(2, 54, dtype=torch.bool)
    assert plain(tokens, visible, {"keypoints": kp}).lifted is None
    assert glob(tokens, visible, {"keypoints": kp}).lifted is None
    assert lift(tokens, visible, {"keypoints": kp}).lifted.shape == (2, 17, 3)
