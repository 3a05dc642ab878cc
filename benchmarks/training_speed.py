"""Time to accuracy of conditioned MEGA training: CPU-minutes until the benchmark's deterministic PA-MPJPE
reaches a target, for several recipes of the conditioned stage, side by side on one machine.

Every variant starts from the same pre-trained model and trains on the same mesh pool (the tokenizer's tokens of
the key-pose prior, as the ``baseline`` recipe), and is evaluated every ``eval_every`` steps on the benchmark's
held-out people (deterministic mode only). A variant may name its own tokenizer and pre-trained model instead
(``tokenizer`` / ``pretrained``, e.g. the shipped ones): the same meshes, observations and people, tokenised by
that tokenizer, so what it measures is what a better tokenizer and pre-training buy the conditioned stage; the
hours those took are not counted in its minutes (they are trained once, for every later conditioned run).
Training time is the loop's own wall-clock record (``train_seconds`` of each checkpoint), so evaluation time is
not counted. A variant is a full schedule (its learning-rate decay is laid out over its ``steps``), run to the end
or stopped at ``max_minutes``. A variant may also pre-train its own model first (``pretrain_steps``, the baseline
recipe's pre-training run longer; not counted either), and repeat another under its own ``seed`` (the run-to-run
spread of a single variant).

A variant that reads the detector's 3D landmarks trains on them as the shipped recipe does and is scored with them, as
the benchmark scores such a model; its keypoint-only score is recorded beside (``pa_mpjpe_without_landmarks``), and
``reads_detector_landmarks`` marks it, since it answers from more than the keypoints. Runs measured under other
conditions are kept apart in the report (``earlier_runs``), each group against its own baseline run.

``python scripts/bench_training.py`` writes ``resources/bench/train_throughput.json``.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from training.recipes import MegaStage, get_recipe

SCHEMA = "megaviewer.bench.train_throughput/1"


@dataclass(frozen=True)
class Variant:
    """A conditioned-stage recipe to time: the baseline recipe's MEGA stage with some settings replaced."""

    name: str
    label: str
    changes: dict = field(default_factory=dict)  # MegaStage fields -> values
    tokenizer: str | None = None  # repository-relative folders; None: the run's (``--tokenizer``)
    pretrained: str | None = None  # None: the run's (``--pretrained``)
    # pre-train its own model for this many steps first, as the baseline recipe pre-trains (same pool, preset,
    # batch, learning rate; cached under the runs folder): its minutes are not counted, like the given one's
    pretrain_steps: int | None = None
    seed: int = 0  # of the conditioned run (the fresh tensors' initial values, the batches): a repeat of a variant

    @property
    def stage(self) -> MegaStage:
        return replace(get_recipe("baseline").mega, **self.changes)


# The short schedule most variants build on: learning rate 3e-3 over 1,800 steps, three quarters of the batches
# fully masked, the 2D loss on 4 rows of each batch.
FULL75 = {"train_steps": 1_800, "lr": 3e-3, "warmup_steps": 100, "masking": "cosine_full75", "reprojection_rows": 4}
LANDMARKS = {**FULL75, "landmarks": True}
# Landmarks on their keypoints' tokens, the tensors pre-training lacks at five times the learning rate.
MERGED_FRESH5 = {**LANDMARKS, "preset": "cpu_fast_merged", "fresh_lr_scale": 5.0}

VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("baseline", "baseline recipe: lr 1e-3, 5,400 steps, half full-mask batches, 2D loss on 16 rows"),
    Variant("lr3e-3", "lr 3e-3, 1,800 steps", {"train_steps": 1_800, "lr": 3e-3, "warmup_steps": 100}),
    Variant("full75_rows4", "lr 3e-3, 1,800 steps, three quarters of the batches fully masked, 2D loss on 4 rows",
            FULL75),
    Variant("full75_rows4_soft", "as full75_rows4, a third of each token target on neighbouring codes",
            {**FULL75, "code_smoothing": 0.3}),
    Variant("global_full75_rows4", "as full75_rows4, with the whole-skeleton keypoint token (cpu_fast_global)",
            {**FULL75, "preset": "cpu_fast_global"}),
    Variant("global_lift", "as global_full75_rows4, plus the auxiliary 3D-joint read-out loss (weight 5)",
            {**FULL75, "preset": "cpu_fast_lift", "lifting": 5.0}),
    Variant("lifter_full75_rows4",
            "a keypoint lifter (2,000 steps, its minutes counted) whose 3D joints the model reads as landmarks, then "
            "lr 3e-3, 1,500 steps, three quarters of the batches fully masked, 2D loss on 4 rows",
            {**LANDMARKS, "train_steps": 1_500, "lifter_steps": 2_000}),
    Variant("b32_full75_rows4", "as full75_rows4 with batches of 32: twice the updates for the same observations",
            {**FULL75, "train_steps": 3_600, "batch_size": 32, "lr": 2e-3, "warmup_steps": 200}),
    Variant("offsets_full75_rows4", "as full75_rows4, from the offsets tokenizer (100,000 steps, even token grid) "
            "and its pre-trained model (key poses + real motion): the even_extremities recipe's tokenizer and "
            "pre-training", FULL75, tokenizer="resources/baselines/offsets_model/tokenizer",
            pretrained="resources/baselines/offsets_model/pretrained"),
    Variant("full75_rows4_lr6e-3", "as full75_rows4 at learning rate 6e-3 (warm-up 200 steps)",
            {**FULL75, "lr": 6e-3, "warmup_steps": 200}),
    Variant("full75_rows4_fresh5", "as full75_rows4, the tensors pre-training lacks (conditioners, rotation and "
            "camera head) at five times the learning rate", {**FULL75, "fresh_lr_scale": 5.0}),
    Variant("full75_rows4_fresh10", "as full75_rows4_fresh5, at ten times the learning rate",
            {**FULL75, "fresh_lr_scale": 10.0}),
    Variant("full75_rows4_fresh5_seed1", "full75_rows4_fresh5 again with another seed",
            {**FULL75, "fresh_lr_scale": 5.0}, seed=1),
    Variant("full75_rows4_pretrain6k", "as full75_rows4, from a model pre-trained 6,000 steps instead of 1,500 (the "
            "baseline recipe's pre-training, longer; its minutes not counted)", FULL75, pretrain_steps=6_000),
    Variant("full75_rows4_pretrain6k_fresh5", "as full75_rows4_fresh5, from the model pre-trained 6,000 steps",
            {**FULL75, "fresh_lr_scale": 5.0}, pretrain_steps=6_000),
    Variant("landmarks_full75_rows4", "as full75_rows4, reading the detector's 3D landmarks besides the keypoints "
            "(present for 80 % of the training people, as the shipped recipe trains them); scored with them, as the "
            "benchmark scores a model that reads them, and without them beside", LANDMARKS),
    Variant("landmarks_lr6e-3", "as landmarks_full75_rows4 at learning rate 6e-3 (warm-up 200 steps)",
            {**LANDMARKS, "lr": 6e-3, "warmup_steps": 200}),
    Variant("landmarks_fresh5", "as landmarks_full75_rows4, the tensors pre-training lacks at five times the "
            "learning rate", {**LANDMARKS, "fresh_lr_scale": 5.0}),
    Variant("landmarks_fresh10", "as landmarks_fresh5, at ten times the learning rate",
            {**LANDMARKS, "fresh_lr_scale": 10.0}),
    Variant("landmarks_pretrain6k", "as landmarks_full75_rows4, from the model pre-trained 6,000 steps", LANDMARKS,
            pretrain_steps=6_000),
    Variant("landmarks_pretrain6k_fresh5", "as landmarks_fresh5, from the model pre-trained 6,000 steps",
            {**LANDMARKS, "fresh_lr_scale": 5.0}, pretrain_steps=6_000),
    Variant("landmarks_pretrain6k_fresh10", "as landmarks_fresh10, from the model pre-trained 6,000 steps",
            {**LANDMARKS, "fresh_lr_scale": 10.0}, pretrain_steps=6_000),
    Variant("landmarks_merged_fresh5", "as landmarks_fresh5, each landmark added onto its keypoint's token "
            "(cpu_fast_merged: 17 conditioning tokens instead of 34)", MERGED_FRESH5),
    Variant("landmarks_merged_pretrain6k_fresh5", "as landmarks_merged_fresh5, from the model pre-trained 6,000 steps",
            MERGED_FRESH5, pretrain_steps=6_000),
    Variant("landmarks_merged_fresh5_seed1", "landmarks_merged_fresh5 again with another seed", MERGED_FRESH5,
            seed=1),
    Variant("landmarks_pretrain6k_fresh10_1500", "as landmarks_pretrain6k_fresh10, the schedule laid out over 1,500 "
            "steps", {**LANDMARKS, "fresh_lr_scale": 10.0, "train_steps": 1_500}, pretrain_steps=6_000),
)}


@dataclass
class CurvePoint:
    steps: int
    train_minutes: float
    pa_mpjpe: float
    mpjpe: float
    pa_mpjpe_without_landmarks: float | None = None  # a landmark model on the same people given keypoints only
    # the same checkpoint decoded with the expected codes, as the engine decodes (megaviewer.generate)
    pa_mpjpe_expected_codes: float | None = None


def deterministic_pa_mpjpe(model, tokenizer, regressor, data) -> tuple[float, float, float]:
    """Deterministic PA-MPJPE and MPJPE (mm) of a model decoded with the argmax codes, as the target (the
    baseline recipe's accuracy) was measured, and its PA-MPJPE decoded with the expected codes, from one pass."""
    from training.evaluate import deterministic_scores_by_decoding

    scores = deterministic_scores_by_decoding(model, tokenizer, regressor, data)
    mean = lambda x: x.mean().item()  # noqa: E731
    return mean(scores[False]["pa_mpjpe"]), mean(scores[False]["mpjpe"]), mean(scores[True]["pa_mpjpe"])


def first_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """The ``x`` at which ``(x, value)`` points first reach ``value <= target``, linear between points."""
    previous = None
    for x, value in points:
        if value <= target:
            if previous is None:
                return x
            frac = (previous[1] - target) / max(previous[1] - value, 1e-9)
            return previous[0] + frac * (x - previous[0])
        previous = (x, value)
    return None


def minutes_to_target(curve: list[CurvePoint], target: float, expected_codes: bool = False) -> float | None:
    """Training minutes at which the curve first reaches ``target`` (linear between evaluations), with the argmax
    codes or (``expected_codes``, when every point has them) the expected codes."""
    values = [point.pa_mpjpe_expected_codes if expected_codes else point.pa_mpjpe for point in curve]
    if any(v is None for v in values):
        return None
    return first_reach(list(zip([point.train_minutes for point in curve], values, strict=True)), target)


def variant_config(stage: MegaStage, out: Path, init: Path, lifter: Path | None, eval_every: int, stop: int,
                   threads: int, progress: bool = False, seed: int = 0):
    """The conditioned run of a variant up to step ``stop``: the recipe's own conditioned stage
    (:func:`training.run_recipe.conditioned_config`: a landmark variant trains on the simulated detector's landmarks
    as the shipped recipe does), on the benchmark's pool, checkpointed at every evaluation; a variant that trained a
    lifter has every person's landmarks from it instead (the benchmark gives keypoints only)."""
    from training.evaluate import landmark_observations
    from training.run_recipe import conditioned_config, stage_settings

    common = {**stage_settings(stage, threads), "ckpt_every": eval_every, "pool": "unused", "progress": progress,
              "stop_at": stop, "seed": seed}
    cfg = replace(conditioned_config(stage, out, init, common), out_dir=str(out / "mega" if lifter else out))
    return replace(cfg, observation=landmark_observations(0.0), lifter=str(lifter)) if lifter else cfg


def run_variant(variant: Variant, runs: Path, init: Path, tokenizer, pool, regressor, data, eval_every: int,
                threads: int, max_minutes: float, target: float, progress: bool = False,
                tokenizer_dir: Path | None = None) -> dict:
    from megaviewer.model.mega import load_mega
    from training.evaluate import deterministic_scores
    from training.loop import training_record
    from training.mega_conditioned import train_conditioned
    from training.run_recipe import train_lifter_stage

    out = runs / variant.name
    stage = variant.stage
    reads_detector_landmarks = stage.landmarks and not stage.lifter_steps  # a lifter answers for them otherwise
    if reads_detector_landmarks and data.landmarks is None:
        raise ValueError(f"{variant.name} reads landmarks: its benchmark people need them (build_eval_set obs)")
    lifter, lifter_minutes = None, 0.0
    if stage.lifter_steps:  # its training time counts: the model cannot start before it
        lifter = train_lifter_stage(stage, out, pool, threads, None, progress=progress)
        lifter_minutes = training_record(lifter)[1] / 60
    keypoints_only = data.without_landmarks() if data.landmarks is not None else data
    curve: list[CurvePoint] = []
    stop = 0
    while stop < stage.train_steps:
        stop = min(stop + eval_every, stage.train_steps)
        cfg = variant_config(stage, out, init, lifter, eval_every, stop, threads, progress, variant.seed)
        folder = train_conditioned(cfg, tokenizer=tokenizer, pool=pool, regressor=regressor)
        step, seconds = training_record(folder)
        model = load_mega(folder)  # once per evaluation, for every score below
        pa, mpjpe, expected = deterministic_pa_mpjpe(model, tokenizer, regressor,
                                                     data if reads_detector_landmarks else keypoints_only)
        without = (deterministic_scores(model, tokenizer, regressor, keypoints_only, expected_codes=False)[
            "pa_mpjpe"].mean().item() if reads_detector_landmarks else None)
        curve.append(CurvePoint(step, lifter_minutes + seconds / 60, pa, mpjpe, without, expected))
        print(f"{variant.name}: step {step}, {seconds / 60:.1f} min, PA-MPJPE {pa:.1f} mm"
              + (f" ({without:.1f} without landmarks)" if without is not None else "")
              + f", {expected:.1f} with expected codes", flush=True)
        if seconds / 60 > max_minutes or pa <= target:
            break
    return {"variant": {"name": variant.name, "label": variant.label, "stage": asdict(stage), "seed": variant.seed},
            "reads_detector_landmarks": reads_detector_landmarks,
            "tokenizer": str(tokenizer_dir), "pretrained": str(init), "eval_every": eval_every,
            **({"lifter_minutes": lifter_minutes} if lifter else {}),
            "curve": [asdict(p) for p in curve],
            "minutes_to_target": minutes_to_target(curve, target),
            "minutes_to_target_expected_codes": minutes_to_target(curve, target, expected_codes=True)}


def run(names: list[str], out_json: Path, runs: Path, eval_every: int, threads: int, max_minutes: float,
        target: float, people: int, note: str | None = None, tokenizer_dir: Path | None = None,
        pretrained_dir: Path | None = None) -> dict:
    from megaviewer.body.assets import BodyAssets
    from megaviewer.io.atomic import atomic_write_text
    from megaviewer.paths import resources_dir
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.meshes import SyntheticMeshes
    from training.evaluate import build_eval_set, landmark_observations
    from training.mega_pretrain import PretrainConfig, prepare_pool, pretrain
    from training.run_recipe import stage_settings

    if threads:
        torch.set_num_threads(threads)
    repo = resources_dir().parent
    default_tokenizer = Path(tokenizer_dir or resources_dir() / "tokenizer")
    default_pretrained = Path(pretrained_dir or resources_dir() / "pretrained")
    stage = get_recipe("baseline").mega
    regressor = BodyAssets.load().coco_regressor.float()
    loaded: dict[Path, tuple] = {}

    def tokenizer_folder(variant: Variant) -> Path:
        return repo / variant.tokenizer if variant.tokenizer else default_tokenizer

    def tag(folder: Path) -> str:
        where, root = folder.resolve(), repo.resolve()
        return "_".join(where.relative_to(root).parts) if where.is_relative_to(root) else where.name

    def tokenizer_and_pool(folder: Path):
        """Each tokenizer once, with its pool of the baseline's meshes, cached on disk under the folder's name
        (tokenizers of one hierarchy give pools that load alike but hold other tokens)."""
        if folder not in loaded:
            tokenizer = MeshVQVAE.from_pretrained(folder)
            pool = prepare_pool(runs / f"pool-{tag(folder)}.safetensors", tokenizer, stage.pool_size, 0,
                                meshes=SyntheticMeshes(prior_kind=stage.pool_prior))
            loaded[folder] = tokenizer, pool
        return loaded[folder]

    def pretrained_folder(variant: Variant, folder: Path, tokenizer, pool) -> Path:
        if variant.pretrain_steps:
            out = runs / f"pretrain-{tag(folder)}-{variant.pretrain_steps}"
            return pretrain(PretrainConfig(out_dir=str(out), steps=variant.pretrain_steps, progress=False,
                                           **stage_settings(stage, threads)), tokenizer=tokenizer, pool=pool)
        return repo / variant.pretrained if variant.pretrained else default_pretrained

    # the benchmark's people (their meshes and observations do not depend on the tokenizer that builds the set)
    # and the detector's 3D landmarks for each, drawn after everything else (variants that do not read them get the
    # same keypoints without them)
    data = build_eval_set(tokenizer_and_pool(tokenizer_folder(VARIANTS[names[0]]))[0], people,
                          obs=landmark_observations(1.0))
    report = json.loads(out_json.read_text()) if out_json.exists() else {"variants": {}}
    report.update({"schema": SCHEMA, "command": "python scripts/bench_training.py", "target_pa_mpjpe": target,
                   "eval_people": people, "eval_every": eval_every, "torch_threads": torch.get_num_threads(),
                   "machine": platform.processor() or platform.machine(),
                   "date": time.strftime("%Y-%m-%d")})
    if note:
        report["note"] = note
    for name in names:
        variant = VARIANTS[name]
        folder = tokenizer_folder(variant)
        tokenizer, pool = tokenizer_and_pool(folder)
        init = pretrained_folder(variant, folder, tokenizer, pool)
        result = run_variant(variant, runs, init, tokenizer, pool, regressor, data, eval_every, threads,
                             max_minutes, target, tokenizer_dir=folder)
        report["variants"][name] = result
        atomic_write_text(out_json, json.dumps(report, indent=2))
    add_speedups(report["variants"])
    atomic_write_text(out_json, json.dumps(report, indent=2))
    return report


def add_speedups(variants: dict[str, dict]) -> None:
    """Each variant's speed-up over the baseline: to the target (``speedup_vs_baseline``), and to the accuracy
    the variant itself ended at (``speedup_at_own_final_accuracy``: the baseline's minutes to reach that PA-MPJPE
    over the variant's minutes for its whole run), which says what a variant that stops short of the target buys."""
    baseline = variants.get("baseline")
    base_curve = [CurvePoint(**p) for p in baseline["curve"]] if baseline else []
    base = baseline.get("minutes_to_target") if baseline else None
    base_expected = baseline.get("minutes_to_target_expected_codes") if baseline else None
    for result in variants.values():
        mine = result.get("minutes_to_target")
        result["speedup_vs_baseline"] = base / mine if base and mine else None
        mine_expected = result.get("minutes_to_target_expected_codes")
        if base_expected and mine_expected:  # both decoded as the engine decodes
            result["speedup_vs_baseline_expected_codes"] = base_expected / mine_expected
        last = CurvePoint(**result["curve"][-1])
        reach = minutes_to_target(base_curve, last.pa_mpjpe) if base_curve else None
        result["speedup_at_own_final_accuracy"] = reach / last.train_minutes if reach else None
