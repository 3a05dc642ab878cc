"""The tokenizer recipe comparison: short runs that differ in one setting each.

Every run trains the shipped architecture (channels 16/32/64, ``train_default_tokenizer.shipped_recipe``)
with batch 16 and evaluates on 256 held-out
meshes. What varies: absolute coordinates vs offsets from the rest template (``residual_scale``), the
learning rate, and the length. Runs resume (and finished runs are only re-evaluated), so rerunning is cheap.
Results go to ``resources/tokenizer/sweep.json``; README's tokenizer paragraph is generated from it.

``--downstream METRICS`` records what MEGA reached on top of a tokenizer: the ``metrics.json`` that
``scripts/train_default.py --tokenizer-recipe offsets --no-install`` wrote in its run folder.

    python scripts/tokenizer_sweep.py [--runs runs/tokenizer_sweep] [--only base,offsets] [--downstream FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_default_tokenizer import BATCH, CHANNELS, Recipe, shipped_recipe  # noqa: E402

from megaviewer.io.atomic import atomic_write_text  # noqa: E402
from megaviewer.paths import tokenizer_dir  # noqa: E402
from megaviewer.tokenizer.model import MeshVQVAE  # noqa: E402
from training.data.meshes import SyntheticMeshes  # noqa: E402
from training.tokenizer import evaluate_tokenizer, train_tokenizer  # noqa: E402

EVAL_COUNT = 256


@dataclass(frozen=True)
class SweepRun:
    label: str
    steps: int
    recipe: Recipe


RUNS = {
    "base": SweepRun("absolute coordinates, lr 1e-3 (session-1 recipe)", 1000, Recipe(1e-3, 0.0)),
    "offsets": SweepRun("offsets from the template x5, lr 1e-3", 1000, Recipe(1e-3, 5.0)),
    "offsets_lr3e-3": SweepRun("offsets x5, lr 3e-3", 1000, Recipe(3e-3, 5.0)),
    "offsets_lr6e-3": SweepRun("offsets x5, lr 6e-3", 1000, Recipe(6e-3, 5.0)),
    "offsets_lr6e-3_4k": SweepRun("offsets x5, lr 6e-3", 4000, Recipe(6e-3, 5.0)),
    "offsets_lr6e-3_12k": SweepRun("offsets x5, lr 6e-3 (`--recipe offsets`)", 12000, Recipe(6e-3, 5.0)),
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
    report.update({"command": "python scripts/tokenizer_sweep.py", "eval_count": EVAL_COUNT, "batch_size": BATCH,
                   "channels": list(CHANNELS)})
    for name in names:
        run = RUNS[name]
        start = time.perf_counter()
        final = train_tokenizer(shipped_recipe(str(Path(args.runs) / name), run.steps, recipe=run.recipe))
        minutes = (time.perf_counter() - start) / 60
        result = evaluate_tokenizer(MeshVQVAE.from_pretrained(final), data, EVAL_COUNT)
        row = {"label": run.label, "steps": run.steps, "lr": run.recipe.lr, "residual_scale": run.recipe.residual_scale,
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
    return {"command": "python scripts/train_default.py --tokenizer-recipe "
                       f"{metrics['recipe'].get('tokenizer_recipe', 'offsets')} --no-install",
            "deterministic": metrics["deterministic"], "min_of_25": metrics["min_of_q"]["25"],
            "min_of_q_improvement_pct": metrics["min_of_q_improvement_pct"],
            "sd_error_spearman": metrics["sd_error_spearman"],
            "unconditional_apd_cm": metrics.get("unconditional_apd_cm"), "stage_minutes": metrics["stage_minutes"]}


if __name__ == "__main__":
    main()
