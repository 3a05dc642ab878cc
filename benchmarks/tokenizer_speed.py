"""Time to accuracy of tokenizer training: CPU-minutes until a recipe's tokenizer reconstructs held-out meshes as
well as the baseline recipe's finished tokenizer does, recipes side by side on one machine.

Each recipe's tokenizer stage (:mod:`training.recipes`) trains in one continuous run, keeping a checkpoint every
``eval_every`` steps, up to ``steps`` of its own schedule (the baseline: all of it; a longer recipe: its start,
its learning rate laid out over its whole schedule as it is when the recipe runs). Afterwards every checkpoint is
scored on the same held-out meshes of the key-pose prior (what the baseline trains on; the same meshes as the
tokenizer sweep). The target is the PVE the baseline ends at; a recipe's minutes to it are its training seconds
(the loop's own record, so scoring is not counted) where its curve first reaches it, linear between checkpoints.
A run folder that is already trained is only scored again, so a second call after separate ``--only`` runs
assembles the report.

``python scripts/bench_tokenizer_training.py`` writes ``resources/bench/tokenizer_time_to_pve.json``.
"""

from __future__ import annotations

import json
import platform
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from benchmarks.training_speed import first_reach
from training.recipes import TokenizerStage, get_recipe

SCHEMA = "megaviewer.bench.tokenizer_time_to_pve/1"
EVAL_MESHES = 256  # as scripts/tokenizer_sweep.py


@dataclass(frozen=True)
class TokenizerRun:
    """A recipe's tokenizer stage (with ``changes`` to its fields), trained for ``steps`` of its schedule."""

    name: str
    label: str
    recipe: str
    steps: int | None = None  # None: the whole schedule
    changes: tuple[tuple[str, object], ...] = ()

    @property
    def stage(self) -> TokenizerStage:
        return replace(get_recipe(self.recipe).tokenizer, **dict(self.changes))

    @property
    def run_steps(self) -> int:
        return self.steps or self.stage.steps


RUNS: dict[str, TokenizerRun] = {r.name: r for r in (
    TokenizerRun("baseline", "the baseline recipe's tokenizer (absolute coordinates, lr 1e-3, key poses)", "baseline"),
    TokenizerRun("baseline_offsets", "the baseline_offsets recipe's tokenizer (offsets from the template x5, "
                 "lr 6e-3)", "baseline_offsets"),
    TokenizerRun("offsets_4k", "as baseline_offsets, the schedule laid out over 4,000 steps", "baseline_offsets",
                 changes=(("steps", 4_000),)),
    TokenizerRun("default", "the shipped default's tokenizer (offsets x5, lr 6e-3, 64 tokens dense on the hands and "
                 "feet, key poses + real motion), its first 8,000 of 100,000 steps", "default", 8_000),
)}


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint folders in step order."""
    found = [p for p in (run_dir / "checkpoints").glob("step-*") if re.fullmatch(r"step-\d{8,}", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def run_config(run: TokenizerRun, run_dir: Path, eval_every: int, threads: int):
    """The recipe's own tokenizer run, every checkpoint kept, stopped after ``run.steps`` of its schedule."""
    return replace(run.stage.train_config(str(run_dir), threads), ckpt_every=eval_every, keep_last=10_000,
                   stop_at=run.run_steps if run.run_steps < run.stage.steps else None, progress=False)


def score_run(run_dir: Path, data) -> list[dict]:
    """PVE of every checkpoint on the held-out meshes, with its step and training minutes."""
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.loop import training_record
    from training.tokenizer import evaluate_tokenizer

    found = checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(f"{run_dir} holds no checkpoints to score: train it first (without --score-only)")
    curve = []
    for folder in found:
        step, seconds = training_record(folder)
        scores = evaluate_tokenizer(MeshVQVAE.from_pretrained(folder), data, EVAL_MESHES)
        curve.append({"steps": step, "train_minutes": seconds / 60, "pve_mm": scores["pve_mm"],
                      "pa_mpjpe_mm": scores["pa_mpjpe_mm"]})
    return curve


def add_speedups(report: dict) -> None:
    """Target (the baseline's final PVE), each run's minutes to it and speed-up over the baseline."""
    runs = report["runs"]
    if "baseline" not in runs:
        return
    base = runs["baseline"]
    report["target_pve_mm"] = base["curve"][-1]["pve_mm"]
    for result in runs.values():
        reach = first_reach([(p["train_minutes"], p["pve_mm"]) for p in result["curve"]], report["target_pve_mm"])
        result["minutes_to_target"] = reach
    base_minutes = base["minutes_to_target"]
    for result in runs.values():
        mine = result["minutes_to_target"]
        result["speedup_vs_baseline"] = base_minutes / mine if mine else None


def run(names: list[str], out_json: Path, runs_dir: Path, eval_every: int, threads: int, note: str | None = None,
        train: bool = True) -> dict:
    from megaviewer.io.atomic import atomic_write_text
    from training.data.meshes import SyntheticMeshes

    if threads:
        torch.set_num_threads(threads)
    report = json.loads(out_json.read_text()) if out_json.exists() else {"runs": {}}
    report.update({"schema": SCHEMA, "command": "python scripts/bench_tokenizer_training.py",
                   "eval_meshes": EVAL_MESHES, "eval_prior": "keyposes", "eval_every": eval_every})
    if train:  # what the training ran on (scoring alone leaves the record of the training as it was)
        report.update({"torch_threads": torch.get_num_threads(),
                       "machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")})
    if note:
        report["note"] = note
    data = SyntheticMeshes()  # the key-pose prior; its held-out meshes
    for name in names:
        spec = RUNS[name]
        folder = runs_dir / name
        if train:
            from training.tokenizer import train_tokenizer

            train_tokenizer(run_config(spec, folder, eval_every, threads))
        curve = score_run(folder, data)
        report["runs"][name] = {"label": spec.label, "recipe": spec.recipe, "stage": asdict(spec.stage),
                                "steps": spec.run_steps, "schedule_steps": spec.stage.steps, "curve": curve}
        print(f"{name}: {curve[-1]['pve_mm']:.2f} mm PVE after {curve[-1]['steps']} steps, "
              f"{curve[-1]['train_minutes']:.1f} min", flush=True)
    add_speedups(report)
    atomic_write_text(out_json, json.dumps(report, indent=2))
    return report
