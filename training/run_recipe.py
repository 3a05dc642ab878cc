"""Run a named recipe (:mod:`training.recipes`) end to end: tokenizer -> mesh pool -> pre-training ->
keypoint-conditioned training -> warm restart -> keypoint lifter -> warm restart with the lifter -> third warm
restart -> decoder fine-tune (the stages a recipe has) -> evaluation -> install into ``resources/``.

Every stage resumes where it stopped. With ``state_dir``, a stage whose run folder is empty first takes the
checkpoint saved there (:func:`training.state.restore`), and :func:`save_state` stores each stage's latest
checkpoint there, so a run of many hours continues on another machine from the repository alone.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from megaviewer.io.atomic import atomic_write_text
from training.recipes import MegaStage, Recipe
from training.state import restore, snapshot

STAGES: tuple[str, ...] = ("tokenizer", "pretrain", "conditioned", "tail", "lifter", "lifted", "polish", "decoder")
TOKENIZER_SPLITS: tuple[str, ...] = ("keyposes", "motion", "hard")


def stage_dir(runs: Path, stage: str) -> Path:
    return runs / stage


def polish_stage(round_: int) -> str:
    """The run folder (and saved-state) name of the ``round_``-th round of the last warm restart: ``polish`` for the
    first, as recipes always had it, ``polish_<r>`` for the ones after it."""
    if round_ < 1:
        raise ValueError(f"polish rounds count from 1, got {round_}")
    return "polish" if round_ == 1 else f"polish_{round_}"


def _polish_rounds_present(runs: Path) -> list[str]:
    rounds = [p.name for p in runs.glob("polish_*") if p.is_dir() and p.name[len("polish_"):].isdigit()]
    return sorted(rounds, key=lambda name: int(name[len("polish_"):]))


def save_state(runs: str | Path, state_dir: str | Path) -> dict[str, str]:
    """Snapshot the latest checkpoint of every stage that has one; returns stage -> saved folder."""
    saved = {}
    stages = list(STAGES)
    stages[stages.index("polish") + 1:stages.index("polish") + 1] = _polish_rounds_present(Path(runs))
    for stage in stages:
        folder = snapshot(stage_dir(Path(runs), stage), Path(state_dir) / stage)
        if folder is not None:
            saved[stage] = str(folder)
    return saved


def stage_hours(final: Path) -> float | None:
    """Wall-clock hours of training behind a ``final/`` folder."""
    from training.loop import training_record

    seconds = training_record(final)[1]
    return None if seconds is None else seconds / 3600


def describe(recipe: Recipe) -> str:
    minutes = recipe.estimated_minutes()
    parts = ", ".join(f"{k} {v / 60:.1f} h" if v >= 60 else f"{k} {v:.0f} min" for k, v in minutes.items())
    return (f"recipe {recipe.name!r}: {recipe.summary}\n"
            f"about {recipe.estimated_hours():.1f} hours on a 2-core CPU ({parts}); every stage resumes")


def train_tokenizer_stage(recipe: Recipe, runs: Path, threads: int, state_dir: Path | None) -> tuple[Path, dict]:
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.tokenizer import train_tokenizer

    run = stage_dir(runs, "tokenizer")
    if state_dir is not None:
        restore(state_dir / "tokenizer", run)
    cfg = recipe.tokenizer.train_config(str(run), threads)
    final = train_tokenizer(cfg)
    if final.name != "final":
        return final, {}
    model = MeshVQVAE.from_pretrained(final)
    result = {"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "prior": cfg.prior,
              "channels": list(model.config.channels), "residual_scale": model.config.residual_scale,
              "extremity_weight": cfg.extremity_weight, "tokens": model.num_tokens,
              "train_hours": stage_hours(final), **evaluate_splits(model)}
    atomic_write_text(final / "metrics.json", json.dumps(result, indent=2))
    return final, result


def evaluate_splits(tokenizer) -> dict:
    """The tokenizer's held-out figures on each part of the pose prior (1,024 meshes each) and its fingerprint
    (hierarchy + codebook: what the token ids mean)."""
    from training.data.meshes import SyntheticMeshes
    from training.data.pool import tokenizer_fingerprint
    from training.tokenizer import evaluate_tokenizer

    return {**{split: evaluate_tokenizer(tokenizer, SyntheticMeshes(prior_kind=split), 1024)
               for split in TOKENIZER_SPLITS}, "tokenizer_id": tokenizer_fingerprint(tokenizer)}


def train_decoder_stage(recipe: Recipe, runs: Path, tokenizer_dir: Path, tokenizer_metrics: dict, threads: int,
                        state_dir: Path | None) -> tuple[Path, dict]:
    """Fine-tune the decoder of ``tokenizer_dir``; returns its folder and metrics: the tokenizer stage's record with
    the figures replaced by the fine-tuned decoder's, the decoder stage's settings and hours, and the figures
    before it (``before_decoder``)."""
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.decoder import train_decoder

    run = stage_dir(runs, "decoder")
    if state_dir is not None:
        restore(state_dir / "decoder", run)
    final = train_decoder(recipe.decoder.train_config(str(run), str(tokenizer_dir), threads))
    if final.name != "final":
        return final, {}
    before = {split: tokenizer_metrics[split] for split in TOKENIZER_SPLITS if split in tokenizer_metrics}
    result = {**tokenizer_metrics, **evaluate_splits(MeshVQVAE.from_pretrained(final)),
              "decoder": {**asdict(recipe.decoder), "train_hours": stage_hours(final)},
              **({"before_decoder": before} if before else {})}
    atomic_write_text(final / "metrics.json", json.dumps(result, indent=2))
    return final, result


def run_recipe(recipe: Recipe, runs: str | Path, *, install: bool = True, threads: int = 0,
               state_dir: str | Path | None = None, tokenizer_dir: str | Path | None = None,
               until: str | None = None) -> dict | None:
    """Run (or continue) every stage of ``recipe``; returns the evaluation, or ``None`` when a stage stopped
    early or ``until`` (a stage name) ended the run after that stage. ``tokenizer_dir`` skips the tokenizer
    stage and uses that trained tokenizer instead."""
    if until is not None and until not in STAGES:
        raise ValueError(f"until must be one of {STAGES}, got {until!r}")
    from megaviewer.model.mega import load_mega
    from megaviewer.paths import default_model_dir, resources_dir
    from megaviewer.paths import tokenizer_dir as shipped_tokenizer_dir
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.meshes import SyntheticMeshes
    from training.mega_conditioned import train_conditioned
    from training.mega_pretrain import PretrainConfig, prepare_pool, pretrain

    runs = Path(runs)
    state = Path(state_dir) if state_dir is not None else None
    print(describe(recipe), flush=True)
    times: dict[str, float] = {}
    tokenizer_metrics: dict = {}
    if tokenizer_dir is None:
        tokenizer_dir, tokenizer_metrics = train_tokenizer_stage(recipe, runs, threads, state)
        if Path(tokenizer_dir).name != "final" or until == "tokenizer":
            return None
    tokenizer = MeshVQVAE.from_pretrained(tokenizer_dir)

    m = recipe.mega
    start = time.perf_counter()
    pool = prepare_pool(runs / "pool.safetensors", tokenizer, m.pool_size, 0,
                        meshes=SyntheticMeshes(prior_kind=m.pool_prior))
    times["pool_min"] = (time.perf_counter() - start) / 60
    common = {**stage_settings(m, threads), "pool": str(runs / "pool.safetensors"), "tokenizer": str(tokenizer_dir)}
    if state is not None:
        restore(state / "pretrain", stage_dir(runs, "pretrain"))
    pre_final = pretrain(PretrainConfig(out_dir=str(stage_dir(runs, "pretrain")), steps=m.pretrain_steps,
                                        **common), tokenizer=tokenizer, pool=pool)
    if pre_final.name != "final" or until == "pretrain":
        return None

    def conditioned_stage(stage: str, init: Path, lifter: Path | None = None, round_: int = 1) -> Path:
        """Restore the stage's saved state into an empty run folder, then train (or resume) it."""
        cfg = conditioned_config(m, runs, init, common, stage=stage, lifter=lifter, polish_round=round_)
        if state is not None:
            restore(state / Path(cfg.out_dir).name, cfg.out_dir)
        return train_conditioned(cfg, tokenizer=tokenizer, pool=pool)

    final = conditioned_stage("conditioned", pre_final)
    if final.name != "final":
        return None
    hours = {"tokenizer": tokenizer_metrics.get("train_hours"), "pretrain": stage_hours(pre_final),
             "conditioned": stage_hours(final)}
    if m.tail_steps and until != "conditioned":
        final = conditioned_stage("tail", final)
        if final.name != "final":
            return None
        hours["warm restart"] = stage_hours(final)
    if until == "conditioned":
        return None
    if m.lifter_steps and until != "tail":
        lifter = train_lifter_stage(m, runs, pool, threads, state)
        if lifter.name != "final":
            return None
        hours["lifter"] = stage_hours(lifter)
        restarts = [("lifted", 1, m.lifted_steps, "warm restart with the lifter")]
        restarts += [("polish", r, m.polish_steps, polish_label(r)) for r in range(1, m.polish_rounds + 1)]
        for stage, round_, steps, label in restarts:
            if not steps or until == STAGES[STAGES.index(stage) - 1]:
                break
            final = conditioned_stage(stage, final, lifter, round_)
            if final.name != "final":
                return None
            hours[label] = stage_hours(final)
    if until in ("tail", "lifter", "lifted", "polish"):
        return None
    if recipe.decoder is not None:
        tokenizer_dir, tokenizer_metrics = train_decoder_stage(recipe, runs, Path(tokenizer_dir), tokenizer_metrics,
                                                               threads, state)
        if tokenizer_dir.name != "final":
            return None
        hours["decoder"] = tokenizer_metrics["decoder"]["train_hours"]
        tokenizer = MeshVQVAE.from_pretrained(tokenizer_dir)

    result = score_run(recipe, runs, final, tokenizer, load_mega(pre_final), times, hours)
    if install:
        install_model(final, default_model_dir(), result, half=True)
        install_model(pre_final, resources_dir() / "pretrained")
        if tokenizer_metrics:
            install_model(Path(tokenizer_dir), shipped_tokenizer_dir(), tokenizer_metrics)
        print(f"installed into {default_model_dir().parent}")
    return result


def score_run(recipe: Recipe, runs: Path, final: Path, tokenizer, pretrained, times: dict[str, float],
              hours: dict[str, float | None]) -> dict:
    """The benchmark of a run's final conditioned model as it would be installed (float16 weights), with the
    recipe, its stage minutes and training hours and the machine; written to ``runs/metrics.json``."""
    from megaviewer.body.assets import BodyAssets
    from megaviewer.model.mega import load_mega
    from training.evaluate import benchmark, format_report

    start = time.perf_counter()
    result = benchmark(as_shipped(load_mega(final)), tokenizer, BodyAssets.load().coco_regressor,
                       unconditional_model=pretrained)
    times["evaluation_min"] = (time.perf_counter() - start) / 60
    result["stage_minutes"] = times
    result["train_hours"] = hours
    result["recipe"] = recipe.to_dict()
    result["machine"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    print(format_report(result))
    atomic_write_text(runs / "metrics.json", json.dumps(result, indent=2))
    return result


def stage_settings(m: MegaStage, threads: int) -> dict:
    """The settings that pre-training and every conditioned stage of ``m`` share (beside pool and tokenizer)."""
    return dict(preset=m.preset, batch_size=m.batch_size, lr=m.lr, threads=threads, ckpt_every=m.ckpt_every,
                warmup_steps=m.warmup_steps)


def polish_label(round_: int) -> str:
    """How the recorded training hours name a round of the last warm restart (the recipe's third warm restart)."""
    return "third warm restart" if round_ == 1 else f"warm restart {round_ + 2}"


def conditioned_config(m: MegaStage, runs: Path, init: Path, common: dict, stage: str = "conditioned",
                       lifter: Path | None = None, polish_round: int = 1):
    """The config of a conditioned ``stage``: ``conditioned`` (from the pre-trained ``init``), ``tail``, its warm
    restart (from the conditioned stage's final ``init``, at the tail's learning rate and share of people with
    landmarks), ``lifted``, the second warm restart with the trained ``lifter`` inside the model, or ``polish``, a
    third one on the same data from the second's final weights; its ``polish_round``-th repetition starts from the
    previous round's final weights, in its own folder (:func:`polish_stage`) and with its own data seed."""
    from training.evaluate import TRAINING_LANDMARK_PROB, training_observations
    from training.mega_conditioned import ConditionedConfig
    from training.mega_losses import LossWeights

    settings = dict(common)
    steps = {"conditioned": m.train_steps, "tail": m.tail_steps, "lifted": m.lifted_steps,
             "polish": m.polish_steps}[stage]
    landmark_prob = {"conditioned": TRAINING_LANDMARK_PROB, "tail": m.tail_landmark_prob,
                     "lifted": m.lifted_landmark_prob, "polish": m.lifted_landmark_prob}[stage]
    observation = training_observations(m.landmarks, m.gross_2d_errors, landmark_prob)
    if stage == "tail":
        settings.update(lr=m.tail_lr, warmup_steps=m.tail_warmup_steps)
    elif stage in ("lifted", "polish"):
        lr = m.lifted_lr if stage == "lifted" else m.polish_lr
        settings.update(lr=lr, warmup_steps=m.tail_warmup_steps, lifter=str(lifter))
    if stage == "polish":
        settings.update(seed=polish_round - 1)
    out_dir = stage_dir(runs, polish_stage(polish_round) if stage == "polish" else stage)
    return ConditionedConfig(out_dir=str(out_dir), steps=steps, init=str(init), masking=m.masking,
                             reprojection_rows=m.reprojection_rows, fresh_lr_scale=m.fresh_lr_scale,
                             weights=LossWeights(code_smoothing=m.code_smoothing, lifting=m.lifting),
                             kinds=("keypoints", "landmarks") if m.landmarks else None, observation=observation,
                             **settings)


def train_lifter_stage(m: MegaStage, runs: Path, pool, threads: int, state: Path | None,
                       progress: bool = True) -> Path:
    """The keypoint lifter, trained on the conditioned stage's simulated detector (its keypoints only), in
    ``runs/lifter``."""
    from training.evaluate import training_observations
    from training.lifter import LifterTrainConfig, train_lifter

    if state is not None:
        restore(state / "lifter", stage_dir(runs, "lifter"))
    observation = training_observations(False, m.gross_2d_errors)
    return train_lifter(LifterTrainConfig(out_dir=str(stage_dir(runs, "lifter")), steps=m.lifter_steps,
                                          batch_size=m.lifter_batch_size, lr=m.lifter_lr, observation=observation,
                                          threads=threads, progress=progress), pool=pool)


def install_model(src: Path, dest: Path, metrics: dict | None = None, half: bool = False) -> None:
    """Copy a checkpoint folder's weights and config (and write ``metrics``) into a shipped folder, each file
    replaced atomically; ``half`` stores the floating weights as float16 (:func:`megaviewer.io.checkpoint.to_half`)."""
    from megaviewer.io.atomic import atomic_path
    from megaviewer.io.checkpoint import load_tensors, save_tensors, to_half

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        if half and name == "model.safetensors":
            save_tensors(dest / name, to_half(load_tensors(src / name)))
            continue
        with atomic_path(dest / name) as tmp:
            shutil.copy2(src / name, tmp)
    if metrics is not None:
        atomic_write_text(dest / "metrics.json", json.dumps(metrics, indent=2))


def as_shipped(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its weights rounded as the shipped default stores them (``install_model(..., half=True)``),
    so the evaluation scores the very numbers users load."""
    from megaviewer.io.checkpoint import to_half

    model.load_state_dict(to_half(model.state_dict()))
    return model
