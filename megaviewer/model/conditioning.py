"""Conditioners: turn an image crop and/or 2D keypoints into decoder tokens plus a pooled feature.

Each conditioner maps its input to ``(tokens (B, L, D), pooled (B, C))``. The decoder receives the
concatenation of all token sequences (canonical order: image, keypoints, landmarks) in front of
``[cls, mesh slots]`` (with ``merge_landmark_tokens`` each landmark's token is added onto its keypoint's);
the rotation/camera head reads the concatenation of the pooled features. Inputs are passed as a dict keyed
by conditioner kind (``{"image": ..., "keypoints": ..., "landmarks": ...}``); landmarks are the detector's
3D world landmarks at the 17 COCO points (:mod:`megaviewer.vision.landmarks`).

``CondEncoding`` holds the result so generation computes backbone features once and reuses them for all
steps and all samples (the original recomputed the backbone for every sample and step:
docs/original-implementation.md §10.12).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from megaviewer.model.config import ConditioningConfig
from megaviewer.model.lifter import KeypointLifter, LifterConfig
from megaviewer.model.timm_import import import_timm
from megaviewer.model.transformer import sinusoidal_encoding, trunc_normal_

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class CondEncoding:
    """Encoded conditioning for a batch of ``batch`` items (tokens/pooled are None when absent)."""

    tokens: torch.Tensor | None  # (B, L, D) decoder conditioning tokens
    pooled: torch.Tensor | None  # (B, C) features for the rotation/camera head
    batch: int

    @classmethod
    def empty(cls, batch: int) -> CondEncoding:
        """No conditioning (pretraining / unconditional generation)."""
        return cls(None, None, batch)

    def repeat(self, times: int) -> CondEncoding:
        """Each item repeated ``times`` times consecutively (item-major: b0,b0,..,b1,b1,..).

        Used for Q samples per image: features are copied, never recomputed.
        """
        def rep(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.repeat_interleave(times, dim=0)

        return CondEncoding(rep(self.tokens), rep(self.pooled), self.batch * times)

    def to(self, device: torch.device | str) -> CondEncoding:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return CondEncoding(move(self.tokens), move(self.pooled), self.batch)


def _create_backbone(name: str, image_size: tuple[int, int]) -> nn.Module:
    """A timm model without classifier and without pretrained weights (we never download anything).

    ViT-like models need the input size at construction (position embeddings); CNNs reject the
    ``img_size`` argument, so we try with it first and fall back without it.
    """
    timm = import_timm()
    try:
        return timm.create_model(name, pretrained=False, features_only=False, num_classes=0,
                                 img_size=image_size)
    except TypeError:
        return timm.create_model(name, pretrained=False, features_only=False, num_classes=0)


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local ``.safetensors`` state dict into a timm backbone (shape-checked).

    Classifier tensors in the file are ignored (the backbone is built with ``num_classes=0``); any
    other missing or unexpected tensor is an error naming the tensors.
    """
    from megaviewer.io.checkpoint import CheckpointError, load_state_into, load_tensors

    tensors = load_tensors(path)
    own = backbone.state_dict()
    head = str(getattr(backbone, "pretrained_cfg", {}).get("classifier") or "")
    heads = tuple(f"{h}." for h in (head, "fc", "head", "classifier") if h)
    tensors = {k: v for k, v in tensors.items() if k in own or not k.startswith(heads)}
    missing = sorted(set(own) - set(tensors))
    if missing:
        raise CheckpointError(f"{path} lacks backbone tensors: {', '.join(missing[:8])}"
                              f"{' ...' if len(missing) > 8 else ''}")
    load_state_into(backbone, tensors, path, strict=True)


class ImageConditioner(nn.Module):
    """Any timm backbone -> feature tokens -> Linear(C, D) + fixed sinusoidal code (docs/original-implementation.md §4).

    Input: (B, 3, H, W) crop normalised with ``self.mean``/``self.std`` (ImageNet by default). CNN
    feature maps (B, C, h, w) are flattened row-major into h*w tokens; ViT outputs keep their patch tokens
    (prefix/cls tokens dropped). The pooled feature is the mean over tokens (dim C), as the original's
    spatial average pooling. Note timm's ``hrnet_w48`` ends in its classification neck (2048 channels),
    not the original's 720-channel 4-branch concatenation.
    """

    input_key = "image"

    def __init__(self, backbone: str, dim: int, image_size: tuple[int, int] = (224, 224),
                 weights: str | Path | None = None):
        super().__init__()
        self.backbone = _create_backbone(backbone, tuple(image_size))
        if weights is not None:
            load_backbone_weights(self.backbone, weights)
        self.pooled_dim = int(self.backbone.num_features)
        self.dim = dim
        self.proj = nn.Linear(self.pooled_dim, dim)
        cfg = getattr(self.backbone, "pretrained_cfg", {}) or {}
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(cfg.get("std", IMAGENET_STD))

    def feature_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features as a token sequence (B, L, C)."""
        feats = self.backbone.forward_features(images)
        if isinstance(feats, (list, tuple)):
            feats = feats[-1]
        if feats.ndim == 4:
            if getattr(self.backbone, "output_fmt", "NCHW") == "NHWC":  # e.g. timm Swin
                return feats.flatten(1, 2)
            return feats.flatten(2).transpose(1, 2)
        if feats.ndim == 3:
            prefix = int(getattr(self.backbone, "num_prefix_tokens", 0))
            return feats[:, prefix:]
        raise ValueError(f"unsupported backbone feature shape {tuple(feats.shape)}")

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.feature_tokens(images)
        pe = sinusoidal_encoding(feats.shape[1], self.dim, device=feats.device, dtype=feats.dtype)
        return self.proj(feats) + pe, feats.mean(dim=1)


class KeypointConditioner(nn.Module):
    """COCO-17 keypoints (B, K, 3) = (x, y, confidence), x/y in normalised crop coords [-1, 1]; with
    ``channels=4`` the detector's 3D landmarks (B, K, 4) = (x, y, z metres around the hips, visibility).

    One token per keypoint: MLP([x, y, c]) + learned keypoint-type embedding. Confidence-aware: a
    keypoint with confidence 0 is "missing" -- its coordinates are zeroed (so a detector's garbage
    coordinates cannot leak in) and a learned "missing" embedding is added. Confidences are clamped to
    [0, 1] (NaN counts as missing). The pooled feature is a small MLP on all (masked) keypoints
    flattened, which keeps joint identity -- needed to infer the global rotation -- unlike a mean over
    per-keypoint features. The last channel is always the confidence; a person without landmarks passes
    zeros, so every token is "missing" and the model falls back on the other conditioners.
    """

    input_key = "keypoints"

    def __init__(self, num_keypoints: int, dim: int, hidden: int = 256, global_token: bool = False,
                 lift_head: bool = False, channels: int = 3):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.channels = channels
        self.point_mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.type_emb = nn.Parameter(torch.zeros(num_keypoints, dim))
        self.missing_emb = nn.Parameter(torch.zeros(dim))
        self.pool_mlp = nn.Sequential(nn.Linear(channels * num_keypoints, hidden), nn.GELU(),
                                      nn.Linear(hidden, hidden))
        self.pooled_dim = hidden
        # Optional extra token from the pooled feature: an MLP over all keypoints at once, which learns the
        # 2D -> 3D pose relation fast (as a direct lifter does), handed to every decoder row.
        self.global_proj = nn.Linear(hidden, dim) if global_token else None
        # Optional linear read-out of the 17 camera-frame joints (centred, metres) from the pooled feature, trained
        # by an auxiliary lifting loss so the feature learns 3D pose with dense supervision; inference never
        # needs it.
        self.lift_head = nn.Linear(hidden, 3 * num_keypoints) if lift_head else None
        trunc_normal_(self.type_emb)
        trunc_normal_(self.missing_emb)

    def forward(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.num_keypoints, self.channels)
        if keypoints.ndim != 3 or keypoints.shape[1:] != shape:
            raise ValueError(f"points must be (B, {shape[0]}, {shape[1]}), got {tuple(keypoints.shape)}")
        conf = torch.nan_to_num(keypoints[..., -1:], nan=0.0).clamp(0.0, 1.0)
        present = conf > 0
        coords = keypoints[..., :-1]
        coords = torch.where(present, coords, torch.zeros_like(coords))  # NaN-safe
        clean = torch.cat([coords, conf], dim=-1)
        tokens = self.point_mlp(clean) + self.type_emb + (~present) * self.missing_emb
        pooled = self.pool_mlp(clean.flatten(1))
        if self.global_proj is not None:
            tokens = torch.cat([tokens, self.global_proj(pooled)[:, None]], dim=1)
        return tokens, pooled


ConditionerFactory = Callable[[ConditioningConfig, int], nn.Module]
_CONDITIONERS: dict[str, ConditionerFactory] = {
    "image": lambda cfg, dim: ImageConditioner(cfg.image_backbone, dim, cfg.image_size, cfg.backbone_weights),
    "keypoints": lambda cfg, dim: KeypointConditioner(cfg.num_keypoints, dim, cfg.keypoint_hidden,
                                                      cfg.keypoint_global_token, cfg.keypoint_lift_head),
    "landmarks": lambda cfg, dim: KeypointConditioner(cfg.num_landmarks, dim, cfg.keypoint_hidden, channels=4),
}


def register_conditioner(kind: str, factory: ConditionerFactory) -> None:
    """Register a conditioner factory; the kind must also be in ``config.CONDITIONER_ORDER``."""
    _CONDITIONERS[kind] = factory


class ConditioningStack(nn.Module):
    """All configured conditioners; concatenates their tokens and pooled features."""

    def __init__(self, config: ConditioningConfig, dim: int):
        super().__init__()
        self.kinds = tuple(config.kinds)
        self.conditioners = nn.ModuleDict({kind: _CONDITIONERS[kind](config, dim) for kind in self.kinds})
        self.pooled_dim = sum(int(c.pooled_dim) for c in self.conditioners.values())
        # ConditioningConfig.merge_landmark_tokens (keypoints precede landmarks in CONDITIONER_ORDER)
        self.merge_landmark_tokens = config.merges_landmarks
        self.lifter: KeypointLifter | None = None
        if config.landmark_lifter_hidden:
            self.lifter = KeypointLifter(LifterConfig(config.num_keypoints, config.landmark_lifter_hidden,
                                                      config.landmark_lifter_depth)).requires_grad_(False)

    def with_lifted_landmarks(self, cond: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        """``cond`` with the lifter's landmarks for every person whose landmarks are all absent (visibility 0)."""
        if self.lifter is None:
            return cond
        landmarks = cond["landmarks"]
        absent = ~(torch.nan_to_num(landmarks[..., -1], nan=0.0) > 0).any(dim=-1)
        if not bool(absent.any()):
            return cond
        with torch.no_grad():
            lifted = self.lifter.landmarks(cond["keypoints"]).to(landmarks.dtype)
        return {**cond, "landmarks": torch.where(absent[:, None, None], lifted, landmarks)}

    def forward(self, cond: Mapping[str, torch.Tensor]) -> CondEncoding:
        missing = [k for k in self.kinds if k not in cond]
        if missing:
            raise ValueError(f"conditioning inputs missing: {missing} (model expects {list(self.kinds)})")
        cond = self.with_lifted_landmarks(cond)
        tokens, pooled = [], []
        for kind in self.kinds:
            t, p = self.conditioners[kind](cond[kind])
            if kind == "landmarks" and self.merge_landmark_tokens:
                joints = t.shape[1]  # onto the keypoint tokens (the last conditioner before it), joint by joint
                tokens[-1] = torch.cat([tokens[-1][:, :joints] + t, tokens[-1][:, joints:]], dim=1)
            else:
                tokens.append(t)
            pooled.append(p)
        batches = {t.shape[0] for t in tokens}
        if len(batches) != 1:
            raise ValueError(f"conditioning inputs disagree on batch size: {sorted(batches)}")
        return CondEncoding(torch.cat(tokens, dim=1), torch.cat(pooled, dim=1), batches.pop())
