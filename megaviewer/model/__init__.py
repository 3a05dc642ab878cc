"""The MEGA transformer, its conditioners (image, 2D keypoints) and its rotation/camera head."""

from megaviewer.model.conditioning import (
    CondEncoding,
    ConditioningStack,
    ImageConditioner,
    KeypointConditioner,
    register_conditioner,
)
from megaviewer.model.config import ConditioningConfig, MegaConfig, get_preset, list_presets, register_preset
from megaviewer.model.heads import RotCamHead
from megaviewer.model.mega import Mega, MegaOutput, load_mega, save_mega

__all__ = [
    "CondEncoding",
    "ConditioningConfig",
    "ConditioningStack",
    "ImageConditioner",
    "KeypointConditioner",
    "Mega",
    "MegaConfig",
    "MegaOutput",
    "RotCamHead",
    "get_preset",
    "list_presets",
    "load_mega",
    "register_conditioner",
    "register_preset",
    "save_mega",
]
