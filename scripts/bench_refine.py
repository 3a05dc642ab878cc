"""Does the keypoint refinement (:mod:`megaviewer.refine`) make the shipped model's bodies more accurate?

    python scripts/bench_refine.py [--tune] [--out resources/bench/refine.json]

Measures, on the synthetic keypoint benchmark of ``resources/default/metrics.json`` (512 held-out people,
detector-like noise, outliers, occlusion, truncation) and on the hard-poses split (256 people from the
held-out motion clips), deterministic PVE / MPJPE / PA-MPJPE without and with the refinement, the mean 2D
reprojection error before and after, PA-MPJPE of the people whose 17 keypoints were all detected and of
the others, the per-person (paired) PA-MPJPE change, and for stochastic Q = 8 the min-of-Q errors and the
spread of the hypotheses before and after (are they kept distinct, and where?). The same 512 people and
cameras with an error-free detector (all keypoints, exact) show what the refinement does with clean
keypoints. Timing: one person (Q = 1) and one Q = 8 call, medians of repeated calls, wall-clock and thread
CPU time, with the plain decode of one mesh timed in between as a yardstick; ``refine_ms_idle_estimate``
divides the refinement's CPU time by the yardstick's slow-down against its idle-machine figure in
``resources/bench/cpu_routes.json`` (an estimate for a shared core, not a measurement on an idle one).

Both sides start from the same placement: the camera fit of the engine (:mod:`megaviewer.camera_fit`) on
the network's rotation and camera; "without" is that mesh, "with" the refined one. PVE and MPJPE use each
side's rotation (the fitted one, then the refined one); PA-MPJPE does not depend on it.

``--tune`` instead sweeps the refinement's settings on a separate tuning split (another seed: other
meshes, other cameras and detector noise) and writes ``resources/bench/refine_tuning.json``; the
benchmark's people are never used to choose them. Set ``OMP_NUM_THREADS``/``taskset`` as for the other
benchmarks; the evaluation sets are cached in ``runs/refine_cache`` (delete it to rebuild).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from megaviewer import generate  # noqa: E402
from megaviewer.camera_fit import fit_camera  # noqa: E402
from megaviewer.geometry import metrics  # noqa: E402
from megaviewer.geometry.rotations import rot6d_to_matrix  # noqa: E402
from megaviewer.paths import shown_path  # noqa: E402
from megaviewer.refine import RefineConfig, refine_hypotheses  # noqa: E402

TUNE_SEED = 4_400_017  # tuning split: neither the benchmark's seed nor any training stream's
TUNE_PEOPLE = 128
CACHE = REPO / "runs" / "refine_cache"


@dataclasses.dataclass
class Hypotheses:
    """Network output for a set of people, placed by the camera fit: rows item-major (Q per person)."""

    tokens: torch.Tensor  # (B·Q, N)
    rotation: torch.Tensor  # (B·Q, 3, 3) camera fit
    cam: torch.Tensor  # (B·Q, 3)
    keypoints: torch.Tensor  # (B·Q, 17, 3)
    canonical: torch.Tensor  # (B·Q, V, 3)
    q: int


KEYPOINT_MODEL = REPO / "resources" / "baselines" / "keypoint_model"


def load_models(folder: Path = KEYPOINT_MODEL):
    """The model (it is given the keypoints only), its own tokenizer and the body's COCO regressor."""
    from megaviewer.body.assets import BodyAssets
    from megaviewer.engine import tokenizer_folder
    from megaviewer.model.mega import load_mega
    from megaviewer.tokenizer.model import MeshVQVAE

    tokenizer = MeshVQVAE.from_pretrained(tokenizer_folder(folder)).eval()
    model = load_mega(folder).eval()
    regressor = BodyAssets.load(tokenizer.config.body).coco_regressor.float()
    return model, tokenizer, regressor


def eval_set(tokenizer, name: str, count: int, seed: int | None = None, prior_kind: str = "keyposes", obs=None):
    """``training.evaluate.build_eval_set`` cached on disk (building needs Anny and, for hard poses, pybullet)."""
    from training.data.meshes import SyntheticMeshes
    from training.evaluate import EVAL_SEED, EvalSet, build_eval_set

    path = CACHE / f"{name}.pt"
    if path.exists():
        return EvalSet(**torch.load(path))
    meshes = SyntheticMeshes(prior_kind=prior_kind)
    data = build_eval_set(tokenizer, count, seed=EVAL_SEED if seed is None else seed, obs=obs, meshes=meshes)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(dataclasses.asdict(data), path)
    return data


@torch.inference_mode()
def hypotheses(model, tokenizer, regressor, keypoints: torch.Tensor, q: int, seed: int = 0,
               batch: int = 64) -> Hypotheses:
    """Deterministic (q = 0 → one row per person) or stochastic (T = 5, A = 1) hypotheses, camera-fitted."""
    parts: dict[str, list[torch.Tensor]] = {}
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, keypoints.shape[0], batch):
        kp = keypoints[i:i + batch]
        cond = model.encode_conditioning({"keypoints": kp})
        if q == 0:
            out = generate.deterministic(model, cond)
        else:
            out = generate.stochastic(model, cond, num_samples=q, steps=5, temperature=1.0, generator=gen)
        rows = kp.repeat_interleave(max(q, 1), dim=0)
        canonical = tokenizer.decode(out.tokens).float()
        joints = torch.einsum("jv,qvc->qjc", regressor, canonical)
        fit = fit_camera(joints, rows, rot6d_to_matrix(out.rot6d.float()), out.cam.float())
        for key, value in (("tokens", out.tokens), ("rotation", fit.rotation), ("cam", fit.cam),
                           ("keypoints", rows), ("canonical", canonical)):
            parts.setdefault(key, []).append(value)
    return Hypotheses(**{k: torch.cat(v) for k, v in parts.items()}, q=max(q, 1))


def refine_all(tokenizer, regressor, hyp: Hypotheses, config: RefineConfig, batch: int = 64):
    """Refine every row (rows are independent, so batching people is the same as one call per person)."""
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, hyp.tokens.shape[0], batch):
        sl = slice(i, i + batch)
        out = refine_hypotheses(tokenizer, regressor, hyp.tokens[sl], hyp.rotation[sl], hyp.cam[sl],
                                hyp.keypoints[sl], config)
        for key in ("canonical_vertices", "rotation", "refined", "error_before", "error_after", "latent_shift"):
            parts.setdefault(key, []).append(getattr(out, key))
    return {k: torch.cat(v) for k, v in parts.items()}


def scores(canonical: torch.Tensor, rotation: torch.Tensor, gt: torch.Tensor, regressor: torch.Tensor, q: int):
    """Per-row PVE / MPJPE / PA-MPJPE (mm) of oriented meshes against each row's person's GT."""
    pred = metrics.center(canonical @ rotation.transpose(-1, -2))
    gt = metrics.center(gt).repeat_interleave(q, dim=0)
    pj, gj = regressor @ pred, regressor @ gt
    return {"pve": metrics.pve(pred, gt), "mpjpe": metrics.mpjpe(pj, gj), "pa_mpjpe": metrics.pa_mpjpe(pj, gj)}


def mean(x: torch.Tensor) -> float:
    return float(x.float().mean()) if x.numel() else float("nan")


def compare(tokenizer, regressor, data, hyp: Hypotheses, config: RefineConfig) -> dict:
    """Without/with refinement on one set of hypotheses: means, min-of-Q and spread when Q > 1."""
    ref = refine_all(tokenizer, regressor, hyp, config)
    before = scores(hyp.canonical, hyp.rotation, data.vertices, regressor, hyp.q)
    after = scores(ref["canonical_vertices"], ref["rotation"], data.vertices, regressor, hyp.q)
    complete = (data.keypoints[..., 2] > 0).all(dim=-1)
    out: dict = {"people": int(data.vertices.shape[0]), "q": hyp.q,
                 "refined_fraction": mean(ref["refined"]),
                 "reprojection_error_before": mean(ref["error_before"]),
                 "reprojection_error_after": mean(ref["error_after"]),
                 "latent_shift_rms": mean(ref["latent_shift"])}
    def per_person(v: torch.Tensor) -> torch.Tensor:  # the row itself (Q = 1) or min-of-Q, (B,)
        return v.view(-1, hyp.q).min(dim=1).values

    for name, s in (("without", before), ("with", after)):
        out[name] = {k: mean(per_person(v)) for k, v in s.items()}
        out[name]["all_17_detected_pa_mpjpe"] = mean(per_person(s["pa_mpjpe"])[complete])
        out[name]["some_missing_pa_mpjpe"] = mean(per_person(s["pa_mpjpe"])[~complete])
        if hyp.q > 1:
            out[name]["mean_of_q_rows_pa_mpjpe"] = mean(s["pa_mpjpe"])
        out[name]["reduction"] = "mean" if hyp.q == 1 else "min_of_q"
    change = per_person(after["pa_mpjpe"]) - per_person(before["pa_mpjpe"])  # paired, per person
    out["pa_mpjpe_change"] = {"mean": mean(change), "sem": float(change.std() / change.numel() ** 0.5),
                              "improved_fraction": mean(change < 0), "worse_by_5mm_fraction": mean(change > 5)}
    if hyp.q > 1:
        out["spread"] = {"without": spread(hyp.canonical, hyp.rotation, hyp.keypoints, regressor, hyp.q),
                         "with": spread(ref["canonical_vertices"], ref["rotation"], hyp.keypoints, regressor,
                                        hyp.q)}
    return out


def spread(canonical: torch.Tensor, rotation: torch.Tensor, keypoints: torch.Tensor, regressor: torch.Tensor,
           q: int) -> dict:
    """How distinct the Q hypotheses of a person are: mean pairwise distance (mm) of their canonical meshes,
    and of their joints split by whether the joint's keypoint was detected, and (camera frame, each
    hypothesis's joints centred and turned by its own rotation) into the image-plane and the depth part."""
    verts = canonical.view(-1, q, *canonical.shape[1:])
    joints = regressor @ verts
    cam_joints = joints @ rotation.view(-1, q, 3, 3).transpose(-1, -2)
    cam_joints = cam_joints - cam_joints.mean(dim=-2, keepdim=True)
    iu = torch.triu_indices(q, q, 1)
    pair = lambda x: (x[:, iu[0]] - x[:, iu[1]]).norm(dim=-1).mean(dim=1) * 1000  # noqa: E731  (B, ...)
    seen = keypoints.view(-1, q, 17, 3)[:, 0, :, 2] > 0
    plane, depth = pair(cam_joints[..., :2]), pair(cam_joints[..., 2:])
    joint_pair = pair(joints)
    return {"vertices_mm": mean(pair(verts)), "joints_detected_mm": mean(joint_pair[seen]),
            "joints_missing_mm": mean(joint_pair[~seen]),
            "detected_image_plane_mm": mean(plane[seen]), "detected_depth_mm": mean(depth[seen]),
            "missing_image_plane_mm": mean(plane[~seen]), "missing_depth_mm": mean(depth[~seen])}


def timing(tokenizer, regressor, hyp: Hypotheses, config: RefineConfig, q: int, repeats: int) -> dict:
    """Medians of one refinement call of ``q`` hypotheses of one person: wall-clock and this thread's CPU time
    (with one torch thread all the work runs on the calling thread; on a core shared with other processes the
    wall clock counts their time slices too, the CPU time does not). The plain decode of one mesh is timed in
    between as a yardstick of what sharing the core still costs (caches, clock)."""
    times: dict[str, list[float]] = {"refine_wall": [], "refine_cpu": [], "decode_wall": [], "decode_cpu": []}
    people = hyp.tokens.shape[0] // hyp.q

    def clocked(name: str, fn) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        fn()
        times[f"{name}_wall"].append((time.perf_counter() - wall) * 1000)
        times[f"{name}_cpu"].append((time.thread_time() - cpu) * 1000)

    for i in range(repeats):
        sl = slice((i % people) * hyp.q, (i % people) * hyp.q + q)
        clocked("refine", lambda sl=sl: refine_hypotheses(tokenizer, regressor, hyp.tokens[sl], hyp.rotation[sl],
                                                          hyp.cam[sl], hyp.keypoints[sl], config))
        with torch.inference_mode():
            clocked("decode", lambda sl=sl: tokenizer.decode(hyp.tokens[sl][:1]))
    result = {"q": q, "steps": config.steps, "repeats": repeats,
              **{f"{k}_ms": statistics.median(v) for k, v in times.items()}}
    idle = _idle_decode_ms()
    if idle is not None:  # the CPU time scaled by the yardstick's slow-down against its idle figure: an estimate
        result["idle_decode_ms"] = idle
        result["slowdown"] = result["decode_cpu_ms"] / idle
        result["refine_ms_idle_estimate"] = result["refine_cpu_ms"] / result["slowdown"]
    return result


def _idle_decode_ms() -> float | None:
    """The one-mesh cached-route decode median of ``resources/bench/cpu_routes.json`` (idle machine, 1 thread)."""
    path = REPO / "resources" / "bench" / "cpu_routes.json"
    try:
        return float(json.loads(path.read_text())["tokenizer_decode"]["b1"]["cached"]["median_ms"])
    except (OSError, KeyError, ValueError):
        return None


TUNE_GRID = [{"latent_prior": lp, "bone_prior": bp, "robust_scale": rs}
             for lp in (3e-3, 1e-2, 3e-2) for bp in (0.0, 3.0, 10.0) for rs in (0.1, 0.3)]
TUNE_STEPS = [{"steps": 10, "lr": 0.15}, {"steps": 15, "lr": 0.1}, {"steps": 30, "lr": 0.05}]


def tune(model, tokenizer, regressor, out: Path) -> None:
    """Grid over the priors and the robust scale at the default step count, then the step count at the best
    priors; chosen by deterministic PA-MPJPE on the tuning split (never the benchmark's people)."""
    data = eval_set(tokenizer, f"tune_{TUNE_SEED}_{TUNE_PEOPLE}", TUNE_PEOPLE, seed=TUNE_SEED)
    hyp = hypotheses(model, tokenizer, regressor, data.keypoints, 0)
    rows = []

    def run(overrides: dict) -> float:
        cfg = dataclasses.replace(RefineConfig(), **overrides)
        t0 = time.perf_counter()
        res = compare(tokenizer, regressor, data, hyp, cfg)
        res["seconds"] = time.perf_counter() - t0
        rows.append({"config": overrides, **res})
        print(overrides, f"PA-MPJPE {res['without']['pa_mpjpe']:.1f} -> {res['with']['pa_mpjpe']:.1f}",
              f"2D {res['reprojection_error_before']:.3f} -> {res['reprojection_error_after']:.3f}", flush=True)
        return res["with"]["pa_mpjpe"]

    best = min(TUNE_GRID, key=run)
    for steps in TUNE_STEPS:
        run({**best, **steps})
    result = {"split": {"seed": TUNE_SEED, "people": TUNE_PEOPLE, "prior": "keyposes"}, "best_priors": best,
              "rows": rows, "command": " ".join(["python scripts/bench_refine.py", *sys.argv[1:]])}
    out.write_text(json.dumps(result, indent=2))


CLEAN = {"noise_sigma": 0.0, "outlier_prob": 0.0, "part_occlusion_prob": 0.0, "single_drop_prob": 0.0,
         "truncation_prob": 0.0}
"""Detector without errors: the same people and cameras (the random draws are the same), all 17 keypoints
at their true projections."""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tune", action="store_true", help="sweep settings on the tuning split instead")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--stochastic-people", type=int, default=128)
    ap.add_argument("--model", type=Path, default=KEYPOINT_MODEL,
                    help="the model, given the keypoints only (default: the keypoint model)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model, tokenizer, regressor = load_models(args.model)
    if args.tune:
        tune(model, tokenizer, regressor, args.out or REPO / "resources" / "bench" / "refine_tuning.json")
        return
    from training.data.observations import ObservationConfig
    from training.evaluate import BENCHMARK_PEOPLE

    config = RefineConfig()
    result: dict = {"config": dataclasses.asdict(config), "threads": torch.get_num_threads(),
                    "model": shown_path(args.model),
                    "load_average_at_start": list(os.getloadavg())}
    splits = (("benchmark", BENCHMARK_PEOPLE, "keyposes", None), ("hard_poses", 256, "hard", None),
              ("benchmark_clean_keypoints", BENCHMARK_PEOPLE, "keyposes", ObservationConfig(**CLEAN)))
    for split, count, kind, obs in splits:
        data = eval_set(tokenizer, f"{split}_{count}", count, prior_kind=kind, obs=obs)
        det = hypotheses(model, tokenizer, regressor, data.keypoints, 0)
        result[split] = {"deterministic": compare(tokenizer, regressor, data, det, config)}
        print(split, json.dumps(result[split]["deterministic"], indent=1), flush=True)
        if split == "benchmark":
            n = args.stochastic_people
            sub = type(data)(data.vertices[:n], data.keypoints[:n], data.rot_cam[:n])
            sto = hypotheses(model, tokenizer, regressor, sub.keypoints, 8)
            result[split]["stochastic_q8"] = compare(tokenizer, regressor, sub, sto, config)
            print(json.dumps(result[split]["stochastic_q8"], indent=1), flush=True)
            result["timing"] = [timing(tokenizer, regressor, det, config, 1, args.repeats),
                                timing(tokenizer, regressor, sto, config, 8, args.repeats)]
            print(result["timing"], flush=True)
    result["load_average_at_end"] = list(os.getloadavg())
    result["command"] = " ".join(["python scripts/bench_refine.py", *sys.argv[1:]])
    out = args.out or REPO / "resources" / "bench" / "refine.json"
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
