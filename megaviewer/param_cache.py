"""A cache key for values computed from parameters (fixed kernels, constant encoder outputs).

Why version counters: an optimiser step, ``load_state_dict`` or any in-place edit bumps a tensor's
``_version``, and ``.to()`` / ``.half()`` change its storage, dtype or device, so a key built from these
changes whenever a cached value could be stale -- without hashing the weights on every call.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def parameters_key(params: Iterable[torch.Tensor]) -> tuple:
    """Identity of the current values of ``params``: equal keys mean nothing has changed them."""
    return tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in params)
