"""Evaluate a MEGA checkpoint on held-out synthetic 2D-keypoint observations (paper Tables 1, 3, App. A).

The benchmark: held-out Anny meshes (a seed no training stream uses) seen through random perspective
cameras by a simulated keypoint detector (noise, outliers, occlusion, truncation; see
``training/data/observations.py``). Metrics as the original (docs/original-implementation.md §8), in mm: PVE on
centroid-centred oriented meshes (prediction = R̂ · canonical), MPJPE and PA-MPJPE on COCO-17 joints
regressed from the meshes. Stochastic mode: min-of-Q per metric for Q = 1, 5, 10, 25; mean-of-Q mesh
with its distance to the deterministic mesh and the per-vertex SD; the Spearman correlation between the
per-vertex SD and the per-vertex error of the deterministic mesh (is the uncertainty map informative?);
APD of unconditional samples; a mean-pose baseline for scale.

Placement: ``"network"`` (the default) scores the network alone, each mesh turned by its own rotation head;
``"engine"`` scores what :meth:`megaviewer.engine.Engine.recover` returns by default, through the same code
(:func:`megaviewer.keypoint_fit.fit_to_keypoints`): every hypothesis's rotation and camera fitted to the
person's keypoints, then its body fitted to them (and to the landmarks, which the benchmark gives a model that
reads them). The people, observations and samples are the same in both.

Decoding: by default as the engine decodes (``DEFAULTS.expected_codes``: the expected code where the generation
takes an argmax, :mod:`megaviewer.generate`); the deterministic mode's scores with the paper's argmax codes of
the same pass are recorded beside them (``deterministic_argmax_codes``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from megaviewer import generate
from megaviewer.geometry import metrics
from megaviewer.geometry.rotations import rot6d_to_matrix
from megaviewer.model.mega import Mega
from megaviewer.settings import DEFAULTS
from megaviewer.tokenizer.model import MeshVQVAE
from training.data.meshes import SyntheticMeshes
from training.data.observations import ObservationConfig, synthesize
from training.data.pool import MeshPool
from training.uncertainty_maps import spearman_rows, spread_mm

EVAL_SEED = 9_100_001
BENCHMARK_PEOPLE = 512  # held-out people of the shipped model's benchmark (train_default, ablation, lifter)
HARD_SPLIT_PEOPLE = 256  # people of the held-out motion clips (the hard-poses split)
Q_VALUES = (1, 5, 10, 25)


@dataclass
class EvalSet:
    vertices: torch.Tensor  # (B, V, 3) GT oriented (camera-frame rotation), centroid-centred
    keypoints: torch.Tensor  # (B, 17, 3) crop-normalised observations
    rot_cam: torch.Tensor  # (B, 3, 3)
    landmarks: torch.Tensor | None = None  # (B, 17, 4) simulated 3D landmarks, when the observations have them
    images: torch.Tensor | None = None  # (B, 3, S, S) normalised crops, for image-conditioned models (datasets)

    def conditioning(self, kinds: tuple[str, ...], rows: slice = slice(None)) -> dict[str, torch.Tensor]:
        """The inputs a model conditioned on ``kinds`` reads, for ``rows``; a landmark model evaluated on a
        set without landmarks gets zeros (no landmarks), as at inference without them."""
        kp = self.keypoints[rows]
        out = {"keypoints": kp}
        if "landmarks" in kinds:
            out["landmarks"] = (self.landmarks[rows] if self.landmarks is not None
                                else torch.zeros(kp.shape[0], kp.shape[1], 4))
        if "image" in kinds:
            if self.images is None:
                raise ValueError("this evaluation set has no images for an image-conditioned model")
            out["image"] = self.images[rows]
        return {k: out[k] for k in kinds}

    def without_landmarks(self) -> EvalSet:
        return EvalSet(self.vertices, self.keypoints, self.rot_cam, images=self.images)


def observations_for(model: Mega) -> ObservationConfig:
    """The benchmark's observations for ``model``: with the detector's 3D landmarks (simulated with the measured
    error model, for every person, as MediaPipe gives them) when the model reads them."""
    if "landmarks" not in model.config.conditioning.kinds:
        return ObservationConfig()
    return landmark_observations(landmark_prob=1.0)


TRAINING_LANDMARK_PROB = 0.8  # people with landmarks in conditioned training: the rest teach keypoints alone


def landmark_observations(landmark_prob: float = TRAINING_LANDMARK_PROB) -> ObservationConfig:
    """Observations with the detector's 3D landmarks simulated by the measured error model (resources/body), for
    ``landmark_prob`` of the people (training keeps some without, so a model works without them)."""
    from megaviewer.paths import resources_dir
    from training.data.landmark_noise import LandmarkNoise

    return ObservationConfig(landmarks=LandmarkNoise.from_json(resources_dir() / "body" / "landmark_noise.json"),
                             landmark_prob=landmark_prob)


def training_observations(landmarks: bool, gross_2d_errors: bool,
                          landmark_prob: float = TRAINING_LANDMARK_PROB) -> ObservationConfig:
    """The simulated detector of synthetic conditioned training (recipes and ``megaviewer-train``): the 3D
    landmarks for ``landmark_prob`` of the people when the model reads them, and the real detector's gross 2D
    errors (:data:`training.data.observations.GROSS_2D_ERRORS`) when asked."""
    from training.data.observations import GROSS_2D_ERRORS

    observation = landmark_observations(landmark_prob) if landmarks else ObservationConfig()
    return replace(observation, **GROSS_2D_ERRORS) if gross_2d_errors else observation


def load_for_evaluation(folder: str | Path, tokenizer_path: str | Path | None = None
                        ) -> tuple[Mega, MeshVQVAE, Path]:
    """A MEGA checkpoint folder's model and the tokenizer it decodes through (``tokenizer_path``, else the folder's
    own copy, else the shipped one: :func:`megaviewer.engine.tokenizer_folder`), and that tokenizer's folder;
    refused when the tokenizer's token count or codebook is not the model's, before any minutes of evaluation."""
    from megaviewer.engine import check_tokenizer_fits, tokenizer_folder
    from megaviewer.model.mega import load_mega

    model = load_mega(folder)
    tokenizer_dir = tokenizer_folder(folder, tokenizer_path)
    tokenizer = MeshVQVAE.from_pretrained(tokenizer_dir)
    check_tokenizer_fits(model, tokenizer, what=f"{folder} (tokenizer {tokenizer_dir})")
    return model, tokenizer, tokenizer_dir


@torch.inference_mode()
def build_eval_set(tokenizer: MeshVQVAE, count: int, seed: int = EVAL_SEED,
                   obs: ObservationConfig | None = None, meshes: SyntheticMeshes | None = None) -> EvalSet:
    meshes = meshes or SyntheticMeshes()
    held = meshes.heldout(count, seed=seed)
    canonical = metrics.center(held.vertices)
    joints = meshes.body.joints(canonical)
    pool = MeshPool(tokenizer.encode(canonical), joints, held.params.global_orient.float())
    batch = synthesize(pool, obs or ObservationConfig(), torch.Generator().manual_seed(seed + 1))
    oriented = canonical @ batch.rot_cam.transpose(-1, -2)
    obs = obs or ObservationConfig()
    return EvalSet(oriented, batch.keypoints, batch.rot_cam, batch.landmarks if obs.landmarks is not None else None)


def _scores(pred: torch.Tensor, gt: torch.Tensor, regressor: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample PVE / MPJPE / PA-MPJPE (mm) of centroid-centred oriented meshes (..., V, 3)."""
    pred, gt = metrics.center(pred), metrics.center(gt)
    pj, gj = regressor @ pred, regressor @ gt
    return {"pve": metrics.pve(pred, gt), "mpjpe": metrics.mpjpe(pj, gj), "pa_mpjpe": metrics.pa_mpjpe(pj, gj)}


def conditioning_kinds(model: Mega) -> tuple[str, ...]:
    return tuple(model.config.conditioning.kinds)


EXPECTED_CODES_SUFFIX = "+expected_codes"


def row_decodes_expected_codes(name: str) -> bool:
    """Whether a row of a model comparison (``scripts/compare_models.py``, the detector-in-the-loop benchmark)
    decodes the expected codes: only a row named ``<model>+expected_codes``; the others decode the paper's argmax
    codes, as each model was first measured, so each row still adds one change to the one before it."""
    return name.endswith(EXPECTED_CODES_SUFFIX)


PLACEMENTS = ("network", "engine")
ENGINE_FIT_ROWS = 200  # rows per body-fit call: bounds the memory of differentiating through the decoder


@dataclass
class EngineFit:
    """The engine's default placement of one batch of people's hypotheses (module docstring): their keypoints
    (B, 17, 3) and the detector's landmarks (B, 17, 4) where the set has them."""

    regressor: torch.Tensor
    keypoints: torch.Tensor
    landmarks: torch.Tensor | None = None
    refine: bool = DEFAULTS.refine  # the body fit, on by default in the engine as in the app

    def place(self, tokenizer: MeshVQVAE, out: generate.GenerationResult, canonical: torch.Tensor) -> torch.Tensor:
        from megaviewer.keypoint_fit import fit_to_keypoints

        per_row = lambda x: x.repeat_interleave(out.num_samples, dim=0)  # noqa: E731  (rows are item-major)
        fitted = fit_to_keypoints(tokenizer, self.regressor, out.tokens, canonical, rot6d_to_matrix(out.rot6d),
                                  out.cam, per_row(self.keypoints), refine=self.refine,
                                  landmarks=per_row(self.landmarks) if self.landmarks is not None else None,
                                  chunk_rows=ENGINE_FIT_ROWS, latents=out.latents)
        return fitted.oriented


def engine_fit(data: EvalSet, rows: slice, regressor: torch.Tensor) -> EngineFit:
    """The engine placement for ``rows`` of ``data``: the body fit reads the detector's landmarks where the set has
    them (as the engine does whenever the detector gives them)."""
    landmarks = data.landmarks[rows] if data.landmarks is not None else None
    return EngineFit(regressor.float(), data.keypoints[rows], landmarks)


def _placed(tokenizer: MeshVQVAE, out: generate.GenerationResult, fit: EngineFit | None) -> torch.Tensor:
    """Oriented, centroid-centred meshes of a generation: by the network's rotation, or placed as the engine does."""
    canonical = out.decode(tokenizer)
    if fit is not None:
        return fit.place(tokenizer, out, canonical)
    return canonical @ rot6d_to_matrix(out.rot6d).transpose(-1, -2)


def _codebook(tokenizer: MeshVQVAE, expected_codes: bool) -> torch.Tensor | None:
    return tokenizer.quantizer.codebook if expected_codes else None


def deterministic_mesh(model: Mega, tokenizer: MeshVQVAE, cond, fit: EngineFit | None = None,
                       expected_codes: bool = DEFAULTS.expected_codes) -> torch.Tensor:
    """The deterministic mode's oriented, centroid-centred meshes (B, V, 3) for encoded conditioning."""
    return _placed(tokenizer, generate.deterministic(model, cond, codebook=_codebook(tokenizer, expected_codes)), fit)


def stochastic_meshes(model: Mega, tokenizer: MeshVQVAE, cond, num_samples: int, steps: int, temperature: float,
                      generator: torch.Generator, fit: EngineFit | None = None,
                      expected_codes: bool = DEFAULTS.expected_codes) -> torch.Tensor:
    """The stochastic mode's Q oriented meshes per person, (B, Q, V, 3), for encoded conditioning of B people."""
    out = generate.stochastic(model, cond, num_samples=num_samples, steps=steps, temperature=temperature,
                              generator=generator, codebook=_codebook(tokenizer, expected_codes))
    meshes = _placed(tokenizer, out, fit)
    return meshes.view(-1, num_samples, *meshes.shape[1:])


@torch.inference_mode()
def deterministic_scores(model: Mega, tokenizer: MeshVQVAE, regressor: torch.Tensor, data: EvalSet,
                         batch: int = 64, expected_codes: bool = DEFAULTS.expected_codes) -> dict[str, torch.Tensor]:
    """Per-person PVE / MPJPE / PA-MPJPE (mm) of the deterministic mode alone: the cheap check a training-speed
    benchmark runs many times."""
    return deterministic_scores_by_decoding(model, tokenizer, regressor, data, (expected_codes,), batch)[expected_codes]


@torch.inference_mode()
def deterministic_scores_by_decoding(model: Mega, tokenizer: MeshVQVAE, regressor: torch.Tensor, data: EvalSet,
                                     decodings: tuple[bool, ...] = (False, True), batch: int = 64
                                     ) -> dict[bool, dict[str, torch.Tensor]]:
    """:func:`deterministic_scores` for each decoding (``expected_codes`` False / True) of one and the same
    deterministic pass: the network runs once per batch whatever the number of decodings."""
    model.eval()
    codebook = _codebook(tokenizer, any(decodings))
    parts: dict[bool, dict[str, list[torch.Tensor]]] = {d: {} for d in decodings}
    for i in range(0, data.vertices.shape[0], batch):
        cond = model.encode_conditioning(data.conditioning(conditioning_kinds(model), slice(i, i + batch)))
        out = generate.deterministic(model, cond, codebook=codebook)
        for expected in decodings:
            mesh = _placed(tokenizer, out if expected else replace(out, latents=None), None)
            for k, v in _scores(mesh, data.vertices[i:i + batch], regressor.float()).items():
                parts[expected].setdefault(k, []).append(v)
    return {d: {k: torch.cat(v) for k, v in p.items()} for d, p in parts.items()}


@torch.inference_mode()
def evaluate(model: Mega, tokenizer: MeshVQVAE, regressor: torch.Tensor, data: EvalSet, *,
             q_values: tuple[int, ...] = Q_VALUES, steps: int = 5, temperature: float = 1.0, seed: int = 0,
             batch: int = 32, unconditional_model: Mega | None = None, apd_samples: int = 100,
             placement: str = "network", expected_codes: bool = DEFAULTS.expected_codes) -> dict:
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    model.eval()
    tokenizer.eval()
    regressor = regressor.float()
    count = data.vertices.shape[0]
    q_max = max(q_values)
    det: dict[str, list[torch.Tensor]] = {"pve": [], "mpjpe": [], "pa_mpjpe": []}
    det_argmax: dict[str, list[torch.Tensor]] = {k: [] for k in det}
    codebook = _codebook(tokenizer, expected_codes)
    minq = {q: {k: [] for k in det} for q in q_values}
    meanq = {q: {k: [] for k in (*det, "dist_to_det", "sd")} for q in q_values if q > 1}
    spearman, timings = [], {"deterministic_s": 0.0, "stochastic_s": 0.0}
    sd_maps, error_maps = [], []
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, count, batch):
        gt = data.vertices[i:i + batch]
        t0 = time.perf_counter()
        rows = slice(i, i + batch)
        cond = model.encode_conditioning(data.conditioning(conditioning_kinds(model), rows))
        fit = engine_fit(data, rows, regressor) if placement == "engine" else None
        out = generate.deterministic(model, cond, codebook=codebook)
        det_mesh = _placed(tokenizer, out, fit)
        timings["deterministic_s"] += time.perf_counter() - t0
        for k, v in _scores(det_mesh, gt, regressor).items():
            det[k].append(v)
        if codebook is not None:  # the paper's argmax codes of the same pass, for the record
            for k, v in _scores(_placed(tokenizer, replace(out, latents=None), fit), gt, regressor).items():
                det_argmax[k].append(v)
        t0 = time.perf_counter()
        samples = stochastic_meshes(model, tokenizer, cond, q_max, steps, temperature, gen, fit, expected_codes)
        timings["stochastic_s"] += time.perf_counter() - t0
        scores = _scores(samples, gt[:, None], regressor)  # (b, Q) each
        for q in q_values:
            for k in det:
                minq[q][k].append(scores[k][:, :q].min(dim=1).values)
            if q > 1:
                mean_mesh = samples[:, :q].mean(1)
                for k, v in _scores(mean_mesh, gt, regressor).items():
                    meanq[q][k].append(v)
                meanq[q]["dist_to_det"].append((mean_mesh - det_mesh).norm(dim=-1).mean(-1) * 1000)
                sd = spread_mm(samples[:, :q])  # (b, V)
                meanq[q]["sd"].append(sd.mean(-1))
                if q == q_max:
                    err = metrics.per_vertex_error(det_mesh, gt)
                    spearman.append(spearman_rows(sd, err))
                    sd_maps.append(sd)
                    error_maps.append(err)
    cat = lambda xs: torch.cat(xs).mean().item()  # noqa: E731
    result = {
        "count": count, "steps": steps, "temperature": temperature, "placement": placement,
        "expected_codes": expected_codes,
        "deterministic": {k: cat(v) for k, v in det.items()},
        "min_of_q": {str(q): {k: cat(v) for k, v in minq[q].items()} for q in q_values},
        "mean_of_q": {str(q): {k: cat(v) for k, v in meanq[q].items()} for q in meanq},
        "sd_error_spearman": cat(spearman) if spearman else None,
        # The same correlation for one map shared by everyone (the mean SD over the people): what a per-person
        # map must beat to say something about this person rather than about bodies in general.
        "sd_error_spearman_average_map": (
            spearman_rows(torch.cat(sd_maps).mean(0).expand(count, -1), torch.cat(error_maps)).mean().item()
            if sd_maps else None),
        "ms_per_person_deterministic": timings["deterministic_s"] / count * 1000,
        f"ms_per_person_stochastic_q{q_max}": timings["stochastic_s"] / count * 1000,
    }
    if codebook is not None:
        result["deterministic_argmax_codes"] = {k: cat(v) for k, v in det_argmax.items()}
        complete = all_keypoints_detected(data.keypoints)
        result["deterministic_argmax_codes"]["all_17_detected_pa_mpjpe"] = \
            torch.cat(det_argmax["pa_mpjpe"])[complete].mean().item()
    result["by_detection"] = detection_breakdown(data.keypoints, torch.cat(det["pa_mpjpe"]),
                                                 torch.cat(minq[q_max]["pa_mpjpe"]), q_max)
    first, last = result["min_of_q"][str(q_values[0])], result["min_of_q"][str(q_max)]
    result["min_of_q_improvement_pct"] = {
        k: 100.0 * (first[k] - last[k]) / max(first[k], 1e-9) for k in first}
    result["mean_pose_baseline"] = mean_pose_baseline(tokenizer, data, regressor)
    if unconditional_model is not None:
        result["unconditional_apd_cm"] = unconditional_apd(unconditional_model, tokenizer, regressor,
                                                           apd_samples, seed)
    return result


def all_keypoints_detected(keypoints: torch.Tensor) -> torch.Tensor:
    """(B, 17, 3) observations -> (B,) bool: every keypoint was detected (a missing one has confidence 0)."""
    return (keypoints[..., 2] > 0).all(dim=-1)


def detection_breakdown(keypoints: torch.Tensor, deterministic_pa: torch.Tensor, min_q_pa: torch.Tensor,
                        q: int) -> dict[str, dict[str, float | int]]:
    """PA-MPJPE (mm) of the people whose 17 keypoints were all detected vs those with some missing.

    Why: about half of the benchmark's people have occluded, dropped or truncated keypoints; the split shows
    how much of the error is the information the detector never gave (the same split is recorded for the
    MLP lifting reference in ``scripts/lifting_baseline.py``).
    """
    complete = all_keypoints_detected(keypoints)
    out: dict[str, dict[str, float | int]] = {}
    for name, rows in (("all_17_detected", complete), ("some_missing", ~complete)):
        count = int(rows.sum())
        out[name] = {"count": count,
                     "deterministic_pa_mpjpe": deterministic_pa[rows].mean().item() if count else float("nan"),
                     f"min_of_{q}_pa_mpjpe": min_q_pa[rows].mean().item() if count else float("nan")}
    return out


@torch.inference_mode()
def mean_pose_baseline(tokenizer: MeshVQVAE, data: EvalSet, regressor: torch.Tensor) -> dict[str, float]:
    """Everyone gets the average canonical mesh of the evaluation set, oriented with the TRUE rotation
    (a generous baseline: only the body's pose and shape are wrong)."""
    canonical = data.vertices @ data.rot_cam  # undo the orientation: R^T applied row-wise
    mean_mesh = canonical.mean(0, keepdim=True)
    pred = mean_mesh @ data.rot_cam.transpose(-1, -2)
    return {k: v.mean().item() for k, v in _scores(pred, data.vertices, regressor).items()}


@torch.inference_mode()
def unconditional_apd(model: Mega, tokenizer: MeshVQVAE, regressor: torch.Tensor, samples: int,
                      seed: int) -> float:
    """APD (cm) of COCO-17 joints over pairs of unconditional samples (paper App. C)."""
    out = generate.unconditional(model, samples, generator=torch.Generator().manual_seed(seed))
    joints = regressor.float() @ tokenizer.decode(out.tokens)
    dist = (joints[:, None] - joints[None]).norm(dim=-1).mean(-1)
    return float(dist.sum() / (samples * (samples - 1)) * 100)


def format_table(result: dict) -> str:
    rows = [("deterministic", result["deterministic"])]
    if "deterministic_argmax_codes" in result:
        rows.append(("  with argmax codes", result["deterministic_argmax_codes"]))
    rows += [(f"min-of-{q}", v) for q, v in result["min_of_q"].items()]
    rows += [(f"mean-of-{q}", v) for q, v in result["mean_of_q"].items()]
    rows.append(("mean-pose baseline", result["mean_pose_baseline"]))
    lines = [f"{'':22s} {'PVE':>8s} {'MPJPE':>8s} {'PA-MPJPE':>9s} {'dist-det':>9s} {'SD':>7s}"]
    for name, v in rows:
        extra = (f" {v['dist_to_det']:9.1f} {v['sd']:7.1f}" if "sd" in v else "")
        lines.append(f"{name:22s} {v['pve']:8.1f} {v['mpjpe']:8.1f} {v['pa_mpjpe']:9.1f}{extra}")
    lines.append(f"min-of-Q improvement (Q=1 -> {max(map(int, result['min_of_q']))}): "
                 + ", ".join(f"{k} {v:.1f}%" for k, v in result["min_of_q_improvement_pct"].items()))
    lines.append(f"Spearman(SD, error): {result['sd_error_spearman']:.3f} per person, "
                 f"{result.get('sd_error_spearman_average_map') or float('nan'):.3f} with the average SD map")
    for name, part in result.get("by_detection", {}).items():
        lines.append(f"{name.replace('_', ' ')} ({part['count']} people): deterministic PA-MPJPE "
                     f"{part['deterministic_pa_mpjpe']:.1f}, " + ", ".join(
                         f"{k.replace('_pa_mpjpe', '').replace('_', '-')} {v:.1f}" for k, v in part.items()
                         if k.startswith("min_of_")))
    if "unconditional_apd_cm" in result:
        lines.append(f"unconditional APD: {result['unconditional_apd_cm']:.1f} cm")
    return "\n".join(lines)


def add_without_landmarks(result: dict, model: Mega, tokenizer: MeshVQVAE, regressor: torch.Tensor,
                          data: EvalSet) -> None:
    """For a model that reads landmarks, its deterministic scores on the same people without them (a keypoints
    file without landmarks, another detector)."""
    if data.landmarks is None:
        return
    scores = deterministic_scores(model, tokenizer, regressor, data.without_landmarks())
    result["deterministic_without_landmarks"] = {k: float(v.mean()) for k, v in scores.items()}


def benchmark(model: Mega, tokenizer: MeshVQVAE, regressor: torch.Tensor, *, people: int = BENCHMARK_PEOPLE,
              engine: bool = True, hard_people: int = HARD_SPLIT_PEOPLE, unconditional_model: Mega | None = None,
              steps: int = 5, temperature: float = 1.0) -> dict:
    """The whole evaluation a shipped model records: the network alone on ``people`` benchmark people (with
    the unconditional model's APD when given), the same people without landmarks for a model that reads them,
    under ``"engine"`` what the engine returns by default (the app's meshes), and under ``"hard_poses"`` the
    held-out motion clips (``hard_people``; 0: skip). Recipes and ``megaviewer-train evaluate`` both call it, so a
    model a user trains is scored exactly as the shipped one."""
    obs = observations_for(model)
    data = build_eval_set(tokenizer, people, obs=obs)
    result = evaluate(model, tokenizer, regressor, data, steps=steps, temperature=temperature,
                      unconditional_model=unconditional_model)
    add_without_landmarks(result, model, tokenizer, regressor, data)
    if engine:
        result["engine"] = evaluate(model, tokenizer, regressor, data, steps=steps, temperature=temperature,
                                    placement="engine")
    if hard_people:
        hard = build_eval_set(tokenizer, hard_people, obs=obs, meshes=SyntheticMeshes(prior_kind="hard"))
        result["hard_poses"] = evaluate(model, tokenizer, regressor, hard, steps=steps, temperature=temperature)
    return result


def format_report(result: dict) -> str:
    """:func:`format_table` of each part of a :func:`benchmark` result, under its own heading."""
    parts = [("network alone", result), ("as the engine returns it", result.get("engine")),
             ("hard poses", result.get("hard_poses"))]
    text = "\n\n".join(f"{title}:\n{format_table(part)}" for title, part in parts if part)
    if "deterministic_without_landmarks" in result:
        text += (f"\n\ndeterministic PA-MPJPE without landmarks: "
                 f"{result['deterministic_without_landmarks']['pa_mpjpe']:.1f}")
    return text
