"""Dataclass configs for MEGA and named presets (timm-style registry).

Why a registry: the paper-sized model, the CPU model we ship and the tiny test model are the same class
with different numbers; naming them keeps scripts, checkpoints and tests talking about the same thing.
Configs round-trip through JSON (``to_dict``/``from_dict``) so a checkpoint folder is self-describing.
This module imports neither torch nor timm, so reading a config stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

KIND = "mega"
#: Canonical order of the conditioners; their token sequences are concatenated in this order.
CONDITIONER_ORDER: tuple[str, ...] = ("image", "keypoints", "landmarks")


@dataclass
class ConditioningConfig:
    """Which conditioners feed the decoder (none = unconditional pretraining model).

    ``kinds`` is normalised to the canonical order ``("image", "keypoints", "landmarks")`` so that the decoder token
    order does not depend on how a user spelled the list.
    """

    kinds: tuple[str, ...] = ()
    image_backbone: str = "resnet50"
    image_size: tuple[int, int] = (224, 224)  # (H, W) of the crop the backbone sees
    backbone_weights: str | None = None  # local .safetensors file; nothing is ever downloaded
    num_keypoints: int = 17  # COCO-17
    keypoint_hidden: int = 256  # width of the keypoint MLPs and of the keypoint pooled feature
    # One more conditioning token made from the pooled feature of all keypoints together (see
    # KeypointConditioner): the decoder then reads the whole skeleton at once instead of assembling it from
    # 17 separate keypoint tokens through attention.
    keypoint_global_token: bool = False
    # A linear read-out of the 3D joints from the pooled keypoint feature, for an auxiliary lifting loss in
    # training (dense 3D supervision of that feature); unused at inference.
    keypoint_lift_head: bool = False
    # The detector's 3D world landmarks at the COCO-17 points (x, y, z metres around the hips, visibility).
    num_landmarks: int = 17
    # A frozen keypoint lifter (megaviewer.model.lifter) of this width and depth answers for the landmarks of
    # people who have none (0: no lifter; absent landmarks then read as "missing").
    landmark_lifter_hidden: int = 0
    landmark_lifter_depth: int = 3
    # Add each landmark's embedding to the token of its keypoint instead of giving it a token of its own: the
    # same information per joint in 17 fewer decoder tokens (a sixth of the decoder's sequence, and of its cost).
    merge_landmark_tokens: bool = False

    def __post_init__(self) -> None:
        kinds = tuple(self.kinds)
        unknown = [k for k in kinds if k not in CONDITIONER_ORDER]
        if unknown:
            raise ValueError(f"unknown conditioning kinds {unknown}; choose among {list(CONDITIONER_ORDER)}")
        self.kinds = tuple(k for k in CONDITIONER_ORDER if k in kinds)
        size = self.image_size
        self.image_size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if self.num_keypoints < 1 or self.keypoint_hidden < 1:
            raise ValueError("num_keypoints and keypoint_hidden must be positive")
        if self.landmark_lifter_hidden and not {"keypoints", "landmarks"} <= set(self.kinds):
            raise ValueError("a landmark lifter needs both the keypoint and the landmark conditioners")
        if self.merges_landmarks and self.num_landmarks != self.num_keypoints:
            raise ValueError("merged landmark tokens need one landmark per keypoint "
                             f"({self.num_landmarks} landmarks, {self.num_keypoints} keypoints)")

    @property
    def merges_landmarks(self) -> bool:
        """Whether the landmarks ride on the keypoint tokens: asked for, and both conditioners present."""
        return self.merge_landmark_tokens and {"keypoints", "landmarks"} <= set(self.kinds)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        data["image_size"] = list(self.image_size)
        if not self.landmark_lifter_hidden:  # a model without a lifter keeps the config (and fingerprint) it had
            del data["landmark_lifter_hidden"], data["landmark_lifter_depth"]
        if not self.merge_landmark_tokens:  # likewise for models with a token per landmark
            del data["merge_landmark_tokens"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConditioningConfig:
        _check_keys(cls, data)
        return cls(**data)


@dataclass
class MegaConfig:
    """MEGA transformer sizes (paper Sec. 3.2; docs/original-implementation.md §4). Defaults are the paper's numbers."""

    seq_len: int = 54  # N tokens per mesh
    vocab: int = 512  # S codebook entries
    dim: int = 1024  # D
    enc_depth: int = 12
    dec_depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    head_dropout: float = 0.5  # dropout of the rotation/camera head (original value)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    kind: str = KIND

    def __post_init__(self) -> None:
        if isinstance(self.conditioning, dict):
            self.conditioning = ConditioningConfig.from_dict(self.conditioning)
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if min(self.seq_len, self.vocab, self.dim, self.enc_depth, self.heads) < 1 or self.dec_depth < 1:
            raise ValueError("seq_len, vocab, dim, depths and heads must be positive")
        if self.kind != KIND:
            raise ValueError(f"config kind {self.kind!r} is not {KIND!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["conditioning"] = self.conditioning.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MegaConfig:
        _check_keys(cls, data)
        data = dict(data)
        data["conditioning"] = ConditioningConfig.from_dict(data.get("conditioning", {}))
        return cls(**data)


def _check_keys(cls: type, data: dict[str, Any]) -> None:
    """Unknown keys are an error: a typo in a config file must not silently fall back to a default."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")


_PRESETS: dict[str, Callable[[], MegaConfig]] = {}


def register_preset(name: str) -> Callable[[Callable[[], MegaConfig]], Callable[[], MegaConfig]]:
    """Decorator registering a zero-argument factory under ``name``."""

    def wrap(factory: Callable[[], MegaConfig]) -> Callable[[], MegaConfig]:
        if name in _PRESETS:
            raise ValueError(f"preset {name!r} already registered")
        _PRESETS[name] = factory
        return factory

    return wrap


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def get_preset(name: str, **overrides: Any) -> MegaConfig:
    """A fresh config for preset ``name`` with dataclass fields replaced by ``overrides``."""
    if name not in _PRESETS:
        raise KeyError(f"unknown MEGA preset {name!r}; available: {list_presets()}")
    config = _PRESETS[name]()
    if "conditioning" in overrides and isinstance(overrides["conditioning"], dict):
        overrides["conditioning"] = ConditioningConfig.from_dict(overrides["conditioning"])
    return replace(config, **overrides) if overrides else config


@register_preset("paper")
def _paper() -> MegaConfig:
    """The paper's transformer: D=1024, 12 encoder / 4 decoder blocks of 4 heads, HRNet-W48 image input."""
    return MegaConfig(conditioning=ConditioningConfig(kinds=("image",), image_backbone="hrnet_w48"))


@register_preset("cpu_small")
def _cpu_small() -> MegaConfig:
    """A larger keypoint-conditioned CPU model (D=256, 4 + 4 blocks) for longer training budgets."""
    return MegaConfig(dim=256, enc_depth=4, dec_depth=4, heads=4,
                      conditioning=ConditioningConfig(kinds=("keypoints",), keypoint_hidden=256))


@register_preset("cpu_fast")
def _cpu_fast() -> MegaConfig:
    """The shipped default: keypoint-conditioned, D=128, 3 + 3 blocks. Small enough that the whole default
    recipe (``scripts/train_default.py``) trains on a 2-core CPU and inference takes a few milliseconds; the
    encoder is only used by stochastic generation."""
    return MegaConfig(dim=128, enc_depth=3, dec_depth=3, heads=4,
                      conditioning=ConditioningConfig(kinds=("keypoints",), keypoint_hidden=128))


@register_preset("cpu_fast_merged")
def _cpu_fast_merged() -> MegaConfig:
    """``cpu_fast`` whose landmarks, when it reads them, ride on the keypoint tokens (``merge_landmark_tokens``):
    the same transformer (a pre-trained ``cpu_fast`` loads as it is), 17 instead of 34 conditioning tokens."""
    plain = _cpu_fast()
    return replace(plain, conditioning=replace(plain.conditioning, merge_landmark_tokens=True))


@register_preset("cpu_fast_global")
def _cpu_fast_global() -> MegaConfig:
    """``cpu_fast`` with the whole-skeleton keypoint token (``keypoint_global_token``)."""
    return MegaConfig(dim=128, enc_depth=3, dec_depth=3, heads=4,
                      conditioning=ConditioningConfig(kinds=("keypoints",), keypoint_hidden=128,
                                                      keypoint_global_token=True))


@register_preset("cpu_fast_lift")
def _cpu_fast_lift() -> MegaConfig:
    """``cpu_fast_global`` plus the 3D-joint read-out trained by the auxiliary lifting loss."""
    return MegaConfig(dim=128, enc_depth=3, dec_depth=3, heads=4,
                      conditioning=ConditioningConfig(kinds=("keypoints",), keypoint_hidden=128,
                                                      keypoint_global_token=True, keypoint_lift_head=True))


@register_preset("test_tiny")
def _test_tiny() -> MegaConfig:
    """A few-thousand-parameter model for unit tests (milliseconds per forward on a CPU)."""
    return MegaConfig(dim=32, enc_depth=1, dec_depth=1, heads=2,
                      conditioning=ConditioningConfig(kinds=("keypoints",), keypoint_hidden=32))
