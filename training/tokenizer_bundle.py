"""Keep the tokenizer a MEGA run used inside its checkpoint folder (``final/tokenizer/``).

Why: a MEGA checkpoint predicts token ids, which mean something only to the exact tokenizer (codebook and
decoder) its pool was made with. The shipped ``resources/tokenizer`` changes whenever a recipe installs a new
one, and a tokenizer trained on the user's SMPL file exists only in the user's run folder, so a MEGA folder
that relies on finding "its" tokenizer elsewhere silently decodes garbage or fails to load. With a copy
inside, ``Engine.from_pretrained(final)`` (and so ``megaviewer infer --model DIR`` and the app's
File > Open model...) loads the right tokenizer and body without any other argument.

The copy is written from the tokenizer in memory (what the run actually trained against, even if its source
folder has changed since), plus the topology files of its source folder: ``body.safetensors`` for a body that is
not shipped (derived from the user's licensed SMPL file: the whole folder is then for the user's own use) and the
cached hierarchy (every level's vertex ids, as built).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from megaviewer.body.assets import BODY_FILE
from megaviewer.io.atomic import atomic_path
from megaviewer.tokenizer.cache import hierarchy_cache_path

TOKENIZER_SUBDIR = "tokenizer"


def bundle_tokenizer(tokenizer, final: str | Path) -> Path:
    """Write ``tokenizer`` (config.json + model.safetensors) and its topology files into ``final/tokenizer``,
    every file atomically; returns that folder. Raises when a body that is not shipped has no body data."""
    from megaviewer.body.assets import BodyAssets

    dest = Path(final) / TOKENIZER_SUBDIR
    tokenizer.save(dest)
    source = getattr(tokenizer, "source_dir", None)
    if source is not None and Path(source).resolve() == dest.resolve():
        return dest
    if source is not None:
        copy_topology(tokenizer, Path(source), dest)
    if tokenizer.config.body != "anny" and not (dest / BODY_FILE).exists():
        BodyAssets.for_tokenizer(tokenizer).save(dest / BODY_FILE)  # a clear error when nowhere to be found
    return dest


def copy_topology(tokenizer, source: Path, dest: Path) -> None:
    """Copy the topology files of ``tokenizer`` that its folder ``source`` holds into ``dest``, each atomically:
    the cached hierarchy, and ``body.safetensors`` for a body that is not
    shipped."""
    names = [hierarchy_cache_path(Path(), tokenizer.config.hierarchy_fingerprint).name]
    if tokenizer.config.body != "anny":
        names.append(BODY_FILE)
    for name in names:
        if (source / name).exists():
            with atomic_path(dest / name) as tmp:
                shutil.copyfile(source / name, tmp)
