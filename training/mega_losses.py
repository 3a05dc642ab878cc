"""MEGA training losses (reference-facts §3, §5), shared by pre-training, conditioned training and the
image path.

* Token loss: cross-entropy on MASKED positions only, averaged over all masked positions of the batch
  (flattened). Visible positions are copied from the input, so scoring them would reward a trivial copy.
  When nothing is masked the original skipped the step (NaN loss); we return an exact zero that is still
  connected to the graph, so DDP ranks stay in lock-step and the loop needs no special case.
* Rotation loss: MSE over the 9 entries of ``rot6d_to_matrix(pred)`` vs the GT camera-frame rotation.
* 2D reprojection loss: joints of the mesh decoded from [GT tokens at visible positions, argmax at masked
  positions] -- computed WITHOUT gradient, so this loss only trains the rotation/camera head -- rotated by the
  predicted R (row vectors: ``J @ R^T``), weak-perspective projected with the predicted camera, L1 averaged
  over x/y, times the joint confidence, mean over B x K (as the original).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from megaviewer.geometry.rotations import rot6d_to_matrix


@dataclass
class TokenLoss:
    loss: torch.Tensor  # scalar, differentiable
    accuracy: float  # argmax accuracy on masked positions (nan when none is masked)
    masked: int  # number of masked positions in the batch


def masked_token_loss(logits: torch.Tensor, targets: torch.Tensor, visible: torch.Tensor) -> TokenLoss:
    """CE of ``logits`` (B, N, S) against ``targets`` (B, N) on positions where ``visible`` is False."""
    masked = ~visible
    count = int(masked.sum())
    if count == 0:
        return TokenLoss(logits.sum() * 0.0, float("nan"), 0)
    picked = logits[masked]
    wanted = targets[masked]
    loss = F.cross_entropy(picked.float(), wanted)
    with torch.no_grad():
        accuracy = float((picked.argmax(dim=-1) == wanted).float().mean())
    return TokenLoss(loss, accuracy, count)


def rotation_loss(rot6d: torch.Tensor, rot_gt: torch.Tensor) -> torch.Tensor:
    """MSE over the 9 matrix entries between R(rot6d) (B, 6) and the GT rotation (B, 3, 3)."""
    return F.mse_loss(rot6d_to_matrix(rot6d), rot_gt.to(rot6d.dtype))


def completed_tokens(targets: torch.Tensor, visible: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """GT tokens at visible positions, the predicted argmax at masked ones (B, N) long."""
    return torch.where(visible, targets, logits.detach().argmax(dim=-1))


@torch.no_grad()
def decoded_joints(tokenizer: nn.Module, tokens: torch.Tensor, regressor: torch.Tensor) -> torch.Tensor:
    """Canonical joints (B, K, 3) of the meshes the frozen tokenizer decodes from ``tokens`` (no gradient)."""
    vertices = tokenizer.decode(tokens)
    return regressor.to(vertices.dtype) @ vertices


def reprojection_loss(joints: torch.Tensor, rot6d: torch.Tensor, cam: torch.Tensor, joints2d: torch.Tensor,
                      conf: torch.Tensor) -> torch.Tensor:
    """Confidence-weighted L1 between projected joints and 2D targets.

    ``joints`` (B, K, 3) canonical and centroid-centred (detached), rotated by R(rot6d) and projected with
    the weak-perspective ``cam`` (B, 3) = [s, tx, ty]; ``joints2d`` (B, K, 2) in normalised crop coords,
    ``conf`` (B, K) in [0, 1]. Mean of |dx|, |dy| per joint, times confidence, mean over B x K.
    """
    from megaviewer.camera import weak_perspective_project

    rotated = joints.detach().to(rot6d.dtype) @ rot6d_to_matrix(rot6d).transpose(-1, -2)
    projected = weak_perspective_project(rotated, cam)
    per_joint = (projected - joints2d.to(projected.dtype)).abs().mean(dim=-1)
    return (per_joint * conf.to(per_joint.dtype)).mean()


@dataclass
class LossWeights:
    """All 1.0 in the original (§3); exposed for ablations."""

    token: float = 1.0
    rotation: float = 1.0
    reprojection: float = 1.0


def hmr_losses(logits: torch.Tensor, rot6d: torch.Tensor, cam: torch.Tensor, targets: torch.Tensor,
               visible: torch.Tensor, rot_gt: torch.Tensor, joints2d: torch.Tensor, conf: torch.Tensor,
               tokenizer: nn.Module, regressor: torch.Tensor, weights: LossWeights | None = None,
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """Total conditioned-training loss and its logged parts (token CE, rotation MSE, 2D L1, accuracy)."""
    weights = weights or LossWeights()
    tok = masked_token_loss(logits, targets, visible)
    rot = rotation_loss(rot6d, rot_gt)
    joints = decoded_joints(tokenizer, completed_tokens(targets, visible, logits), regressor)
    rep = reprojection_loss(joints, rot6d, cam, joints2d, conf)
    total = weights.token * tok.loss + weights.rotation * rot + weights.reprojection * rep
    logs = {"token_ce": float(tok.loss.detach()), "rot_mse": float(rot.detach()),
            "reproj_l1": float(rep.detach()), "masked_fraction": tok.masked / max(1, targets.numel())}
    if tok.masked:
        logs["masked_acc"] = tok.accuracy
    return total, logs
