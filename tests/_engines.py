"""Engines for tests: a tiny random-weight engine (milliseconds per recovery) and the shipped one if present.

The tiny engine's meshes are meaningless (random weights) but have the right shapes, topology and camera
plumbing, which is what the vision, export, render and CLI tests check. Tests that judge accuracy use
:func:`trained_engine` and skip while ``resources/default`` has not landed.
"""

from __future__ import annotations

import functools

import torch

from megaviewer.paths import default_model_dir, tokenizer_dir


def trained_model_available() -> bool:
    """The shipped default model has landed (its tokenizer must then be there too, or loading fails loudly)."""
    return (default_model_dir() / "model.safetensors").exists()


def build_tiny_engine(seed: int = 0, unconditional: bool = False, kinds: tuple[str, ...] = ("keypoints",),
                      lifter_hidden: int = 0):
    """A keypoint-conditioned ``test_tiny`` MEGA with random weights from ``seed`` (the global RNG is left as it
    was) over the shipped tokenizer, else a tiny random one; ``unconditional`` adds a ``test_tiny`` model
    without conditioning for random-human generation; ``kinds``: what the model reads. Built in well under a
    second. ``lifter_hidden``: a random keypoint lifter of that width inside a landmark model."""
    from megaviewer.body.assets import BodyAssets
    from megaviewer.engine import Engine
    from megaviewer.model.mega import Mega
    from megaviewer.tokenizer.model import MeshVQVAE, TokenizerConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if (tokenizer_dir() / "model.safetensors").exists():
            tokenizer = MeshVQVAE.from_pretrained()
        else:
            from training.tokenizer import build_tokenizer

            tokenizer = build_tokenizer(TokenizerConfig(channels=[4, 4, 4]))
        sizes = {"vocab": int(tokenizer.config.num_codes), "seq_len": int(tokenizer.num_tokens)}
        reads = {} if kinds == ("keypoints",) else {"conditioning": {"kinds": kinds}}  # else the preset is "custom"
        if lifter_hidden:
            reads["conditioning"]["landmark_lifter_hidden"] = lifter_hidden
        model = Mega.from_preset("test_tiny", **reads, **sizes)
        uncond = Mega.from_preset("test_tiny", conditioning={"kinds": ()}, **sizes) if unconditional else None
    return Engine(model, tokenizer, BodyAssets.load(tokenizer.config.body).coco_regressor, device="cpu",
                  name="test_tiny", unconditional_model=uncond)


@functools.lru_cache(maxsize=1)
def tiny_engine():
    """One shared :func:`build_tiny_engine` (seed 0) for the tests that only read from it."""
    return build_tiny_engine()


@functools.lru_cache(maxsize=1)
def trained_engine():
    from megaviewer.engine import Engine

    return Engine.from_pretrained(device="cpu")


def random_keypoints(batch: int, seed: int = 0):
    """Random crop-normalised COCO-17 keypoints (B, 17, 3): x, y in [-1, 1], confidence in [0, 1)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(batch, 17, 3, generator=g)
    kp[..., :2] = kp[..., :2] * 2 - 1
    return kp


def save_tiny_checkpoint(folder, kinds: tuple[str, ...], seed: int = 0, vocab: int | None = None):
    """A ``test_tiny`` MEGA checkpoint folder conditioned on ``kinds`` (image: a random resnet18 at 64x64) sized for
    the shipped tokenizer, or for ``vocab`` codes (a checkpoint of another tokenizer). Returns the folder."""
    from pathlib import Path

    from megaviewer.model.mega import Mega, save_mega
    from megaviewer.tokenizer.model import MeshVQVAE

    tokenizer = MeshVQVAE.from_pretrained()
    sizes = {"vocab": int(vocab or tokenizer.config.num_codes), "seq_len": int(tokenizer.num_tokens)}
    conditioning = {"kinds": tuple(kinds), "image_backbone": "resnet18", "image_size": (64, 64), "keypoint_hidden": 32}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Mega.from_preset("test_tiny", conditioning=conditioning, **sizes)
    save_mega(Path(folder), model)
    return Path(folder)
