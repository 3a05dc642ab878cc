"""Mesh-VQ-VAE: a fully convolutional mesh autoencoder with a vector-quantised bottleneck.

Encoder: conv on each level, learnt pooling between levels, ending with ``latent_dim`` channels on the
coarsest level's vertices (54 by default) -> one token per coarse vertex. Decoder: the mirror image
(conv + learnt unpooling), last layer without activation. Same layer recipe as the original
``config_medium`` (docs/original-implementation.md §3.3), but for any hierarchy (see ``hierarchy.py``). The network is
batch-size agnostic (the original allocated buffers of a fixed batch, §10.11 there).

The hierarchy's tables are persistent buffers, so a checkpoint is self-contained; the config records the
hierarchy fingerprint and is checked on load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from megaviewer.tokenizer.hierarchy import MeshHierarchy
from megaviewer.tokenizer.layers import VcConv
from megaviewer.tokenizer.quantizer import EMAQuantizer, QuantizerOutput

KIND = "mesh_vqvae"


@dataclass
class TokenizerConfig:
    level_sizes: list[int] = field(default_factory=lambda: [1229, 400, 128, 54])
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # conv width at levels 0..L-2
    latent_dim: int = 9
    num_codes: int = 512
    weight_num: int = 9
    decay: float = 0.99
    commitment: float = 0.25
    restart_threshold: float = 0.05
    residual_scale: float = 0.0
    """0: the network reads and writes absolute centred coordinates (the original). > 0: it reads and
    writes (mesh - rest template) * residual_scale, so it learns deviations from the body's rest shape at
    a unit-ish scale instead of spending capacity rebuilding the template (the template is a buffer)."""
    extremity_density: float = 1.0
    """> 1: the hands and feet are scaled by this factor for the hierarchy's coarse-vertex sampling only
    (:func:`~megaviewer.tokenizer.hierarchy.inflate_region`); at 2 they get about twice their even share of
    coarse vertices, so fingers and toes get more tokens out of the same ``num_tokens``. Part of the hierarchy
    fingerprint."""
    body: str = "anny"
    hierarchy_fingerprint: str = ""
    kind: str = KIND

    @property
    def num_tokens(self) -> int:
        return self.level_sizes[-1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TokenizerConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class TokenizerOutput:
    vertices: torch.Tensor  # (B, V, 3) reconstruction, centroid-centred
    ids: torch.Tensor  # (B, N)
    commitment_loss: torch.Tensor
    perplexity: torch.Tensor


class MeshVQVAE(nn.Module):
    def __init__(self, config: TokenizerConfig, hierarchy: MeshHierarchy, template: torch.Tensor | None = None):
        """``template``: the body's rest mesh (V, 3), used when ``config.residual_scale`` > 0; a loaded
        checkpoint brings its own copy in its state."""
        super().__init__()
        if hierarchy.level_sizes != list(config.level_sizes):
            raise ValueError(f"hierarchy levels {hierarchy.level_sizes} != config {config.level_sizes}")
        if len(config.channels) != len(config.level_sizes) - 1:
            raise ValueError("need one channel width per level except the coarsest")
        self.config = config
        self.config.hierarchy_fingerprint = hierarchy.fingerprint
        # Level-0 vertex ids of the token positions (the coarsest level, token order): where the app draws
        # each token's region.
        self.token_vertices = np.asarray(hierarchy.level_vertices[-1], dtype=np.int64)
        wn = config.weight_num
        widths = [3, *config.channels]
        enc: list[nn.Module] = []
        for level, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            enc.append(VcConv(hierarchy.conv[level], cin, cout, wn, 0.0, activation=True))
            enc.append(VcConv(hierarchy.pool[level], cout, cout, 0, 1.0, activation=False))
        enc.append(VcConv(hierarchy.conv[-1], widths[-1], config.latent_dim, wn, 0.0, activation=True))
        dec: list[nn.Module] = [VcConv(hierarchy.conv[-1], config.latent_dim, widths[-1], wn, 0.0, True)]
        for level in reversed(range(len(config.channels))):
            cin = widths[level + 1]
            cout = widths[level] if level > 0 else widths[1]
            dec.append(VcConv(hierarchy.unpool[level], cin, cin, 0, 1.0, activation=False))
            last = level == 0
            dec.append(VcConv(hierarchy.conv[level], cin, 3 if last else widths[level], wn, 0.0,
                              activation=not last))
            del cout
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.quantizer = EMAQuantizer(config.num_codes, config.latent_dim, config.decay, config.commitment,
                                      restart_threshold=config.restart_threshold)
        rest = torch.zeros(config.level_sizes[0], 3)
        if template is not None:
            rest = torch.as_tensor(template, dtype=torch.float32).reshape(config.level_sizes[0], 3)
            rest = rest - rest.mean(dim=0)
        self.register_buffer("template", rest, persistent=config.residual_scale > 0)
        # The checkpoint folder this tokenizer was loaded from (None: built in memory). Bodies that are not
        # shipped keep their topology data there (``body.safetensors``; BodyAssets.for_tokenizer reads it).
        self.source_dir: Path | None = None

    @property
    def num_tokens(self) -> int:
        return self.config.num_tokens

    @property
    def num_vertices(self) -> int:
        return self.config.level_sizes[0]

    @staticmethod
    def _run(layers: nn.Sequential, x: torch.Tensor, cached: bool | None = None) -> torch.Tensor:
        """(B, V, C) through ``layers``. With autograd off (inference, frozen use in training) the layers'
        cached channel-major route runs (``VcConv.infer``), otherwise the trainable route. The cached route
        is the faster at every batch size on a CPU (whole decodes both ways: ``tokenizer_decode`` in
        ``resources/bench/cpu_routes.json``). ``cached`` forces the choice (True: the cached route, with
        gradients for ``x`` but never for the weights)."""
        use_cached = not torch.is_grad_enabled() if cached is None else cached
        if not use_cached:
            return layers(x.transpose(0, 1)).transpose(0, 1)
        h = x.permute(1, 2, 0)
        for layer in layers:
            h = layer.infer(h)
        return h.permute(2, 0, 1)

    def encode_latents(self, vertices: torch.Tensor) -> torch.Tensor:
        centred = vertices - vertices.mean(dim=-2, keepdim=True)
        if self.config.residual_scale > 0:
            centred = (centred - self.template.to(centred.dtype)) * self.config.residual_scale
        return self._run(self.encoder, centred)

    def encode(self, vertices: torch.Tensor) -> torch.Tensor:
        """Canonical meshes (B, V, 3) -> token ids (B, N) long."""
        return self.quantizer.nearest(self.encode_latents(vertices))

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, N) -> centroid-centred canonical vertices (B, V, 3)."""
        codes = self.quantizer.lookup(ids).to(next(self.decoder.parameters()).dtype)
        return self.decode_latents(codes)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self._to_mesh(self._run(self.decoder, latents))

    def decode_latents_frozen(self, latents: torch.Tensor) -> torch.Tensor:
        """:meth:`decode_latents` through the cached route even with autograd on: gradients reach the latents,
        never the weights. For fitting latents through the frozen decoder (:mod:`megaviewer.refine`), where
        it is several times cheaper per step than the trainable route from a few meshes on."""
        return self._to_mesh(self._run(self.decoder, latents, cached=True))

    def _to_mesh(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder's output -> centroid-centred vertices (adds the template back in residual mode)."""
        if self.config.residual_scale > 0:
            out = out / self.config.residual_scale + self.template.to(out.dtype)
        return out - out.mean(dim=-2, keepdim=True)

    def forward(self, vertices: torch.Tensor, *, frozen_codes: bool = False) -> TokenizerOutput:
        """Encode, quantise and decode ``vertices`` (training). ``frozen_codes``: look the codes up without
        gradients or codebook updates and train only what decodes them (``training.decoder``): every mesh
        keeps its token ids, so models trained on those ids stay valid."""
        if frozen_codes:
            with torch.no_grad():
                ids = self.encode(vertices)
            _, perplexity = self.quantizer.usage(ids)
            zero = torch.zeros((), device=vertices.device)
            return TokenizerOutput(self.decode(ids), ids, zero, torch.tensor(perplexity))
        q: QuantizerOutput = self.quantizer(self.encode_latents(vertices))
        return TokenizerOutput(self.decode_latents(q.quantized), q.ids, q.commitment_loss, q.perplexity)

    # ---- persistence -------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        from megaviewer.io.checkpoint import save_checkpoint

        return save_checkpoint(folder, self, self.config.to_dict())

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, map_location: str | torch.device = "cpu"
                        ) -> MeshVQVAE:
        """Load a tokenizer checkpoint folder (default: the shipped one in ``resources/tokenizer``)."""
        from megaviewer.io.checkpoint import CheckpointError, load_checkpoint_tensors, load_config, load_state_into
        from megaviewer.paths import tokenizer_dir
        from megaviewer.tokenizer.cache import hierarchy_from_state

        folder = Path(folder) if folder is not None else tokenizer_dir()
        raw = load_config(folder, expected_kind=KIND)
        try:
            config = TokenizerConfig.from_dict(raw)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{folder / 'config.json'} does not describe a valid tokenizer: {exc}") from None
        tensors = load_checkpoint_tensors(folder)
        try:
            hierarchy = hierarchy_from_state(tensors, config)
            model = cls(config, hierarchy)
        except CheckpointError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as exc:  # e.g. {"latent_dim": "x"}
            raise CheckpointError(f"{folder} does not hold a valid tokenizer: {exc}") from None
        load_state_into(model, tensors, folder)
        model.source_dir = folder
        return model.to(map_location).eval()
