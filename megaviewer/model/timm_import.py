"""Import timm beside a CPU-only PyTorch whose torchvision wheel was built for CUDA.

Why this exists: on x86-64 Linux, PyPI's torchvision wheels are CUDA builds. Beside a CPU build of torch
(which saves ~5 GB of disk and is what ``scripts/setup.sh`` installs on a machine without an NVIDIA GPU)
their compiled operators cannot load; torchvision then degrades to its pure-Python parts, except that
``torchvision/_meta_registrations.py`` registers fake kernels for ``torchvision::nms`` and ``::qnms``
without checking that the operators exist, so ``import torchvision`` (and therefore ``import timm``)
raises ``RuntimeError: operator torchvision::nms does not exist``.

timm needs only torchvision's Python parts (e.g. ``FrozenBatchNorm2d``); megaviewer never calls a
torchvision operator. So when, and only when, that exact failure happens, we declare the two operator
schemas (no kernels) and import again. Calling ``torchvision.ops.nms`` afterwards raises a clear
``NotImplementedError`` from the dispatcher rather than silently misbehaving. With a matching torch and
torchvision nothing is patched.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch

_MISSING_OPERATORS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_declared: list[torch.library.Library] = []  # the library objects must stay alive for the schemas to stay


def _forget_torchvision() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _operator_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _declare_missing_operators() -> list[str]:
    missing = [name for name in _MISSING_OPERATORS if not _operator_exists(name)]
    if missing:
        library = torch.library.Library("torchvision", "FRAGMENT")
        for name in missing:
            library.define(_MISSING_OPERATORS[name])
        _declared.append(library)
    return missing


def import_torchvision() -> tuple[ModuleType, list[str]]:
    """``import torchvision``, declaring the operators a CUDA wheel beside a CPU torch lacks.

    Returns the module and the operator names that had to be declared (empty when nothing was patched).
    Any other import failure propagates unchanged.
    """
    try:
        import torchvision

        return torchvision, []
    except RuntimeError as exc:
        if not any(f"torchvision::{name} does not exist" in str(exc) for name in _MISSING_OPERATORS):
            raise
    _forget_torchvision()  # the failed import left half-initialised modules behind
    declared = _declare_missing_operators()
    import torchvision

    return torchvision, declared


def import_timm() -> ModuleType:
    """``import timm`` (after making torchvision importable; see the module docstring)."""
    import_torchvision()
    import timm

    return timm
