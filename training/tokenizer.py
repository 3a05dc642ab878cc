"""Train and evaluate the Mesh-VQ-VAE tokenizer on synthetic canonical meshes.

Loss as the original (docs/original-implementation.md §3.5): mean per-vertex Euclidean distance between the
(centroid-centred) reconstruction and the target, plus the quantiser's commitment term. Dead codes are
restarted every ``restart_every`` steps. Evaluation reports PVE / MPJPE / PA-MPJPE in mm (COCO-17 joints
regressed from the meshes), codebook usage and perplexity on a held-out set.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from megaviewer.geometry import metrics
from megaviewer.tokenizer.model import MeshVQVAE, TokenizerConfig
from training.data.meshes import ChunkedMeshStream, SyntheticMeshes
from training.loop import LoopConfig, train


@dataclass
class TokenizerTrainConfig:
    out_dir: str = "runs/tokenizer"
    steps: int = 8000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 200
    restart_every: int = 100
    ckpt_every: int = 500
    seed: int = 0
    threads: int = 0  # 0 = torch default
    prior: str = "keyposes"  # which pose prior the meshes come from (training.data.priors.PRIOR_KINDS)
    # > 0: pose meshes in chunks of this many, each mesh drawn ~chunk_reuse times (ChunkedMeshStream);
    # 0: pose every batch afresh.
    chunk_size: int = 0
    chunk_reuse: int = 4
    stop_at: int | None = None  # end this invocation after that many steps (resumable)
    progress: bool = True
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)


class TokenizerTask:
    """The :class:`training.loop.TrainTask` of the tokenizer."""

    def __init__(self, model: MeshVQVAE, data: SyntheticMeshes, batch_size: int, restart_every: int,
                 stream: ChunkedMeshStream | None = None):
        self.model = model
        self.data = data
        self.batch_size = batch_size
        self.restart_every = restart_every
        self.stream = stream

    def config_dict(self) -> dict:
        return self.model.config.to_dict()

    def training_step(self, model: nn.Module, step: int, generator: torch.Generator):
        if self.stream is not None:
            target = self.stream.batch(step, self.batch_size, generator)
        else:
            target = self.data.sample(self.batch_size, generator).vertices
        target = target.to(next(model.parameters()).device)
        out = model(target)
        recon = (out.vertices - metrics.center(target)).norm(dim=-1).mean()
        loss = recon + out.commitment_loss
        return loss, {"pve_mm": recon.item() * 1000, "perplexity": out.perplexity.item()}

    def after_step(self, step: int, generator: torch.Generator) -> None:
        # Step 0 seeds the whole codebook from encoder outputs (every code starts "dead"), later restarts
        # revive codes that lost their data.
        if step == 0 or (step + 1) % self.restart_every == 0:
            self.model.quantizer.restart_dead_codes(generator)


def build_tokenizer(config: TokenizerConfig, body=None) -> MeshVQVAE:
    """A fresh tokenizer on the body's template, with the hierarchy taken from (or added to) the cache."""
    from megaviewer.body.assets import BodyAssets
    from megaviewer.tokenizer.cache import load_or_build_hierarchy

    assets = BodyAssets.load(config.body)
    if assets.num_vertices != config.level_sizes[0]:
        raise ValueError(f"level_sizes[0]={config.level_sizes[0]} but the {config.body} mesh has "
                         f"{assets.num_vertices} vertices")
    hierarchy = load_or_build_hierarchy(assets.template.numpy(), assets.faces.numpy(), config.level_sizes)
    return MeshVQVAE(config, hierarchy, assets.template)


def train_tokenizer(cfg: TokenizerTrainConfig, data: SyntheticMeshes | None = None) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_tokenizer(cfg.tokenizer)
    data = data or SyntheticMeshes(prior_kind=cfg.prior)
    loop = LoopConfig(out_dir=cfg.out_dir, total_steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                      warmup_steps=cfg.warmup_steps, schedule="cosine", ckpt_every=cfg.ckpt_every,
                      seed=cfg.seed, betas=(0.9, 0.99), log_every=50, stop_at=cfg.stop_at,
                      progress=cfg.progress)
    stream = None
    if cfg.chunk_size:
        steps_per_chunk = max(1, cfg.chunk_size * cfg.chunk_reuse // cfg.batch_size)
        stream = ChunkedMeshStream(data, cfg.chunk_size, steps_per_chunk, seed=cfg.seed)
    return train(TokenizerTask(model, data, cfg.batch_size, cfg.restart_every, stream), loop)


HANDS_FEET = ("wrist.L", "wrist.R", "foot.L", "foot.R")


@torch.inference_mode()
def evaluate_tokenizer(model: MeshVQVAE, data: SyntheticMeshes, count: int = 1024, batch: int = 128) -> dict:
    """Held-out reconstruction figures (mm) and codebook statistics. Besides the per-mesh PVE, the 95th
    percentile of the per-vertex errors on the hands and feet, where a coarse token grid errs most."""
    model.eval()
    held = data.heldout(count)
    regressor = data.body.coco_regressor.float()
    extremity = data.body.region_mask(HANDS_FEET)
    pves, mpjpes, pas, ids_all, ext = [], [], [], [], []
    start = time.perf_counter()
    for i in range(0, count, batch):
        gt = metrics.center(held.vertices[i:i + batch])
        ids = model.encode(gt)
        rec = model.decode(ids)
        gt_j, rec_j = regressor @ gt, regressor @ rec
        pves.append(metrics.pve(rec, gt))
        mpjpes.append(metrics.mpjpe(rec_j, gt_j))
        pas.append(metrics.pa_mpjpe(rec_j, gt_j))
        ext.append((rec - gt)[:, extremity].norm(dim=-1).flatten())
        ids_all.append(ids)
    elapsed = time.perf_counter() - start
    pve, mpjpe, pa, ext_err = torch.cat(pves), torch.cat(mpjpes), torch.cat(pas), torch.cat(ext) * 1000
    used, perplexity = model.quantizer.usage(torch.cat(ids_all))
    return {
        "heldout_meshes": count,
        "pve_mm": pve.mean().item(),
        "pve_median_mm": pve.median().item(),
        "pve_p95_mm": pve.quantile(0.95).item(),
        "hands_feet_pve_mm": ext_err.mean().item(),
        "hands_feet_vertex_p95_mm": torch.quantile(ext_err, 0.95).item(),
        "hands_feet_vertices": int(extremity.sum()),
        "mpjpe_mm": mpjpe.mean().item(),
        "pa_mpjpe_mm": pa.mean().item(),
        "codes_used_fraction": used,
        "codes_used": int(round(used * model.config.num_codes)),
        "perplexity": perplexity,
        "encode_decode_ms_per_mesh": elapsed / count * 1000,
    }


def write_metrics(path: Path, metrics_dict: dict) -> None:
    from megaviewer.io.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(metrics_dict, indent=2))


def config_from_args(args) -> TokenizerTrainConfig:
    cfg = TokenizerTrainConfig(out_dir=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                               seed=args.seed, ckpt_every=args.ckpt_every, threads=args.threads,
                               prior=getattr(args, "prior", "keyposes"), chunk_size=getattr(args, "chunk_size", 0))
    if getattr(args, "residual_scale", None) is not None:
        cfg.tokenizer.residual_scale = args.residual_scale
    if args.channels:
        cfg.tokenizer.channels = [int(c) for c in args.channels.split(",")]
    return cfg


def describe(cfg: TokenizerTrainConfig) -> str:
    return json.dumps(asdict(cfg), indent=2)
