"""Where shipped resources and caches live.

Resources (tokenizer, default model, body assets) sit in the repository's ``resources/`` folder; an
installed copy can point elsewhere with ``MEGAVIEWER_RESOURCES``. Nothing here downloads anything.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shown_path(path: str | Path) -> str:
    """A path as reports and README name it: relative to the repository when inside it, else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def resources_dir() -> Path:
    """The folder holding shipped checkpoints and body assets."""
    override = os.environ.get("MEGAVIEWER_RESOURCES")
    return Path(override) if override else REPO_ROOT / "resources"


def body_assets_path(name: str = "anny") -> Path:
    """Precomputed, Anny-free assets of a body topology (faces, regressors, display upsampling)."""
    return resources_dir() / "body" / f"{name}.safetensors"


def tokenizer_dir() -> Path:
    return resources_dir() / "tokenizer"


def default_model_dir() -> Path:
    return resources_dir() / "default"


def anny_cache_dir() -> Path:
    """Anny's cache: honour ``ANNY_CACHE_DIR`` when set, else a repo-local folder built once by CI/setup."""
    override = os.environ.get("ANNY_CACHE_DIR")
    return Path(override) if override else REPO_ROOT / ".anny_cache"
