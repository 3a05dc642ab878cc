"""Regenerate README's measured-figures section from the JSON files the scripts wrote.

Numbers are never typed by hand: rerun this after ``megaviewer-train recipe`` or ``scripts/bench.py``.

    python scripts/update_readme.py
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- RESULTS:BEGIN -->", "<!-- RESULTS:END -->"
TARGETS = {  # the project's accuracy and training-time targets (the speed targets travel in bench_cpu.json)
    "tokenizer_pve_mm": 6.0,
    "tokenizer_hands_feet_p95_mm": 15.0,
    "pa_mpjpe_mm": 55.0,
    "pa_mpjpe_all_detected_mm": 45.0,
    "min_of_25_pa_mpjpe_mm": 45.0,
    "hard_over_main": 1.5,
    "min_of_25_improvement_pct": 15.0,
    "sd_spearman_over_average_map": 0.05,
    "time_to_accuracy_speedup": 3.0,
    "pipeline_minutes": 90.0,
}


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


TOKENIZER_SPLITS = {"keyposes": "key poses", "motion": "key poses + training motion clips",
                    "hard": "held-out clips (hard poses)"}


def tokenizer_headline(tok: dict | None) -> dict | None:
    """The tokenizer's figures on the data MEGA trains on: the ``motion`` split of a recipe's per-split metrics,
    or the single evaluation ``megaviewer-train eval-tokenizer`` wrote."""
    if not tok:
        return None
    return tok.get("motion", tok)


def tokenizer_section(tok: dict | None, closeups: dict | None = None, density: float = 1.0) -> str:
    """``density``: the tokenizer's ``extremity_density`` (its config)."""
    if not tok:
        return "_No tokenizer metrics yet._\n"
    if "motion" not in tok:
        return _single_tokenizer_section(tok)
    splits = [(TOKENIZER_SPLITS[k], tok[k]) for k in TOKENIZER_SPLITS if k in tok]
    first = splits[0][1]
    out = ["### Tokenizer (shipped `resources/tokenizer`)\n",
           f"Held-out synthetic meshes ({first['heldout_meshes']} per row, never seen in training) from each part of "
           "the pose prior; hands and feet: the vertices of both hands and both feet "
           f"({first['hands_feet_vertices']} of the working mesh); mm:\n",
           "| meshes | PVE | PVE p95 | hands/feet mean | hands/feet vertex p95 | PA-MPJPE | codes used | "
           "encode+decode |", "|---|---|---|---|---|---|---|---|"]
    for label, m in splits:
        codebook = round(m["codes_used"] / m["codes_used_fraction"])
        out.append(f"| {label} | {m['pve_mm']:.2f} | {m['pve_p95_mm']:.1f} | {m['hands_feet_pve_mm']:.1f} | "
                   f"{m['hands_feet_vertex_p95_mm']:.1f} | {m['pa_mpjpe_mm']:.2f} | {m['codes_used']}/{codebook} | "
                   f"{m['encode_decode_ms_per_mesh']:.1f} ms/mesh |")
    hours = tok.get("train_hours")
    out += ["", f"Recipe (`megaviewer-train recipe default --until tokenizer`): {tok['steps']:,} steps of batch "
                f"{tok['batch_size']}, learning rate {tok['lr']:g}, channels {tuple(tok['channels'])}, the network "
                f"reading and writing offsets from the rest template × {tok['residual_scale']:g}"
                + _density_text(density) + _emphasis_text(tok) + f", on the `{tok['prior']}` prior"
                + (f"; {hours:.1f} hours wall-clock on a 2-core CPU." if hours else ".")]
    if tok.get("decoder"):
        out += ["", _decoder_text(tok)]
    if closeups:
        out += ["", _closeup_text(closeups)]
    return "\n".join(out) + "\n"


def _density_text(density: float) -> str:
    if density == 1.0:
        return ""
    return (f", its coarse levels {density:g} times as dense on the hands and feet as an even spread "
            "(`extremity_density`)")


def _emphasis_text(tok: dict) -> str:
    """What a tokenizer record says beyond the density: its token count and the hands' and feet's loss weight."""
    text = f", {tok['tokens']} tokens per mesh" if tok.get("tokens", 54) != 54 else ""
    weight = tok.get("extremity_weight", 1.0)
    return text + (f", the hand and foot vertices weighing ×{weight:g} in its loss" if weight != 1.0 else "")


def _decoder_text(tok: dict) -> str:
    """The decoder fine-tune after the tokenizer stage, with the figures before it on the training prior."""
    d, before, after = tok["decoder"], tok.get("before_decoder", {}).get("motion"), tok["motion"]
    text = (f"Then the decoder alone is fine-tuned, the encoder and the codebook frozen so that every token id stays "
            f"as it was (`megaviewer-train decoder`; the recipe's `decoder` stage): {d['steps']:,} steps of batch "
            f"{d['batch_size']}, learning rate {d['lr']:g}, the hand and foot vertices weighted "
            f"×{d['extremity_weight']:g} in the loss")
    if d.get("train_hours"):
        text += f", {d['train_hours']:.1f} hours"
    if before:
        text += (f". On the `{tok['prior']}` meshes it takes PVE from {before['pve_mm']:.2f} to {after['pve_mm']:.2f} "
                 f"mm and the hand/foot vertex p95 from {before['hands_feet_vertex_p95_mm']:.1f} to "
                 f"{after['hands_feet_vertex_p95_mm']:.1f} mm")
    return text + "."


def _closeup_text(c: dict) -> str:
    """The caption of the hands-and-feet close-ups (scripts/render_hands_feet.py)."""
    return (f"![Hands and feet through two tokenizers]({c['figure']})\n\n"
            f"Close-ups (`{c['command']}`): for held-out people, the true mesh, then its encode → decode through "
            f"the previous absolute-coordinates tokenizer (`{c['before']}`) and through the shipped one, coloured "
            f"by per-vertex error from 0 (dark) to {c['vmax_mm']:.0f} mm (bright; turbo colour map). Over "
            f"{c['count']:,} held-out meshes, hand and foot vertices err {c['before_hands_feet_pve_mm']:.1f} mm on "
            f"average (p95 {c['before_hands_feet_vertex_p95_mm']:.1f}) before and {c['after_hands_feet_pve_mm']:.1f} "
            f"mm (p95 {c['after_hands_feet_vertex_p95_mm']:.1f}) after.")


def _single_tokenizer_section(tok: dict) -> str:
    codebook = round(tok["codes_used"] / tok["codes_used_fraction"])
    return (
        "### Tokenizer (shipped `resources/tokenizer`)\n\n"
        f"Held-out synthetic meshes ({tok['heldout_meshes']}, never seen in training), "
        f"`megaviewer-train eval-tokenizer`:\n\n"
        "| PVE | PVE median | PVE p95 | MPJPE | PA-MPJPE | codes used | perplexity | encode+decode |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {tok['pve_mm']:.1f} mm | {tok['pve_median_mm']:.1f} mm | {tok['pve_p95_mm']:.1f} mm | "
        f"{tok['mpjpe_mm']:.1f} mm | {tok['pa_mpjpe_mm']:.1f} mm | {tok['codes_used']}/{codebook} | "
        f"{tok['perplexity']:.0f} | {tok['encode_decode_ms_per_mesh']:.1f} ms/mesh |\n\n"
        + _tokenizer_recipe(tok).lstrip() + "\n"
    )


def _tokenizer_recipe(tok: dict) -> str:
    minutes = tok.get("train_minutes_this_run")
    if minutes:
        took = f" in {minutes:.1f} minutes"
    elif tok.get("train_minutes_approx"):  # timed around a run the script did not time itself
        took = f", about {tok['train_minutes_approx']:.0f} minutes wall-clock,"
    else:
        took = ""
    text = (f" Recipe (`megaviewer-train recipe baseline --until tokenizer`): {tok['train_steps']:,} steps of batch "
            f"{tok['batch_size']}{took} on a 2-core CPU")
    if tok.get("residual_scale"):
        text += (f", learning rate {tok['lr']:g}, the network reading and writing offsets from the rest template "
                 f"× {tok['residual_scale']:g} (`--residual-scale`)")
    return text + ".\n"


def power_law_steps(points: list[tuple[int, float]], target: float) -> float | None:
    """Steps at which PVE = a·steps^-b through the two longest runs reaches ``target`` (None if not falling)."""
    if len(points) < 2:
        return None
    (s1, e1), (s2, e2) = sorted(points)[-2:]
    if s1 == s2 or e2 >= e1:
        return None
    return s2 * (e2 / target) ** (math.log(s2 / s1) / math.log(e1 / e2))


def tokenizer_sweep_section(sweep: dict | None, tok: dict | None) -> str:
    if not sweep or not sweep.get("rows"):
        return ""
    out = [f"Recipe comparison (`{sweep['command']}`; batch {sweep['batch_size']}, {sweep['eval_count']} held-out "
           "meshes each):\n", "| run | steps | PVE | PA-MPJPE |", "|---|---|---|---|"]
    for row in sweep["rows"].values():
        out.append(f"| {row['label']} | {row['steps']:,} | {row['pve_mm']:.1f} mm | {row['pa_mpjpe_mm']:.1f} mm |")
    best = min(sweep["rows"].values(), key=lambda r: r["pve_mm"])
    same_recipe = [(r["steps"], r["pve_mm"]) for r in sweep["rows"].values()
                   if (r["lr"], r["residual_scale"]) == (best["lr"], best["residual_scale"])]
    target = tok.get("pve_target_mm", 5.0) if tok else 5.0
    steps = power_law_steps(same_recipe, target)
    down, base = sweep.get("downstream"), _load(ROOT / "resources" / "baselines" / "keypoint_model" / "metrics.json")
    minutes = down["stage_minutes"].get("tokenizer_min") if down else None
    if steps and minutes:
        out += ["", f"A power law through the two longest runs of the best recipe reaches {target:g} mm after about "
                f"{steps:,.0f} steps, about {steps * minutes / best['steps'] / 60:.0f} hours at its measured speed "
                f"({minutes:.0f} minutes for {best['steps']:,} steps): more than the "
                f"{TARGETS['pipeline_minutes']:.0f} minutes of the `quick` recipe, which is why the `default` recipe "
                "trains its tokenizer for hours."]
    if down and base:
        d, s = down["deterministic"], base["deterministic"]
        total = sum(down["stage_minutes"].values())
        out += ["", f"The whole baseline pipeline on the offsets tokenizer (`{down['command']}`, {total:.1f} "
                f"minutes end to end, measured): MEGA deterministic PA-MPJPE {d['pa_mpjpe']:.1f} mm "
                f"(PVE {d['pve']:.1f}), "
                f"min-of-25 {down['min_of_25']['pa_mpjpe']:.1f} mm, Spearman {down['sd_error_spearman']:.2f}, against "
                f"{s['pa_mpjpe']:.1f} mm (PVE {s['pve']:.1f}), {base['min_of_q']['25']['pa_mpjpe']:.1f} mm and "
                f"{base['sd_error_spearman']:.2f} for the same recipe on the absolute-coordinates tokenizer "
                "(`resources/baselines/keypoint_model`)"
                + (": at this short budget the sharper tokenizer did not give a better MEGA; the `default` recipe "
                   "trains MEGA longer on it." if d["pa_mpjpe"] > s["pa_mpjpe"]
                   else ".")]
    return "\n".join(out) + "\n"


def _argmax_row(m: dict, where: str) -> list[str]:
    """The deterministic figures of the same pass decoded with the argmax codes (the paper's decoding), when the
    evaluation decoded expected codes and recorded them (docs/expected-codes.md)."""
    a = m.get("deterministic_argmax_codes")
    if not a:
        return []
    return [f"| deterministic{where}, argmax codes instead of expected codes | {a['pve']:.1f} | {a['mpjpe']:.1f} | "
            f"{a['pa_mpjpe']:.1f} | | |"]


def mega_section(m: dict | None) -> str:
    if not m:
        return "_No MEGA metrics yet._\n"
    landmarks = "deterministic_without_landmarks" in m
    lines = ["### MEGA, shipped default (`resources/default`)\n",
             f"Held-out synthetic 2D-keypoint observations ({m['count']} people: unseen meshes, random "
             "perspective cameras, detector-like noise, outliers, occlusion and truncation"
             + (", and the detector's 3D landmarks simulated with their measured errors" if landmarks else "")
             + f"), stochastic T={m['steps']}, A={m['temperature']}; mm:\n",
             "| | PVE | MPJPE | PA-MPJPE | dist. to det. | SD |", "|---|---|---|---|---|---|"]
    d = m["deterministic"]
    lines.append(f"| deterministic | {d['pve']:.1f} | {d['mpjpe']:.1f} | {d['pa_mpjpe']:.1f} | | |")
    lines += _argmax_row(m, "")
    if landmarks:
        w = m["deterministic_without_landmarks"]
        lines.append(f"| deterministic, no landmarks given | {w['pve']:.1f} | {w['mpjpe']:.1f} | {w['pa_mpjpe']:.1f} "
                     "| | |")
    engine = m.get("engine")
    if engine:
        e, q = engine["deterministic"], max(engine["min_of_q"], key=int)
        eq = engine["min_of_q"][q]
        lines.append(f"| deterministic, as the engine returns it: rotation, camera and body fitted to the keypoints "
                     f"| {e['pve']:.1f} | {e['mpjpe']:.1f} | {e['pa_mpjpe']:.1f} | | |")
        lines += _argmax_row(engine, ", as the engine returns it")
        lines.append(f"| stochastic, min of {q}, as the engine returns it | {eq['pve']:.1f} | {eq['mpjpe']:.1f} "
                     f"| {eq['pa_mpjpe']:.1f} | | |")
    for q, v in m["min_of_q"].items():
        lines.append(f"| stochastic, min of {q} | {v['pve']:.1f} | {v['mpjpe']:.1f} | {v['pa_mpjpe']:.1f} | | |")
    for q, v in m["mean_of_q"].items():
        lines.append(f"| stochastic, mean of {q} | {v['pve']:.1f} | {v['mpjpe']:.1f} | {v['pa_mpjpe']:.1f} | "
                     f"{v['dist_to_det']:.1f} | {v['sd']:.1f} |")
    b = m["mean_pose_baseline"]
    lines.append(f"| mean-pose baseline (true rotation) | {b['pve']:.1f} | {b['mpjpe']:.1f} "
                 f"| {b['pa_mpjpe']:.1f} | | |")
    hard = m.get("hard_poses")
    if hard:
        h, hq = hard["deterministic"], hard["min_of_q"][max(hard["min_of_q"], key=int)]
        lines.append(f"| hard poses ({hard['count']} people of held-out clips), deterministic | {h['pve']:.1f} | "
                     f"{h['mpjpe']:.1f} | {h['pa_mpjpe']:.1f} | | |")
        lines.append(f"| hard poses, min of {max(hard['min_of_q'], key=int)} | {hq['pve']:.1f} | {hq['mpjpe']:.1f} | "
                     f"{hq['pa_mpjpe']:.1f} | | |")
    imp = m["min_of_q_improvement_pct"]
    lines.append("")
    lines.append(f"Min-of-Q improvement Q=1 → {max(map(int, m['min_of_q']))}: PVE {imp['pve']:.1f} %, "
                 f"MPJPE {imp['mpjpe']:.1f} %, PA-MPJPE {imp['pa_mpjpe']:.1f} %. "
                 f"Spearman correlation of per-vertex SD with per-vertex error: {m['sd_error_spearman']:.2f}"
                 + (f" (the population-average SD map, the same for everyone: "
                    f"{m['sd_error_spearman_average_map']:.2f}). " if "sd_error_spearman_average_map" in m else ". ")
                 + (f"Unconditional samples (pre-trained model, T=20, A=1.2): APD {m['unconditional_apd_cm']:.1f} cm."
                    if "unconditional_apd_cm" in m else ""))
    split = m.get("by_detection")
    if split:
        full, part = split["all_17_detected"], split["some_missing"]
        q = max(map(int, m["min_of_q"]))
        lines.append("")
        lines.append(f"By detection: the {full['count']} people with all 17 keypoints detected measure deterministic "
                     f"PA-MPJPE {full['deterministic_pa_mpjpe']:.1f} mm (min of {q}: "
                     f"{full[f'min_of_{q}_pa_mpjpe']:.1f}); the {part['count']} with some keypoints occluded, dropped "
                     f"or outside the image {part['deterministic_pa_mpjpe']:.1f} mm (min of {q}: "
                     f"{part[f'min_of_{q}_pa_mpjpe']:.1f}).")
    if engine:
        full = engine["by_detection"]["all_17_detected"]
        q = max(map(int, engine["min_of_q"]))
        lines.append("")
        lines.append("As the engine returns them (`megaviewer-train evaluate`, part of every recipe: the same people, "
                     "observations and samples, each hypothesis's rotation and camera fitted to the keypoints and "
                     "then its body, with the landmarks, as `Engine.recover` and the app do by default): "
                     "deterministic PA-MPJPE "
                     f"{engine['deterministic']['pa_mpjpe']:.1f} mm, {full['deterministic_pa_mpjpe']:.1f} for the "
                     f"people with all 17 keypoints detected; min of {q} {engine['min_of_q'][str(q)]['pa_mpjpe']:.1f} "
                     f"({full[f'min_of_{q}_pa_mpjpe']:.1f}); Spearman correlation of per-vertex SD with per-vertex "
                     f"error {engine['sd_error_spearman']:.2f} (average map "
                     f"{engine['sd_error_spearman_average_map']:.2f}).")
    lines += _mega_recipe(m)
    return "\n".join(lines) + "\n"


def models_section(c: dict | None, loop: dict | None) -> str:
    """The shipped default against the models it replaced (scripts/compare_models.py), with their rows of the
    detector-in-the-loop benchmark when it scored them."""
    if not c:
        return ""
    out = [f"### The default against the models it replaced (`{c['command']}`)\n",
           f"Each model on its own tokenizer. Tokenizer: PVE and hand/foot vertex p95 on the same "
           f"{next(iter(c['models'].values()))['tokenizer']['heldout_meshes']:,} held-out meshes. MEGA: "
           f"deterministic PA-MPJPE on the same {c['people']['main']} benchmark and {c['people']['hard']} hard-poses "
           "people, with the detector's 3D landmarks for everyone / without any; detector in the loop: the best "
           "setting of each model (its landmarks and the fit), main / hard. mm:\n",
           "| model | what it is | tokenizer PVE / hands-feet p95 | benchmark | hard poses | detector in the loop |",
           "|---|---|---|---|---|---|"]

    def pair(row: dict, split: str) -> str:
        with_lm = row.get(f"{split}_with_landmarks")
        return ("" if with_lm is None else f"{with_lm:.1f} / ") + f"{row[f'{split}_without_landmarks']:.1f}"

    for name, row in c["models"].items():
        tok = row["tokenizer"]
        cells = ""
        if loop and name in loop.get("models", {}):
            best = f"{name} +landmarks +fit" if "landmarks" in row["kinds"] else f"{name} +fit"
            cells = " / ".join(f"{loop['splits'][s]['rows'][best]['pa_mpjpe']:.1f}" for s in ("main", "hard")
                               if best in loop["splits"].get(s, {}).get("rows", {}))
        out.append(f"| {name} (`{row['folder']}`) | {row['what']} | {tok['pve_mm']:.1f} / "
                   f"{tok['hands_feet_vertex_p95_mm']:.1f} | {pair(row, 'main')} | {pair(row, 'hard')} | {cells} |")
    return "\n".join(out) + "\n"


def polish_text(stage: dict) -> str:
    """The recipe's last warm restart, and its rounds when it ran more than one."""
    rounds = stage.get("polish_rounds", 1)
    text = f", then a third warm restart of {stage['polish_steps']:,} steps at learning rate {stage['polish_lr']:g}"
    if rounds == 1:
        return text + " on the same data"
    return text + (f" on the same data, run {rounds} times in all, each round from the previous round's weights "
                   "with its own data seed")


def _mega_recipe(m: dict) -> list[str]:
    """The recipe ``megaviewer-train recipe`` recorded and the wall-clock minutes of the stages it ran."""
    r = m.get("recipe")
    if not r:
        return []
    names = {"tokenizer_min": "tokenizer", "pool_min": "mesh pool", "pretrain_min": "pre-training",
             "conditioned_min": "conditioned training", "evaluation_min": "evaluation"}
    ran = [f"{names.get(k, k)} {v:.1f}" for k, v in m.get("stage_minutes", {}).items() if v >= 0.05]
    name, stage = r.get("name", "baseline"), r.get("mega", r)
    reads = "keypoints and the detector's 3D landmarks" if stage.get("landmarks") else "keypoints"
    masking = stage.get("train_masking", stage.get("masking"))
    text = (f"Recipe (`megaviewer-train recipe {name}`): `{stage['preset']}` preset reading {reads}, pre-training "
            f"{stage['pretrain_steps']:,} steps, conditioned training {stage['train_steps']:,} steps of batch "
            f"{stage['batch_size']} (learning rate {stage['lr']:g}, masking `{masking}`, "
            f"2D loss on {stage['reprojection_rows']} rows of each batch"
            + (", the detector's measured gross 2D errors in the observations" if stage.get("gross_2d_errors") else "")
            + f") on a pool of {stage['pool_size']:,} meshes"
            + (f" of the `{stage['pool_prior']}` prior" if "pool_prior" in stage else "")
            + (f", {r['threads']} torch threads" if "threads" in r else "")
            + (f", then a warm restart of {stage['tail_steps']:,} steps at learning rate {stage['tail_lr']:g} with "
               f"landmarks for {100 * stage['tail_landmark_prob']:.0f} % of the people (for a fifth before), so the "
               "model also reads keypoints alone" if stage.get("tail_steps") else "")
            + (f", then a keypoint lifter ({stage['lifter_steps']:,} steps of batch {stage['lifter_batch_size']}) "
               f"and a second warm restart of {stage['lifted_steps']:,} steps at learning rate "
               f"{stage['lifted_lr']:g} with the lifter's 3D joints as the landmarks of the "
               f"{100 * (1 - stage['lifted_landmark_prob']):.0f} % of "
               "people without them" if stage.get("lifted_steps") else "")
            + (polish_text(stage) if stage.get("polish_steps") else "")
            + (f"; the tokenizer's decoder was then fine-tuned for {r['decoder']['steps']:,} steps (token ids "
               "unchanged; see the tokenizer above)" if r.get("decoder") else ""))
    hours = {k: v for k, v in (m.get("train_hours") or {}).items() if v}
    if hours:  # a run resumed over several sittings: the checkpoints' accumulated training time
        return ["", text + ". Training time, wall-clock hours on a 2-core CPU: "
                + ", ".join(f"{k} {v:.1f}" for k, v in hours.items()) + "."]
    text += f". Stage minutes of the recipe's run: {', '.join(ran)}"
    skipped = m.get("stages_skipped")
    reused = " and ".join(names.get(f"{k}_min", k) for k in skipped or [])
    text += f" (it reused the outputs of {reused} instead of running them)." if reused else "."
    tune = m.get("landmark_finetune")
    if tune:
        lr = tune["lr"] if isinstance(tune["lr"], str) else f"{tune['lr']:g}"
        gross = tune.get("gross_2d_errors")
        text += (f" That keypoint model (`{tune['init']}`) was then taught to read the detector's 3D landmarks: "
                 f"{tune['steps']:,} more steps at learning rate {lr}, {tune['train_minutes']:.0f} minutes"
                 + (f", the second half with the detector's measured gross 2D errors "
                    f"({100 * gross['outlier_prob']:.0f} % of the keypoints off by "
                    f"{100 * gross['outlier_error'][0]:.0f}-{100 * gross['outlier_error'][1]:.0f} % of the box)"
                    if gross else "")
                 + f" (`{tune['command']}`).")
    return ["", text]


def lifting_section(b: dict | None, long: dict | None = None, benchmark_people: int | None = None) -> str:
    """The MLP lifters of ``scripts/lifting_baseline.py``: how much pose the benchmark's keypoints determine.

    ``b`` is the short reference run (constant lr, joint-distance loss); ``long`` the run trained on the
    metric itself until it flattened, with the error split by whether all 17 keypoints were detected.
    ``benchmark_people``: the MEGA benchmark's held-out count, for reports written before the lifter recorded
    its own ``eval_count`` (it always scores on that same set).
    """
    if not b:
        return ""
    f = b["final"]
    people = b.get("eval_count", benchmark_people)
    text = ("### Reference: a direct keypoint lifter on the same benchmark (`python scripts/lifting_baseline.py`)\n\n"
            f"A plain MLP from the 17 observed keypoints straight to the 17 camera-frame COCO joints (no mesh, no "
            f"tokens), trained on the same synthetic observations for {b['minutes']:.1f} minutes on a 2-core CPU "
            f"({b['steps']:,} steps of batch {b['batch_size']}), reaches PA-MPJPE **{f['pa_mpjpe']:.1f} mm** "
            f"(MPJPE {f['mpjpe']:.1f} mm, centred) on the same {people} held-out people (PA-MPJPE after "
            + ", ".join(f"{c['minutes']:.0f} min: {c['pa_mpjpe']:.0f}" for c in b["curve"][1::3])
            + "). The lifter is a reference for the pose part only; MEGA also recovers the mesh, its rotation "
            "and a distribution of hypotheses.\n")
    if long:
        g = long["final"]
        curve = long["curve"]
        marks = [c for c in curve if c["step"] % 5000 == 0] or curve
        text += (f"\nTrained for as long as it kept improving, on the metric itself (`{long['command']}`: "
                 f"{long['depth']} hidden layers of {long['hidden']}, {long['parameters'] / 1e6:.1f} M parameters, "
                 f"PA-MPJPE as the loss, cosine learning rate, {long['minutes']:.0f} minutes, {long['steps']:,} steps "
                 f"of batch {long['batch_size']}), the lifter ends at PA-MPJPE **{g['pa_mpjpe']:.1f} mm**: "
                 f"{g['pa_mpjpe_all_17_detected']:.1f} mm for the {long['people_with_all_17_detected']} people whose "
                 f"17 keypoints were all detected and {g['pa_mpjpe_some_missing']:.1f} mm for the other "
                 f"{long.get('eval_count', people) - long['people_with_all_17_detected']} (curve: "
                 + ", ".join(f"{c['step'] // 1000}k steps {c['pa_mpjpe']:.1f}" for c in marks)
                 + "). That is the best point estimate of the pose we could train from these keypoints, the "
                 f"reference for MEGA's deterministic target of {TARGETS['pa_mpjpe_mm']:.0f} mm.\n")
    return text


def ablation_section(a: dict | None) -> str:
    if not a or not a.get("rows"):
        return ""
    rows = a["rows"]
    steps = sorted({r["steps"] for r in rows.values()})
    out = [f"### Ablation (paper Tab. 1) on the synthetic benchmark (`{a['command']}`)\n",
           f"Conditioned training of the `{a['preset']}` preset, {', '.join(f'{s:,}' for s in steps)} steps of batch "
           f"{a['batch_size']} per row (same data stream, seed and {a['eval_count']} held-out people as above); "
           "deterministic mode, mm. The linear-masking row changes the conditioned stage only.\n",
           "| variant | steps | PVE | MPJPE | PA-MPJPE | stochastic Q=1 PA-MPJPE |", "|---|---|---|---|---|---|"]
    for row in rows.values():
        d = row["deterministic"]
        out.append(f"| {row['label']} | {row['steps']:,} | {d['pve']:.1f} | {d['mpjpe']:.1f} | {d['pa_mpjpe']:.1f} | "
                   f"{row['stochastic_q1']['pa_mpjpe']:.1f} |")
    if {"mega", "linear", "full", "scratch_full"} <= set(rows):
        pa = {k: rows[k]["deterministic"]["pa_mpjpe"] for k in ("mega", "linear", "full", "scratch_full")}

        def change(new: str, old: str) -> str:
            pct = 100.0 * (pa[new] - pa[old]) / pa[old]
            return f"{abs(pct):.0f} % {'higher' if pct > 0 else 'lower'}"

        notes = ("\nReading (PA-MPJPE): pre-training helps — full mask from the pre-trained model is "
                 f"{change('full', 'scratch_full')} than from scratch; linear masking is {change('linear', 'mega')} "
                 f"than cosine masking, as in the paper; full mask is {change('full', 'mega')} than cosine masking "
                 "at this short budget, where the paper (at convergence) found it slightly worse: training only "
                 "the deterministic task learns it faster, and the budget ends long before convergence. The shipped "
                 "recipe therefore masks half the batches fully and the other half with the cosine schedule, so "
                 "the model still learns to complete partially visible meshes for stochastic generation.")
    else:
        notes = ""
    shipped = _load(ROOT / "resources" / "default" / "metrics.json")  # the model shipped now
    notes += _ablation_tokenizer_note(rows)
    if shipped:
        steps = conditioned_steps(shipped["recipe"].get("mega", shipped["recipe"]))
        if "deterministic_argmax_codes" in shipped:  # decoded as the rows are; no stochastic figure with them
            d, label, q1 = shipped["deterministic_argmax_codes"], "shipped default (for reference, argmax codes)", "–"
        else:
            d, label = shipped["deterministic"], "shipped default (for reference)"
            q1 = f"{shipped['min_of_q']['1']['pa_mpjpe']:.1f}"
        out.append(f"| {label} | {steps:,} | {d['pve']:.1f} | {d['mpjpe']:.1f} | {d['pa_mpjpe']:.1f} | {q1} |")
    return "\n".join(out) + "\n" + notes + "\n"


def conditioned_steps(stage: dict) -> int:
    """Every conditioned step a recipe ran: its conditioned stage and each warm restart (the last one once per
    round), so a row of the shipped model is not read as 8,400 steps when it trained several times that."""
    return (stage["train_steps"] + stage.get("tail_steps", 0) + stage.get("lifted_steps", 0)
            + stage.get("polish_steps", 0) * stage.get("polish_rounds", 1))


def _ablation_tokenizer_note(rows: dict) -> str:
    """Say so when the rows were measured with another tokenizer than the shipped one."""
    tok = _load(ROOT / "resources" / "tokenizer" / "metrics.json") or {}
    used = {(r.get("tokenizer_id"), r.get("tokenizer_pve_mm")) for r in rows.values()}
    shipped_id, shipped_pve = tok.get("tokenizer_id"), (tokenizer_headline(tok) or {}).get("pve_mm")
    if len(used) != 1 or not shipped_id:
        return ""
    (row_id, row_pve), = used
    if row_id == shipped_id or row_pve is None:
        return ""
    return (f"\n\nThese rows were measured with another tokenizer (PVE {row_pve:.1f} mm) and its pre-trained "
            f"model; the shipped default (last row) uses the {shipped_pve:.1f} mm tokenizer and another recipe, so "
            "compare the rows with each other, and the last row only loosely.")


def _command(report: dict, default: str) -> str:
    command = report.get("command") or default
    return command if command.startswith("python ") else f"python {command}"


def _environment(env: dict) -> str:
    """The one line about the machine that every speed table carries."""
    load = ", ".join(f"{x:.1f}" for x in (env.get("load_average") or [])[:3])
    return (f"Environment: {env.get('cpu_model')} ({env.get('cpu_count')} cores), torch {env.get('torch')} with "
            f"{env.get('torch_threads')} thread(s); load average (1, 5, 15 min) when the run started {load}.\n")


def _check_row(what: str, value: str, better: str, target: float, met: bool | None) -> str:
    verdict = {True: "yes", False: "**no**", None: "-"}[met]
    return f"| {what} | {value} | {'≤' if better == 'lower' else '≥'} {target:g} | {verdict} |"


def reads_landmarks(result: dict) -> bool:
    """A throughput variant trained and scored with the detector's 3D landmarks besides the keypoints."""
    return bool(result.get("reads_detector_landmarks"))


def _speedup_row(throughput: dict, landmarks: bool) -> str:
    """The best time-to-accuracy speed-up over the baseline among the variants that read the keypoints alone, or
    among those that also read the detector's 3D landmarks (other inputs, so a row of their own)."""
    best = max((v["speedup_vs_baseline"] for v in throughput["variants"].values()
                if v.get("speedup_vs_baseline") and reads_landmarks(v) == landmarks), default=None)
    inputs = "keypoints and the detector's 3D landmarks" if landmarks else "keypoints alone"
    return _check_row(f"conditioned training: time to the baseline's accuracy, best speed-up over the baseline "
                      f"({inputs})", "not reached" if best is None or best <= 1.0 else f"{best:.2f}×", "higher",
                      TARGETS["time_to_accuracy_speedup"],
                      best is not None and best >= TARGETS["time_to_accuracy_speedup"])


def targets_section(tok: dict | None, mega: dict | None, sweep: dict | None,
                    throughput: dict | None = None) -> str:
    """One row per accuracy / training-time target, measured value from the result files."""
    rows = []
    head = tokenizer_headline(tok)
    if head:
        rows.append(_target("tokenizer PVE on held-out meshes, mm", head["pve_mm"], "tokenizer_pve_mm"))
        if "hands_feet_vertex_p95_mm" in head:
            rows.append(_target("tokenizer hand and foot vertices, p95 error, mm", head["hands_feet_vertex_p95_mm"],
                                "tokenizer_hands_feet_p95_mm"))
    if mega:
        det = mega["deterministic"]["pa_mpjpe"]
        rows += _accuracy_targets(mega)
        hard = mega.get("hard_poses")
        if hard:
            rows.append(_target("hard-poses split, deterministic PA-MPJPE over the main figure, ×",
                                hard["deterministic"]["pa_mpjpe"] / det, "hard_over_main", digits=2))
        rows.append(_target("stochastic min-of-25 PA-MPJPE improvement over Q = 1, %",
                            mega["min_of_q_improvement_pct"]["pa_mpjpe"], "min_of_25_improvement_pct", better="higher"))
        if "engine" in mega:
            rows += _accuracy_targets(mega["engine"], ENGINE_OUTPUT)
    if throughput:
        rows += [_speedup_row(throughput, landmarks) for landmarks in (False, True)
                 if landmarks is False or any(map(reads_landmarks, throughput["variants"].values()))]
    down = (sweep or {}).get("downstream")
    if down:
        total = sum(down["stage_minutes"].values())
        rows.append(_target(f"a whole recipe on a 2-core CPU, end to end, minutes (`{down['command']}`)", total,
                            "pipeline_minutes"))
    if not rows:
        return ""
    return "\n".join(["### Targets\n", "| target | measured | target value | met |", "|---|---|---|---|", *rows]) + "\n"


ENGINE_OUTPUT = "engine output"  # what Engine.recover returns by default: rotation, camera and body fitted


def _accuracy_targets(m: dict, subject: str | None = None) -> list[str]:
    """The accuracy targets of one evaluation: the network alone (``subject`` None) or, named by ``subject``, the
    engine's output."""
    if subject is None:
        first, tag = "MEGA deterministic PA-MPJPE, mm", ""
    else:
        first, tag = (f"{subject} (rotation, camera and body fitted to the keypoints, as the app shows it): "
                      "deterministic PA-MPJPE, mm"), f"{subject}, "
    rows = [_target(first, m["deterministic"]["pa_mpjpe"], "pa_mpjpe_mm")]
    split = m.get("by_detection")
    if split:
        rows.append(_target(f"{tag or 'the same, '}people with all 17 keypoints detected, mm",
                            split["all_17_detected"]["deterministic_pa_mpjpe"], "pa_mpjpe_all_detected_mm"))
    rows.append(_target(f"{tag}stochastic min-of-25 PA-MPJPE, mm", m["min_of_q"]["25"]["pa_mpjpe"],
                        "min_of_25_pa_mpjpe_mm"))
    if "sd_error_spearman_average_map" in m:
        rows.append(_target(f"{tag}per-person SD map's Spearman correlation with the error, minus the average map's",
                            m["sd_error_spearman"] - m["sd_error_spearman_average_map"],
                            "sd_spearman_over_average_map", better="higher", digits=3))
    return rows


def _target(what: str, value: float, key: str, better: str = "lower", digits: int = 1) -> str:
    target = TARGETS[key]
    met = value <= target if better == "lower" else value >= target
    return _check_row(what, f"{value:.{digits}f}", better, target, met)


def observations_note(mega: dict | None, long: dict | None) -> str:
    """How many training observations MEGA's conditioned stage and the long lifter run each saw."""
    recipe, minutes = (mega or {}).get("recipe"), (mega or {}).get("stage_minutes", {}).get("conditioned_min")
    if not (recipe and minutes and long):
        return ""
    seen, lifter_seen = recipe["train_steps"] * recipe["batch_size"], long["steps"] * long["batch_size"]
    return (f"\nTraining throughput: MEGA's conditioned stage saw {seen:,} observations in {minutes:.1f} minutes "
            f"({60_000 * minutes / seen:.2f} ms each), the long lifter run {lifter_seen:,} in {long['minutes']:.0f} "
            f"minutes ({60_000 * long['minutes'] / lifter_seen:.2f} ms each).\n")


PRIOR_LABELS = {"keyposes": "key poses only", "motion": "key poses + training motion clips (what training uses)",
                "hard": "held-out clips (hard-poses split)"}


PRIOR_STATS = ("pose_prior_stats", "pose_prior_motion_stats", "pose_prior_hard_stats")


def body_section(assets: dict | None, priors: list[dict]) -> str:
    """Held-out errors of the precomputed body assets and the pose prior's diversity and speed."""
    out = []
    if assets:
        coco, display = assets["coco_heldout_error_mm"], assets["display_upsampling_heldout_error_mm"]
        out.append(f"Body assets (`python scripts/build_body_assets.py --examples {assets['examples']} --seed "
                   f"{assets['seed']}`), errors on {assets['holdout']} held-out posed bodies: COCO-17 regressor of the "
                   f"{assets['working_vertices']:,}-vertex working mesh {coco['mean']:.2f} mm mean "
                   f"({coco['p95']:.1f} mm p95); upsampling to the {assets['display_vertices']:,}-vertex display mesh "
                   f"{display['mean']:.2f} mm mean ({display['p95']:.1f} mm p95).")
    for prior in priors:
        kind = prior.get("prior", "keyposes")
        flag = "" if kind == "keyposes" else f" --prior {kind} --n {prior['samples_shown']} --out {prior['figure']}"
        out.append(f"Pose prior, {PRIOR_LABELS[kind]} (`python scripts/make_contact_sheet.py{flag} --seed "
                   f"{prior['seed']} --threads {prior['torch_threads']}`): APD {prior['apd_cm']:.1f} cm over "
                   f"{prior['apd_samples']} samples; {prior['canonical_meshes_per_s']:,.0f} canonical meshes/s "
                   f"({prior['torch_threads']} torch thread, batch {prior['speed_batch']}).")
    return "### Body model and pose prior\n\n" + "\n\n".join(out) + "\n" if out else ""


def bench_section(b: dict | None, other: dict | None = None, second: dict | None = None) -> str:
    """The speed report; ``other``: the same benchmark of another model in the same sitting (the keypoint model);
    ``second``: the same model on another machine, whose targets may differ from the first's (a slower CPU)."""
    if not b:
        return ""
    out = [f"### Speed (`{_command(b, 'scripts/bench.py --repeats 30')}`, medians, CPU)\n",
           _environment(b.get("environment", {})), "| target | measured | target value | met |", "|---|---|---|---|"]
    for check in b.get("checks", {}).values():
        out.append(_check_row(check["what"], f"{check['value']:.3g}", check["better"], check["target"], check["met"]))
    if b.get("note"):
        out += ["", b["note"]]
    if other:
        checks = other.get("checks", {})
        out += ["", f"The model reads {' and '.join(b['environment'].get('conditioning', []))}; the keypoint model "
                    f"(`{_command(other, '')}`, run right after it) measures "
                + ", ".join(f"{c['what']} {c['value']:.3g}" for c in checks.values()) + "."]
    if second:
        env, detector = second.get("environment", {}), second.get("results", {}).get("detector", {}).get("single")
        mine = b.get("results", {}).get("detector", {}).get("single")
        out += ["", f"On another 2-core CPU ({env.get('cpu_model', 'unknown')}, torch {env.get('torch_threads')} "
                    f"threads; `{_command(second, '')}`) the same model measures "
                + ", ".join(f"{c['what']} {c['value']:.3g}" + ("" if c["met"] else " (**not met**)")
                            for c in second.get("checks", {}).values())
                + (f"; MediaPipe's detector alone takes {detector['median_ms']:.0f} ms there against "
                   f"{mine['median_ms']:.0f} on the machine above" if detector and mine else "") + "."]
    out += ["", "All medians (ms) by measurement:", "", "| measurement | median ms |", "|---|---|"]

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict) and "median_ms" in node:
            out.append(f"| {prefix} | {node['median_ms']:.1f} |")
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix} / {key}" if prefix else key, value)

    walk("", b.get("results", {}))
    return "\n".join(out) + "\n"


def fast_path_section(c: dict | None) -> str:
    """``scripts/bench_compare.py``'s report: the engine with and without the generation fast path."""
    if not c:
        return ""
    default = (f"scripts/bench_compare.py --base <tree without it> --rounds {len(c['rounds'])} "
               f"--repeats {c['repeats']} --threads {c['threads']}")
    base, this = c["median_of_rounds"]["base"], c["median_of_rounds"]["this"]
    out = [f"### Fast path (`{_command(c, default)}`, medians of the rounds' medians, CPU)\n",
           f"Compared: {c['what']}.\n", "| measurement | without, ms | with, ms | speed-up |", "|---|---|---|---|"]
    for key in base:
        label = key.removesuffix("_ms").replace("_", " ").replace("q16", "Q=16").replace("q1", "Q=1")
        out.append(f"| {label} | {base[key]:.1f} | {this[key]:.1f} | ×{base[key] / this[key]:.2f} |")
    if c.get("note"):
        out += ["", c["note"][0].upper() + c["note"][1:] + "."]
    return "\n".join(out) + "\n"


def routes_section(r: dict | None) -> str:
    """``scripts/bench_routes.py``'s report: each CPU inference route against its alternative."""
    if not r:
        return ""
    out = [f"### CPU inference routes (`{_command(r, 'scripts/bench_routes.py')}`, medians, interleaved)\n",
           _environment(r["environment"]), "| measurement | route taken, ms | alternative, ms |", "|---|---|---|"]
    chosen = {"tokenizer_decode": lambda p: "cached", "attention": lambda p: "matmul",
              "vcconv_layers": lambda p: p["chosen"]}
    names = {"tokenizer_decode": "token decode, batch", "attention": "attention (B×heads×tokens×dim)",
             "vcconv_layers": "tokenizer layer, batch 16,"}
    for section, pick in chosen.items():
        for key, pair in r[section].items():
            routes = [k for k, v in pair.items() if isinstance(v, dict) and "median_ms" in v]
            taken = pick(pair)
            other = next(k for k in routes if k != taken)
            out.append(f"| {names[section]} {key.removeprefix('b')}: {taken} vs {other} | "
                       f"{pair[taken]['median_ms']:.2f} | {pair[other]['median_ms']:.2f} |")
    fit = ", ".join(f"Q = {k[1:]}: {v['median_ms']:.1f} ms" for k, v in r["camera_fit"].items())
    out += ["", f"Camera fit to the keypoints: {fit}."]
    return "\n".join(out) + "\n"


def refine_section(r: dict | None) -> str:
    """The keypoint refinement of the bodies (megaviewer/refine.py), without and with, on each split."""
    if not r:
        return ""
    rows = [("benchmark, deterministic", r["benchmark"]["deterministic"]),
            ("benchmark, stochastic (min of 8)", r["benchmark"]["stochastic_q8"]),
            ("hard poses, deterministic", r["hard_poses"]["deterministic"]),
            ("benchmark with clean keypoints, deterministic", r["benchmark_clean_keypoints"]["deterministic"])]
    model = f" Model: `{r['model']}`, reading the keypoints." if r.get("model") else ""
    out = [f"### Keypoint refinement of the bodies (`{r['command']}`, {r['threads']} torch thread)\n",
           "Each hypothesis's body fitted to the keypoints after the camera fit (on by default for photos, off in "
           f"live streams); mm, 2D error in normalised crop units; bodies decoded from the argmax codes.{model} The "
           "detector-in-the-loop table below has the fit with each model's own inputs (`+fit`).\n",
           "| split | people | PA-MPJPE without → with | MPJPE without → with | 2D error before → after | "
           "people improved |", "|---|---|---|---|---|---|"]
    for name, part in rows:
        w, x = part["without"], part["with"]
        out.append(f"| {name} | {part['people']} | {w['pa_mpjpe']:.1f} → {x['pa_mpjpe']:.1f} | "
                   f"{w['mpjpe']:.1f} → {x['mpjpe']:.1f} | {part['reprojection_error_before']:.3f} → "
                   f"{part['reprojection_error_after']:.3f} | "
                   f"{100 * part['pa_mpjpe_change']['improved_fraction']:.0f} % |")
    one = next((t for t in r.get("timing", []) if t["q"] == 1), None)
    if one:
        out += ["", f"Time for one person: {one['refine_cpu_ms']:.0f} ms of CPU time ({one['steps']} steps) on a "
                    "shared core; the run records the machine's load."]
    return "\n".join(out) + "\n"


def landmark_noise_section(noise: dict | None, trained: dict | None) -> str:
    """The detector's 3D landmarks: their measured error model and what reading them buys on the benchmark."""
    if not noise:
        return ""
    m = noise["measured_on"]
    deg = [math.degrees(v) for v in noise["rotation_mean"]]
    sd = [math.degrees(v) for v in noise["rotation_sd"]]
    out = [f"### The detector's 3D landmarks (`{m['command']}`, `{trained['command'] if trained else ''}`)\n",
           f"MediaPipe BlazePose run on {m['rendered']} rendered people of the training prior; {m['with_landmarks']} "
           f"detected. Its 3D landmarks against the true joints: PA-MPJPE {m['landmarks_pa_mpjpe_limbs12_mm']:.1f} mm "
           f"on the 12 limb joints; labels swapped left/right {100 * noise['swap_prob']:.1f} %, facing the wrong way "
           f"{100 * noise['reverse_prob']:.1f} %; size × {math.exp(noise['log_scale_mean']):.2f}; skeleton rotation "
           f"mean ({deg[0]:.1f}, {deg[1]:.1f}, {deg[2]:.1f})° and SD ({sd[0]:.1f}, {sd[1]:.1f}, {sd[2]:.1f})° about "
           f"the camera's x, y, z axes. Training simulates landmarks with this model "
           "(`resources/body/landmark_noise.json`).\n"]
    if trained:
        longer = ("; `landmarks_long` continues `landmarks` with the detector's measured gross 2D keypoint errors "
                  "(kept as `resources/baselines/landmark_model`)" if "landmarks_long" in trained["models"] else "")
        out += [f"Warm starts from the keypoint model, {trained['steps']:,} steps each{longer}; deterministic PA-MPJPE "
                f"on the {trained['people']} benchmark people, mm:\n",
                "| model | reads | with landmarks | without landmarks |", "|---|---|---|---|"]
        for name, row in trained["models"].items():
            lm = row.get("with_landmarks")
            with_lm = "" if lm is None else f"{lm['pa_mpjpe']:.1f}"
            out.append(f"| {name} (`{row['folder']}`) | {' + '.join(row['kinds'])} | {with_lm} | "
                       f"{row['without_landmarks']['pa_mpjpe']:.1f} |")
    return "\n".join(out) + "\n"


def detector_loop_section(d: dict | None, *tunings: dict | None) -> str:
    """The detector-in-the-loop benchmark (benchmarks/detector_loop.py)."""
    if not d:
        return ""
    out = [f"### Detector in the loop (`{d['command'].strip()}`)\n",
           "Rendered people (clothes, light, photo backgrounds) through the real detector and the product's own "
           "path, deterministic mode, the typical 55° camera; every row on the same detected people. PA-MPJPE, mm "
           "(17 joints / 12 limb joints).\n"]
    names = list(d["splits"])
    out += ["| setting | " + " | ".join(f"{n} ({d['splits'][n]['scored']} of {d['splits'][n]['rendered']})"
                                        for n in names) + " |",
            "|---|" + "---|" * len(names)]
    labels = list(d["splits"][names[0]]["rows"])
    for label in labels:
        cells = []
        for n in names:
            row = d["splits"][n]["rows"].get(label)
            cells.append("" if row is None else f"{row['pa_mpjpe']:.1f} / {row['pa_mpjpe_limbs12']:.1f}")
        shown = "MediaPipe's own 3D landmarks" if label == "mediapipe_landmarks" else label
        out.append(f"| {shown} | " + " | ".join(cells) + " |")
    out += ["", "Models: " + ", ".join(f"{name} = `{folder}`" for name, folder in d["models"].items())
            + "; `+landmarks`: the detector's landmarks given to the model and to the fit, `+fit`: the bodies fitted "
              "to the keypoints."]
    for t in (t for t in tunings if t):
        field = t.get("field", "landmark_weight")
        names = {"landmark_weight": "the landmarks' weight in the fit", "lr": "the fit's learning rate"}
        name = names.get(field, field)
        best = min(t["rows"], key=lambda w: t["rows"][w]["pa_mpjpe"])
        chosen = t.get("default", best)
        out.append(f"On a separate tuning split of {t['scored']} detected people (`{t['command']}`), "
                   f"{name}: PA-MPJPE " + ", ".join(f"{w}: {r['pa_mpjpe']:.1f}" for w, r in t["rows"].items())
                   + f" mm; the default is {chosen:g}"
                   + ("." if float(best) == float(chosen) else
                      f", within {t['rows'][f'{chosen:g}']['pa_mpjpe'] - t['rows'][best]['pa_mpjpe']:.2f} mm of the "
                      "best value."))
    return "\n".join(out) + "\n"


def _eval_steps(t: dict) -> str:
    """How often the recipes were evaluated: one interval, or each one a variant used."""
    steps = sorted({v.get("eval_every", t["eval_every"]) for v in t["variants"].values()})
    return " or ".join(f"{s:,}" for s in steps)


def _throughput_rows(variants: dict[str, dict]) -> list[str]:
    """One table row per recipe: where its run ended, when it reached the target, its speed-ups."""
    out = ["| recipe | steps run | training minutes | PA-MPJPE at the end, mm | minutes to target | vs baseline "
           "| vs baseline at its own final accuracy |", "|---|---|---|---|---|---|---|"]
    for result in variants.values():
        last = result["curve"][-1]
        reach = result.get("minutes_to_target")
        without = last.get("pa_mpjpe_without_landmarks")
        end = f"{last['pa_mpjpe']:.1f}" + (f" ({without:.1f} without landmarks)" if without is not None else "")
        recipe = f"`{result['variant']['name']}`: {result['variant']['label']}"
        out.append(f"| {recipe} | {last['steps']:,} | {last['train_minutes']:.1f} | {end} | "
                   f"{'not reached' if reach is None else f'{reach:.1f}'} | "
                   f"{_times(result.get('speedup_vs_baseline'))} | "
                   f"{_times(result.get('speedup_at_own_final_accuracy'))} |")
    return out


def _times(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}×"


def throughput_section(t: dict | None) -> str:
    """Time to accuracy of conditioned-training recipes, measured side by side (benchmarks/training_speed.py)."""
    if not t or not t.get("variants"):
        return ""
    out = [f"### Time to accuracy of conditioned training (`{t['command']}`, {t['torch_threads']} torch thread)\n",
           f"Each recipe trains the conditioned stage from a pre-trained model on the same data and is "
           f"evaluated every {_eval_steps(t)} steps on the {t['eval_people']} benchmark people (deterministic "
           f"mode); minutes are training time only. Target: deterministic PA-MPJPE {t['target_pa_mpjpe']:g} mm. "
           "The last column divides the baseline's minutes to the PA-MPJPE a recipe ended at by the recipe's "
           "minutes." + (f" {t['note']}" if t.get("note") else "") + "\n", *_throughput_rows(t["variants"])]
    earlier = t.get("earlier_runs")
    if earlier and earlier.get("variants"):
        out += ["", f"Runs of {earlier['date']}, under other load (each against its own baseline run). "
                    f"{earlier.get('note', '')}\n", *_throughput_rows(earlier["variants"])]
    expected = t.get("expected_codes_runs")
    if expected and expected.get("variants"):
        out += ["", "Decoded as the engine decodes (expected codes, docs/expected-codes.md): runs of "
                    f"{expected['date']} scored at every evaluation both ways, minutes to the same "
                    f"{t['target_pa_mpjpe']:g} mm for each decoding and speed-ups against the baseline run beside "
                    f"them decoded the same way. {expected.get('note', '')}\n",
                *_expected_codes_rows(expected["variants"])]
    return "\n".join(out) + "\n"


def _expected_codes_rows(variants: dict[str, dict]) -> list[str]:
    """One row per recipe of the runs scored with the argmax and the expected codes."""
    out = ["| recipe | training minutes | PA-MPJPE at the end, argmax / expected codes, mm | minutes to target, "
           "argmax / expected codes | vs baseline, argmax / expected codes |", "|---|---|---|---|---|"]
    for result in variants.values():
        last = result["curve"][-1]
        reach = [result.get("minutes_to_target"), result.get("minutes_to_target_expected_codes")]
        out.append(f"| `{result['variant']['name']}`: {result['variant']['label']} | {last['train_minutes']:.1f} | "
                   f"{last['pa_mpjpe']:.1f} / {last['pa_mpjpe_expected_codes']:.1f} | "
                   + " / ".join("not reached" if r is None else f"{r:.1f}" for r in reach) + " | "
                   + " / ".join(_times(result.get(k)) or "–" for k in ("speedup_vs_baseline",
                                                                      "speedup_vs_baseline_expected_codes")) + " |")
    return out


def tokenizer_speed_section(t: dict | None) -> str:
    """Time to accuracy of tokenizer training, recipes side by side (benchmarks/tokenizer_speed.py)."""
    if not t or "baseline" not in t.get("runs", {}):
        return ""
    out = [f"### Time to accuracy of tokenizer training (`{t['command']}`, {t['torch_threads']} torch thread)\n",
           f"Each recipe's tokenizer stage trains as its recipe trains it (a long schedule only for its first steps, "
           f"at the learning rate of its whole schedule), scored every {t['eval_every']:,} steps on the same "
           f"{t['eval_meshes']} held-out meshes of the key-pose prior; minutes are training time only. Target: the "
           f"PVE the baseline ends at, {t['target_pve_mm']:.2f} mm." + (f" {t['note']}" if t.get("note") else "")
           + "\n",
           "| recipe | steps run (of its schedule) | training minutes | PVE at the end, mm | minutes to target "
           "| vs baseline |", "|---|---|---|---|---|---|"]
    for name, r in t["runs"].items():
        last = r["curve"][-1]
        reach = r.get("minutes_to_target")
        speed = r.get("speedup_vs_baseline")
        out.append(f"| `{name}`: {r['label']} | {last['steps']:,} "
                   f"({r['schedule_steps']:,}) | {last['train_minutes']:.1f} | {last['pve_mm']:.2f} | "
                   f"{'not reached' if reach is None else f'{reach:.1f}'} | "
                   f"{'' if speed is None else f'{speed:.2f}×'} |")
    return "\n".join(out) + "\n"


def uncertainty_section(u: dict | None) -> str:
    """How much each person's SD map knows about that person's error (training/uncertainty_maps.py)."""
    if not u:
        return ""
    per = u["per_person"]
    qs = sorted(per, key=int)
    rows = [(f"each person's SD map, Q = {' / '.join(qs)}", " / ".join(f"{per[q]:.3f}" for q in qs)),
            ("the average SD map, the same for everyone", f"{u['average_map']:.3f}"),
            ("the average error map, the same for everyone", f"{u['average_error_map']:.3f}"),
            ("the average SD map scaled around each joint by the person's hypotheses' joint spread",
             f"{u['average_map_scaled_by_joint_spread']:.3f}"),
            *([("the average SD map scaled around each joint by the joint errors a least-squares model predicts "
                "from the hypotheses' joint spread, the deterministic joint's distance to its keypoint and to its "
                "3D landmark, and which of them are missing (fitted on half of the people, scored on the others)",
                f"{u['average_map_scaled_by_fitted_joint_error']:.3f}")]
              if "average_map_scaled_by_fitted_joint_error" in u else []),
            ("the average SD map scaled around each joint by the person's true joint errors (what a perfect "
             "estimate of each joint's error reaches this way)",
             f"{u['oracle_average_map_scaled_by_true_joint_error']:.3f}")]
    joint = u["joint_level"]
    out = [f"### Uncertainty maps (`{u['command']}`)\n",
           f"Spearman correlation of the deterministic mesh's per-vertex error with each map, mean over the "
           f"benchmark's {u['people']} people (`{u['model']}`, Q = {u['q']}, temperature {u['temperature']:g}):\n",
           "| map | Spearman |", "|---|---|"]
    out += [f"| {name} | {value} |" for name, value in rows]
    out += ["", f"Each person's SD map correlates {u['per_person_vs_average_map']:.2f} with the average map, and "
                f"{u.get('split_half', float('nan')):.2f} between two halves of the person's hypotheses: the "
                "hypotheses spread reproducibly, and mostly where everybody's do. At the 17 joints, the spread of "
                f"a person's hypotheses ranks the joints' true errors at {joint['spread_vs_true_error']:.3f}, the "
                f"average spread at {joint['average_spread_vs_true_error']:.3f}"
                + (f", the fitted model at {joint['fitted_vs_true_error']:.3f}" if "fitted_vs_true_error" in joint
                   else "") + "."]
    calibrated = u.get("if_truth_were_a_hypothesis")
    if calibrated:
        gain = calibrated["per_person"] - calibrated["average_map"]
        out[-1] += (f" With one of each person's hypotheses in place of the truth and the other {u['q'] - 1} making "
                    f"the maps (each of the first {calibrated['held_out']} in turn), what a perfectly calibrated "
                    f"model's truth would look like, each person's SD map scores {calibrated['per_person']:.3f} and "
                    f"the average map {calibrated['average_map']:.3f}, a gain of {gain:+.3f}: the hypotheses spread "
                    "too alike from one person to the next for any map made from their spread to gain much "
                    "over the average map, however well calibrated; a larger gain needs a model whose hypotheses "
                    "spread differently for different people.")
    return "\n".join(out) + "\n"


def generated_block() -> str:
    """The whole block between the markers, markers included, from the result files."""
    res = ROOT / "resources"
    tok = _load(res / "tokenizer" / "metrics.json")
    mega = _load(res / "default" / "metrics.json")
    sweep = _load(res / "tokenizer" / "sweep.json")
    long = _load(res / "baselines" / "mlp_lifting_long.json")
    body = "\n".join(s for s in (
        targets_section(tok, mega, sweep, _load(res / "bench" / "train_throughput.json")),
        tokenizer_section(tok, _load(res / "figures" / "tokenizer_hands_feet.json"),
                          (_load(res / "tokenizer" / "config.json") or {}).get("extremity_density", 1.0)),
        tokenizer_sweep_section(sweep, tok),
        mega_section(mega),
        models_section(_load(res / "bench" / "models.json"), _load(res / "bench" / "detector_loop.json")),
        lifting_section(_load(res / "baselines" / "mlp_lifting.json"), long, (mega or {}).get("count"))
        + observations_note(mega, long),
        ablation_section(_load(res / "ablation" / "ablation.json")),
        throughput_section(_load(res / "bench" / "train_throughput.json")),
        tokenizer_speed_section(_load(res / "bench" / "tokenizer_time_to_pve.json")),
        uncertainty_section(_load(res / "bench" / "uncertainty.json")),
        refine_section(_load(res / "bench" / "refine.json")),
        landmark_noise_section(_load(res / "body" / "landmark_noise.json"), _load(res / "bench" / "landmarks.json")),
        detector_loop_section(_load(res / "bench" / "detector_loop.json"),
                              _load(res / "bench" / "detector_loop_tuning.json"),
                              _load(res / "bench" / "detector_loop_tuning_lr.json")),
        body_section(_load(res / "body" / "anny.json"),
                     [_load(res / "figures" / f"{name}.json") for name in PRIOR_STATS
                      if (res / "figures" / f"{name}.json").exists()]),
        bench_section(_load(res / "bench" / "bench_cpu.json"), _load(res / "bench" / "bench_cpu_keypoint_model.json"),
                      _load(res / "bench" / "bench_cpu_second_machine.json")),
        fast_path_section(_load(res / "bench" / "fast_path_before_after.json")),
        routes_section(_load(res / "bench" / "cpu_routes.json")),
    ) if s)
    return f"{BEGIN}\n## Measured figures\n\n{body}{END}"


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = generated_block()
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text)
    print(block)


if __name__ == "__main__":
    main()
