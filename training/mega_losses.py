"""MEGA training losses (docs/original-implementation.md §5, §7), shared by pre-training, conditioned training and the
image path.

* Token loss: cross-entropy on MASKED positions only, averaged over all masked positions of the batch
  (flattened). Visible positions are copied from the input, so scoring them would reward a trivial copy.
  When nothing is masked the original skipped the step (NaN loss); we return an exact zero that is still
  connected to the graph, so DDP ranks stay in lock-step and the loop needs no special case.
* Rotation loss: MSE over the 9 entries of ``rot6d_to_matrix(pred)`` vs the GT camera-frame rotation.
* 2D reprojection loss: joints of the mesh decoded from [GT tokens at visible positions, argmax at masked
  positions] -- computed WITHOUT gradient, so this loss only trains the rotation/camera head -- rotated by the
  predicted R (row vectors: ``J @ R^T``), weak-perspective projected with the predicted camera, L1 averaged
  over x/y, times the joint confidence, mean over B x K (as the original). With ``reprojection_rows`` = R only
  the first R samples of the batch are decoded and scored (an unbiased estimate of the same mean): decoding
  all 64 meshes was a quarter of a CPU training step, for a loss that only trains the small rotation/camera
  head.
* Geometry loss (ours, off unless ``LossWeights.geometry`` > 0): the mesh the frozen tokenizer decodes from
  the model's EXPECTED code vectors (softmax over the codebook at masked positions, the GT code at visible
  ones) against the mesh of the GT tokens, mean per-vertex distance in metres. Why: cross-entropy scores
  every wrong code alike, a code that moves a hand by 1 mm as badly as one that moves it by 30 cm; this term
  tells the model which mistakes are geometrically cheap, through the (differentiable, frozen) decoder.
  The shipped recipe leaves it off: over 600 conditioned steps from the pre-trained model (weight 10) it did
  not lower the deterministic PA-MPJPE and made each step about 45 % slower.
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


def masked_token_loss(logits: torch.Tensor, targets: torch.Tensor, visible: torch.Tensor,
                      soft_targets: torch.Tensor | None = None) -> TokenLoss:
    """CE of ``logits`` (B, N, S) against ``targets`` (B, N) on positions where ``visible`` is False; with
    ``soft_targets`` (S, S), against the distribution ``soft_targets[target]`` instead of a one-hot."""
    masked = ~visible
    count = int(masked.sum())
    if count == 0:
        return TokenLoss(logits.sum() * 0.0, float("nan"), 0)
    picked = logits[masked]
    wanted = targets[masked]
    goal = wanted if soft_targets is None else soft_targets.to(picked.device)[wanted]
    loss = F.cross_entropy(picked.float(), goal)
    with torch.no_grad():
        accuracy = float((picked.argmax(dim=-1) == wanted).float().mean())
    return TokenLoss(loss, accuracy, count)


def code_neighbour_targets(codebook: torch.Tensor, smoothing: float) -> torch.Tensor:
    """(S, S) target distributions that keep ``1 - smoothing`` of the mass on the true code and spread
    ``smoothing`` over the other codes in proportion to exp(-d^2 / t), d the distance between code vectors and
    t the median squared distance of a code to its nearest neighbour.

    Why: cross-entropy against a one-hot scores every wrong code alike, although the decoder maps nearby code
    vectors to nearby shapes; these targets tell the model which mistakes are cheap, for the cost of one
    (S, S) table (the geometry loss below says the same through the decoder, at 45 % more time per step).
    """
    code = codebook.float()
    dist2 = torch.cdist(code, code).pow(2)
    dist2.fill_diagonal_(float("inf"))
    scale = dist2.min(dim=1).values.median().clamp_min(1e-12)
    neighbours = torch.softmax(-dist2 / scale, dim=1)
    return (1.0 - smoothing) * torch.eye(code.shape[0]) + smoothing * neighbours


def lifting_loss(lifted: torch.Tensor, joints3d: torch.Tensor) -> torch.Tensor:
    """Mean distance (m) between read-out joints and the true camera-frame joints, both centred on their mean
    (the pose, not the placement)."""
    centre = lambda j: j - j.mean(dim=1, keepdim=True)  # noqa: E731
    return (centre(lifted.float()) - centre(joints3d.float())).norm(dim=-1).mean()


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


def geometry_loss(logits: torch.Tensor, targets: torch.Tensor, visible: torch.Tensor,
                  tokenizer: nn.Module) -> torch.Tensor:
    """Mean per-vertex distance (m) between the soft-decoded prediction and the decoded GT tokens.

    Soft decoding: latent = softmax(logits) @ codebook at masked positions, the GT code at visible ones,
    through the frozen decoder WITH gradient (to the logits only; the tokenizer's parameters stay frozen).
    """
    codebook = tokenizer.quantizer.codebook
    expected = torch.softmax(logits.float(), dim=-1) @ codebook.float()
    latents = torch.where(visible[..., None], F.embedding(targets, codebook).float(), expected)
    predicted = tokenizer.decode_latents(latents.to(codebook.dtype))
    with torch.no_grad():
        wanted = tokenizer.decode(targets)
    return (predicted - wanted).norm(dim=-1).mean()


@dataclass
class LossWeights:
    """All 1.0 in the original (docs/original-implementation.md §5); exposed for ablations. ``geometry`` is our
    addition (module docstring)."""

    token: float = 1.0
    rotation: float = 1.0
    reprojection: float = 1.0
    geometry: float = 0.0
    code_smoothing: float = 0.0  # share of the token target moved to neighbouring codes (code_neighbour_targets)
    lifting: float = 0.0  # weight of the auxiliary 3D-joint read-out loss (lifting_loss), for models that have one


def hmr_losses(logits: torch.Tensor, rot6d: torch.Tensor, cam: torch.Tensor, targets: torch.Tensor,
               visible: torch.Tensor, rot_gt: torch.Tensor, joints2d: torch.Tensor, conf: torch.Tensor,
               tokenizer: nn.Module, regressor: torch.Tensor, weights: LossWeights | None = None,
               reprojection_rows: int | None = None,
               soft_targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Total conditioned-training loss and its logged parts (token CE, rotation MSE, 2D L1, accuracy).

    ``reprojection_rows``: score the 2D loss on the first that many samples only (module docstring);
    ``soft_targets``: the table of :func:`code_neighbour_targets` (when ``weights.code_smoothing`` > 0)."""
    weights = weights or LossWeights()
    tok = masked_token_loss(logits, targets, visible, soft_targets)
    rot = rotation_loss(rot6d, rot_gt)
    r = targets.shape[0] if reprojection_rows is None else max(1, min(reprojection_rows, targets.shape[0]))
    joints = decoded_joints(tokenizer, completed_tokens(targets[:r], visible[:r], logits[:r]), regressor)
    rep = reprojection_loss(joints, rot6d[:r], cam[:r], joints2d[:r], conf[:r])
    total = weights.token * tok.loss + weights.rotation * rot + weights.reprojection * rep
    logs = {"token_ce": float(tok.loss.detach()), "rot_mse": float(rot.detach()),
            "reproj_l1": float(rep.detach()), "masked_fraction": tok.masked / max(1, targets.numel())}
    if weights.geometry > 0:
        geo = geometry_loss(logits, targets, visible, tokenizer)
        total = total + weights.geometry * geo
        logs["geometry_m"] = float(geo.detach())
    if tok.masked:
        logs["masked_acc"] = tok.accuracy
    return total, logs
