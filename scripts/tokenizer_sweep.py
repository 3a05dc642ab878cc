"""The tokenizer recipe comparison: short runs that differ in one setting each.

Every run trains the tokenizer of the ``baseline`` recipe (:mod:`training.recipes`: channels 16/32/64, batch
16, meshes of the key-pose prior) with one setting changed, and evaluates on 256 held-out meshes.
What varies: absolute coordinates vs offsets from the rest template (``residual_scale``), the
learning rate, and the length. Runs resume (and finished runs are only re-evaluated), so rerunning is cheap.
Results go to ``resources/tokenizer/sweep.json``; README's tokenizer paragraph is generated from it.

``--downstream METRICS`` records what MEGA reached on top of a tokenizer: the ``metrics.json`` of a whole
recipe run on it.

    python scripts/tokenizer_sweep.py [--runs runs/tokenizer_sweep] [--only base,offsets] [--downstream FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from megaviewer.io.atomic import atomic_write_text
from megaviewer.paths import tokenizer_dir
from megaviewer.tokenizer.model import MeshVQVAE
from training.data.meshes import SyntheticMeshes
from training.recipes import get_recipe
from training.tokenizer import evaluate_tokenizer, train_tokenizer

EVAL_COUNT = 256


BASE = get_recipe("baseline").tokenizer


@dataclass(frozen=True)
class SweepRun:
    label: str
    steps: int
    lr: float
    residual_scale: float

    def stage(self):
        return replace(BASE, steps=self.steps, lr=self.lr, residual_scale=self.residual_scale)


RUNS = {
    "base": SweepRun("absolute coordinates, lr 1e-3 (the baseline recipe)", 1000, 1e-3, 0.0),
    "offsets": SweepRun("offsets from the template x5, lr 1e-3", 1000, 1e-3, 5.0),
    "offsets_lr3e-3": SweepRun("offsets x5, lr 3e-3", 1000, 3e-3, 5.0),
    "offsets_lr6e-3": SweepRun("offsets x5, lr 6e-3", 1000, 6e-3, 5.0),
    "offsets_lr6e-3_4k": SweepRun("offsets x5, lr 6e-3", 4000, 6e-3, 5.0),
    "offsets_lr6e-3_12k": SweepRun("offsets x5, lr 6e-3", 12000, 6e-3, 5.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/tokenizer_sweep")
    parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--out", default=str(tokenizer_dir() / "sweep.json"))
    parser.add_argument("--downstream", default=None, help="metrics.json of a train_default.py run to record")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or ([] if args.downstream else list(RUNS))
    data = SyntheticMeshes()
    out_path = Path(args.out)
    report = json.loads(out_path.read_text()) if out_path.exists() else {"rows": {}}
    report.update({"command": "python scripts/tokenizer_sweep.py", "eval_count": EVAL_COUNT,
                   "batch_size": BASE.batch_size, "channels": list(BASE.channels)})
    for name in names:
        run = RUNS[name]
        start = time.perf_counter()
        final = train_tokenizer(run.stage().train_config(str(Path(args.runs) / name)))
        minutes = (time.perf_counter() - start) / 60
        result = evaluate_tokenizer(MeshVQVAE.from_pretrained(final), data, EVAL_COUNT)
        row = {"label": run.label, "steps": run.steps, "lr": run.lr, "residual_scale": run.residual_scale,
               "pve_mm": result["pve_mm"], "pa_mpjpe_mm": result["pa_mpjpe_mm"], "codes_used": result["codes_used"]}
        if minutes > 0.5:  # a finished run is only re-evaluated: keep the training time recorded before
            row["train_minutes_this_run"] = minutes
        report["rows"][name] = {**report["rows"].get(name, {}), **row}
        print(f"{name}: {row['pve_mm']:.1f} mm PVE after {run.steps} steps")
    if args.downstream:
        report["downstream"] = downstream_record(json.loads(Path(args.downstream).read_text()))
    atomic_write_text(out_path, json.dumps(report, indent=2))


def downstream_record(metrics: dict) -> dict:
    """The figures of a whole default-pipeline run that a tokenizer choice is judged by."""
    return {"command": "megaviewer-train recipe baseline_offsets --no-install",
            "deterministic": metrics["deterministic"], "min_of_25": metrics["min_of_q"]["25"],
            "min_of_q_improvement_pct": metrics["min_of_q_improvement_pct"],
            "sd_error_spearman": metrics["sd_error_spearman"],
            "unconditional_apd_cm": metrics.get("unconditional_apd_cm"), "stage_minutes": metrics["stage_minutes"]}


if __name__ == "__main__":
    main()
