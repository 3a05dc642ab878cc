"""A keypoint lifter: 17 crop keypoints -> 17 hip-centred 3D joints, the landmarks a model reads when the
detector gave none.

Why: a model conditioned on keypoints and the detector's 3D landmarks learns to lean on the landmarks, and a
keypoints file from another detector (or any person without landmarks) then gets a much worse body than a
keypoint model would give. A small MLP trained on the same synthetic observations (``megaviewer-train
lifter``) predicts the 17 COCO joints in 3D from the keypoints alone, in the landmarks' own format (metres
around the midpoint of the hips, OpenCV camera axes, see :mod:`megaviewer.vision.landmarks`). The
conditioning stack (:class:`megaviewer.model.conditioning.ConditioningStack`) feeds its answer to the landmark
conditioner for every person whose landmarks are absent, so one model serves both kinds of input. Its
weights are frozen inside the MEGA checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

KIND = "keypoint-lifter"
HIP_JOINTS = (11, 12)  # COCO-17 left and right hip
LIFTED_VISIBILITY = 1.0  # the visibility the lifted landmarks carry (0 would read as "absent")


def hip_centred(joints: torch.Tensor) -> torch.Tensor:
    """(..., 17, 3) joints -> the same joints around the midpoint of the hips (numpy arrays work too)."""
    return joints - joints[..., list(HIP_JOINTS), :].mean(-2, keepdims=True)


@dataclass
class LifterConfig:
    num_keypoints: int = 17
    hidden: int = 1024
    depth: int = 3
    kind: str = KIND

    def __post_init__(self) -> None:
        if min(self.num_keypoints, self.hidden, self.depth) < 1:
            raise ValueError("num_keypoints, hidden and depth must be positive")
        if self.kind != KIND:
            raise ValueError(f"config kind {self.kind!r} is not {KIND!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LifterConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown LifterConfig keys: {sorted(unknown)}")
        return cls(**data)


class KeypointLifter(nn.Module):
    """MLP (3K -> hidden x depth, GELU -> 3K) from crop keypoints (B, K, 3) = (x, y, confidence) to joints (B, K, 3).

    Missing keypoints (confidence 0 or NaN) enter as zeros, as the keypoint conditioner reads them."""

    def __init__(self, config: LifterConfig | None = None):
        super().__init__()
        self.config = config or LifterConfig()
        k = self.config.num_keypoints
        layers: list[nn.Module] = []
        width = 3 * k
        for _ in range(self.config.depth):
            layers += [nn.Linear(width, self.config.hidden), nn.GELU()]
            width = self.config.hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, 3 * k))

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        k = self.config.num_keypoints
        if keypoints.ndim != 3 or keypoints.shape[1:] != (k, 3):
            raise ValueError(f"keypoints must be (B, {k}, 3), got {tuple(keypoints.shape)}")
        conf = torch.nan_to_num(keypoints[..., 2:], nan=0.0).clamp(0.0, 1.0)
        xy = torch.where(conf > 0, torch.nan_to_num(keypoints[..., :2]), torch.zeros_like(keypoints[..., :2]))
        joints = self.net(torch.cat([xy, conf], dim=-1).flatten(1)).view(-1, k, 3)
        return hip_centred(joints)

    def landmarks(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(B, K, 4): the lifted joints with the visibility :data:`LIFTED_VISIBILITY`, as landmarks."""
        joints = self(keypoints)
        return torch.cat([joints, torch.full_like(joints[..., :1], LIFTED_VISIBILITY)], dim=-1)


def save_lifter(folder: str | Path, lifter: KeypointLifter) -> Path:
    from megaviewer.io.checkpoint import save_checkpoint

    return save_checkpoint(folder, lifter, lifter.config.to_dict())


def load_lifter(folder: str | Path) -> KeypointLifter:
    """A trained lifter from its folder (``config.json`` + ``model.safetensors``), frozen, in eval mode."""
    from megaviewer.io.checkpoint import CheckpointError, load_checkpoint_tensors, load_config, load_state_into

    raw = load_config(folder, expected_kind=KIND)
    try:
        lifter = KeypointLifter(LifterConfig.from_dict(raw))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{Path(folder) / 'config.json'} does not describe a keypoint lifter: {exc}") from None
    load_state_into(lifter, load_checkpoint_tensors(folder), folder, strict=True)
    return lifter.eval().requires_grad_(False)
