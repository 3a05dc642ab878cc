"""Shared fixtures: small, made in code, cached per session where they are expensive."""

from __future__ import annotations

import pytest
import torch

# Loaded first on purpose: in a process that has already run MediaPipe, the first import of triton (pulled in by
# torch._dynamo, e.g. on the first AdamW step) segfaults. Importing it here makes every test-file order safe.
import torch._dynamo  # noqa: F401


@pytest.fixture(scope="session")
def anny_body():
    from megaviewer.body.anny_body import AnnyBody

    return AnnyBody()


@pytest.fixture(scope="session")
def body_assets():
    from megaviewer.body.assets import BodyAssets

    return BodyAssets.load()


@pytest.fixture(scope="session")
def synthetic_meshes(anny_body):
    from training.data.meshes import SyntheticMeshes

    return SyntheticMeshes(anny_body)


@pytest.fixture()
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
