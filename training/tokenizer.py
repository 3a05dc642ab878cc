"""Train and evaluate the Mesh-VQ-VAE tokenizer on synthetic canonical meshes.

Loss as the original (docs/original-implementation.md §3.5): mean per-vertex Euclidean distance between the
(centroid-centred) reconstruction and the target, plus the quantiser's commitment term. Dead codes are
restarted every ``restart_every`` steps. Evaluation reports PVE / MPJPE / PA-MPJPE in mm (COCO-17 joints
regressed from the meshes), codebook usage and perplexity on a held-out set.

Bodies: Anny by default; with ``TokenizerConfig.body`` = ``smpl`` / ``smplh`` and the user's model file
(``TokenizerTrainConfig.model_path``), meshes are posed through that file (:mod:`training.data.bodies`, pose prior
:mod:`megaviewer.body.smpl_pose_prior`), the level sizes follow from its vertex count
(:mod:`megaviewer.tokenizer.levels`) and the final folder gets the topology data inference needs
(``body.safetensors``: faces, rest mesh, COCO-17 regressor), derived from the user's licensed file.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from megaviewer.geometry import metrics
from megaviewer.tokenizer.model import MeshVQVAE, TokenizerConfig
from training.data.bodies import BodySpec
from training.data.meshes import ChunkedMeshStream, SyntheticMeshes
from training.distributed import env_rank
from training.loop import LoopConfig, check_run_config, train


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
    # > 1: a hand or foot vertex weighs this many times any other in the reconstruction loss (vertex_weights), so
    # the encoder and the codebook, not only the decoder, spend their capacity where the mesh errs most.
    extremity_weight: float = 1.0
    stop_at: int | None = None  # end this invocation after that many steps (resumable)
    keep_last: int = 2  # checkpoints kept in the run folder (more: a benchmark scores each one afterwards)
    progress: bool = True
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    # SMPL / SMPL-H (tokenizer.body): the user's model file or its folder, and which gender's file.
    model_path: str | None = None
    gender: str = "neutral"

    @property
    def body_spec(self) -> BodySpec:
        return BodySpec(self.tokenizer.body, self.model_path, self.gender)


class TokenizerTask:
    """The :class:`training.loop.TrainTask` of the tokenizer."""

    def __init__(self, model: MeshVQVAE, data: SyntheticMeshes, batch_size: int, restart_every: int,
                 stream: ChunkedMeshStream | None = None, weights: torch.Tensor | None = None):
        """``weights``: (V,) per-vertex loss weights of mean 1 (:func:`vertex_weights`); None: all 1."""
        self.model = model
        self.weights = weights
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
        error = (out.vertices - metrics.center(target)).norm(dim=-1)
        recon = error.mean()
        weighted = recon if self.weights is None else (error * self.weights.to(error.device)).mean()
        loss = weighted + out.commitment_loss
        return loss, {"pve_mm": recon.item() * 1000, "perplexity": out.perplexity.item()}

    def after_step(self, step: int, generator: torch.Generator) -> None:
        # Step 0 seeds the whole codebook from encoder outputs (every code starts "dead"), later restarts
        # revive codes that lost their data.
        if step == 0 or (step + 1) % self.restart_every == 0:
            self.model.quantizer.restart_dead_codes(generator)


def build_tokenizer(config: TokenizerConfig, body=None, cache_folder: Path | None = None) -> MeshVQVAE:
    """A fresh tokenizer on the body's template, with the hierarchy taken from (or added to) the cache.

    ``body``: a :class:`~megaviewer.body.base.BodyModel` whose own mesh is the topology (SMPL from the user's
    file); default: the shipped assets of ``config.body``. ``cache_folder``: where the hierarchy is cached
    (default ``resources/tokenizer``; pass the run folder for a body that must not leave the user's folders).
    """
    from megaviewer.body.assets import BodyAssets
    from megaviewer.tokenizer.cache import load_or_build_hierarchy

    if body is not None and body.name != config.body:
        raise ValueError(f"the tokenizer config is for the {config.body!r} body but the body given is {body.name!r}")
    assets = BodyAssets.from_body(body) if body is not None else BodyAssets.load(config.body)
    if assets.num_vertices != config.level_sizes[0]:
        raise ValueError(f"level_sizes[0]={config.level_sizes[0]} but the {config.body} mesh has "
                         f"{assets.num_vertices} vertices")
    region = None
    if config.extremity_density != 1.0:
        region = extremity_region(body if body is not None else BodySpec(config.body).load())
    hierarchy = load_or_build_hierarchy(assets.template.numpy(), assets.faces.numpy(), config.level_sizes,
                                        cache_folder, region, config.extremity_density)
    return MeshVQVAE(config, hierarchy, assets.template)


def extremity_region(body) -> np.ndarray:
    """(V,) bool of the hands and feet of ``body``, the region a denser hierarchy favours; a clear error for a
    body without one."""
    mask = hands_feet_mask(body)
    if mask is None or not bool(mask.any()):
        raise ValueError(f"the {getattr(body, 'name', '?')} body has no hands-and-feet region for "
                         "extremity_density; leave it at 1")
    return mask.numpy().astype(bool)


def fit_levels_to_body(config: TokenizerConfig, num_vertices: int) -> None:
    """Give a config for a user body the level sizes of :func:`~megaviewer.tokenizer.levels.level_sizes_for`,
    unless it already states sizes for this vertex count (a config built for another mesh cannot fit)."""
    from megaviewer.tokenizer.levels import level_sizes_for

    if config.level_sizes[0] != num_vertices:
        config.level_sizes = level_sizes_for(num_vertices, len(config.level_sizes))


def save_body_data(folder: Path, body) -> Path:
    """Write ``body.safetensors`` (faces, rest mesh, COCO-17 regressor; display = working mesh) into a tokenizer
    folder, so that inference on it never needs the user's model file. The data is derived from that licensed
    file: the header says so, and such folders are for the user's own use only (docs/smpl.md)."""
    from megaviewer.body.assets import BODY_FILE, BodyAssets

    source = getattr(body, "model_file", None)
    metadata = {"body": body.name, "gender": str(getattr(body, "gender", "")),
                "derived_from": Path(source).name if source is not None else "",
                "licence": "derived from the user's licensed body model file; do not redistribute"}
    path = Path(folder) / BODY_FILE
    BodyAssets.from_body(body).save(path, metadata)
    return path


def check_body_matches(tokenizer: MeshVQVAE, body) -> None:
    """Refuse meshes of another topology than the tokenizer's (e.g. another SMPL file): their vertex ids mean
    other points of the body, so every figure and token would be wrong."""
    from megaviewer.body.assets import BodyAssets

    if body.name != tokenizer.config.body:
        raise ValueError(f"the tokenizer encodes {tokenizer.config.body!r} meshes but the body is {body.name!r}")
    if body.num_vertices != tokenizer.num_vertices:
        raise ValueError(f"the tokenizer encodes meshes of {tokenizer.num_vertices} vertices but this "
                         f"{body.name} model has {body.num_vertices}: not the model file it was trained with")
    if body.name != "anny":
        expected = BodyAssets.for_tokenizer(tokenizer).faces
        if not torch.equal(expected.long().cpu(), body.faces.long().cpu()):
            raise ValueError(f"this {body.name} model's faces differ from the topology the tokenizer was trained "
                             "on: not the model file it was trained with")


def train_tokenizer(cfg: TokenizerTrainConfig, data: SyntheticMeshes | None = None) -> Path:
    """Train (or resume) a tokenizer; returns ``out_dir/final`` (or the ``stop_at`` checkpoint). For a user body
    (SMPL) the hierarchy is cached in the run folder and ``final/`` also gets ``body.safetensors``."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    body = None
    if cfg.body_spec.needs_model_file:
        body = data.body if data is not None else cfg.body_spec.load()
        fit_levels_to_body(cfg.tokenizer, body.num_vertices)
    model = build_tokenizer(cfg.tokenizer, body, cache_folder=Path(cfg.out_dir) if body is not None else None)
    data = data or SyntheticMeshes(body=body, prior_kind=cfg.prior)
    loop = LoopConfig(out_dir=cfg.out_dir, total_steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                      warmup_steps=cfg.warmup_steps, schedule="cosine", ckpt_every=cfg.ckpt_every,
                      seed=cfg.seed, betas=(0.9, 0.99), log_every=50, stop_at=cfg.stop_at,
                      keep_last=cfg.keep_last, progress=cfg.progress)
    stream = None
    if cfg.chunk_size:
        steps_per_chunk = max(1, cfg.chunk_size * cfg.chunk_reuse // cfg.batch_size)
        stream = ChunkedMeshStream(data, cfg.chunk_size, steps_per_chunk, seed=cfg.seed)
    # the loop's fingerprint covers the model config only: refuse to continue with other data or another loss
    check_run_config(cfg.out_dir, {"stage": "tokenizer", "prior": cfg.prior, "chunk_size": cfg.chunk_size,
                                   "chunk_reuse": cfg.chunk_reuse, "extremity_weight": cfg.extremity_weight,
                                   "restart_every": cfg.restart_every})
    weights = vertex_weights(data.body, cfg.extremity_weight) if cfg.extremity_weight != 1.0 else None
    final = train(TokenizerTask(model, data, cfg.batch_size, cfg.restart_every, stream, weights), loop)
    if body is not None and final.name == "final" and env_rank() == 0:
        save_body_data(final, body)
        _copy_hierarchy(Path(cfg.out_dir), final, model.config.hierarchy_fingerprint)
    return final


def _copy_hierarchy(run_dir: Path, final: Path, fingerprint: str) -> None:
    """Put the run's cached hierarchy beside the weights (every level's vertex ids as built), so the folder
    carries its topology data whole."""
    import shutil

    from megaviewer.io.atomic import atomic_path
    from megaviewer.tokenizer.cache import hierarchy_cache_path

    source = hierarchy_cache_path(run_dir, fingerprint)
    if source.exists():
        with atomic_path(hierarchy_cache_path(final, fingerprint)) as tmp:
            shutil.copyfile(source, tmp)


HANDS_FEET = ("wrist.L", "wrist.R", "foot.L", "foot.R")
SMPL_HANDS_FEET = ("left_wrist", "right_wrist", "left_ankle", "right_ankle")
HANDS_FEET_ROOTS: dict[str, tuple[str, ...]] = {"anny": HANDS_FEET, "smpl": SMPL_HANDS_FEET,
                                                 "smplh": SMPL_HANDS_FEET}
"""Per body, the joints whose skinned vertices (with their descendants') make up the hands and feet."""


def hands_feet_mask(body) -> torch.Tensor | None:
    """(V,) bool of the hands and feet of ``body``, or None for a body without that region (metrics skipped)."""
    roots = HANDS_FEET_ROOTS.get(getattr(body, "name", ""))
    if roots is None or not hasattr(body, "region_mask"):
        return None
    return body.region_mask(roots)


def vertex_weights(body, extremity_weight: float) -> torch.Tensor:
    """(V,) loss weights: ``extremity_weight`` on the hands and feet (:func:`hands_feet_mask`), 1 elsewhere,
    scaled to mean 1. A body without that region gets uniform weights."""
    weights = torch.ones(body.num_vertices)
    mask = hands_feet_mask(body)
    if mask is not None:
        weights[mask] = float(extremity_weight)
    return weights / weights.mean()


@torch.inference_mode()
def evaluate_tokenizer(model: MeshVQVAE, data: SyntheticMeshes, count: int = 1024, batch: int = 128) -> dict:
    """Held-out reconstruction figures (mm) and codebook statistics. Besides the per-mesh PVE, the 95th
    percentile of the per-vertex errors on the hands and feet, where a coarse token grid errs most (for bodies
    with such a region, :func:`hands_feet_mask`; otherwise those figures are left out)."""
    model.eval()
    check_body_matches(model, data.body)
    held = data.heldout(count)
    regressor = data.body.coco_regressor.float()
    extremity = hands_feet_mask(data.body)
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
        if extremity is not None:
            ext.append((rec - gt)[:, extremity].norm(dim=-1).flatten())
        ids_all.append(ids)
    elapsed = time.perf_counter() - start
    pve, mpjpe, pa = torch.cat(pves), torch.cat(mpjpes), torch.cat(pas)
    used, perplexity = model.quantizer.usage(torch.cat(ids_all))
    hands_feet = {}
    if extremity is not None and int(extremity.sum()) > 0:
        ext_err = torch.cat(ext) * 1000
        hands_feet = {"hands_feet_pve_mm": ext_err.mean().item(),
                      "hands_feet_vertex_p95_mm": torch.quantile(ext_err, 0.95).item(),
                      "hands_feet_vertices": int(extremity.sum())}
    return {
        "heldout_meshes": count,
        "pve_mm": pve.mean().item(),
        "pve_median_mm": pve.median().item(),
        "pve_p95_mm": pve.quantile(0.95).item(),
        **hands_feet,
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
                               prior=getattr(args, "prior", "keyposes"), chunk_size=getattr(args, "chunk_size", 0),
                               model_path=getattr(args, "model_path", None), gender=getattr(args, "gender", "neutral"))
    cfg.tokenizer.body = getattr(args, "body", None) or cfg.tokenizer.body
    cfg.body_spec.check()  # a clear error before any work when --body smpl comes without --model-path
    if getattr(args, "residual_scale", None) is not None:
        cfg.tokenizer.residual_scale = args.residual_scale
    if args.channels:
        cfg.tokenizer.channels = [int(c) for c in args.channels.split(",")]
    if getattr(args, "extremity_density", None) is not None:
        cfg.tokenizer.extremity_density = args.extremity_density
    if getattr(args, "extremity_weight", None) is not None:
        cfg.extremity_weight = args.extremity_weight
    if getattr(args, "tokens", None) is not None:
        cfg.tokenizer.level_sizes = [*cfg.tokenizer.level_sizes[:-1], args.tokens]
    return cfg


def describe(cfg: TokenizerTrainConfig) -> str:
    return json.dumps(asdict(cfg), indent=2)
