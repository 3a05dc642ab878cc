"""More rounds of a recipe's last warm restart on top of an installed model, carried across machines.

Why: each round of the last warm restart (``MegaStage.polish_rounds``) lowers the benchmark error by a fraction of
a millimetre, and a round of 6,000 steps takes half an hour to an hour on a 2-core CPU, so rounds are worth adding
to a model that is already installed without rerunning the hours of stages before them. Round ``r`` starts from
round ``r - 1``'s final weights (the installed model is the recipe's last round), trains exactly as
:func:`training.run_recipe.run_recipe` would (:func:`training.run_recipe.conditioned_config` with
``polish_round=r``: the same data, learning rate and frozen keypoint lifter, its own data seed) and writes
``runs/polish_<r>/``. One difference: its 2D loss decodes through the installed tokenizer, whose decoder the recipe
fine-tunes after its rounds (the token ids, and so the pool and the targets, are the same).

With ``state_dir`` each finished round's weights are kept there in float16 (``polish_<r>/``, replacing the
round before: a warm restart starts with fresh optimizer moments and schedule, so the weights are the whole state
between rounds), with the hash of the installed weights they continue. On another machine the run starts from
the latest round kept there; the next round then starts from the float16 copy, as the first added round starts
from the installed float16 weights. A round interrupted on the same machine resumes from its own checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

from megaviewer.io.atomic import atomic_write_text
from training.recipes import Recipe
from training.run_recipe import (
    conditioned_config,
    install_model,
    polish_label,
    polish_stage,
    score_run,
    stage_hours,
    stage_settings,
)

ROUND_FILE = "round.json"


def installed_rounds(model_dir: Path) -> int:
    """How many rounds of the last warm restart the installed model's recorded recipe ran (1 when it predates
    the setting)."""
    metrics = model_dir / "metrics.json"
    if not metrics.exists():
        raise FileNotFoundError(f"{metrics} is missing: the installed model's recipe is unknown")
    recipe = json.loads(metrics.read_text()).get("recipe") or {}
    return int(recipe.get("mega", {}).get("polish_rounds", 1))


def weights_digest(model_dir: Path) -> str:
    return hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()


def latest_kept_round(state_dir: Path, installed: str) -> tuple[int, Path, dict] | None:
    """The latest finished round kept in ``state_dir``, its folder and its ``round.json`` record (which also holds
    the training hours of every round so far); refused when it continues other weights than the installed ones."""
    kept = []
    for folder in state_dir.glob("polish_*"):
        if folder.is_dir() and (folder / ROUND_FILE).exists() and (folder / "model.safetensors").exists():
            record = json.loads((folder / ROUND_FILE).read_text())
            kept.append((int(record["round"]), folder, record))
    if not kept:
        return None
    round_, folder, record = max(kept, key=lambda item: item[0])
    continues = record["continues"]
    if continues != installed:
        raise ValueError(f"{folder} continues other weights than the installed model's (sha256 {continues[:12]} "
                         f"against {installed[:12]}): use a fresh --state folder, or install the model it continues")
    return round_, folder, record


def keep_round(state_dir: Path, final: Path, round_: int, installed: str, hours: dict[str, float | None]) -> Path:
    """Write round ``round_``'s final weights (float16) and the ``hours`` of the rounds so far into
    ``state_dir/polish_<r>`` through a temporary folder and one rename, then drop the rounds before it."""
    dest = state_dir / polish_stage(round_)
    tmp = state_dir / f".{dest.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    install_model(final, tmp, half=True)
    record = {"round": round_, "continues": installed, "train_hours": hours}
    atomic_write_text(tmp / ROUND_FILE, json.dumps(record, indent=2))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    for old in state_dir.glob("polish*"):
        if old.is_dir() and old != dest and not old.name.startswith("."):
            shutil.rmtree(old)
    return dest


def continue_polish(recipe: Recipe, runs: str | Path, rounds: int, *, model_dir: str | Path | None = None,
                    state_dir: str | Path | None = None, threads: int = 0, install: bool = False) -> Path | None:
    """Train rounds ``installed + 1 .. rounds`` of ``recipe``'s last warm restart from the model in ``model_dir``
    (default: the installed default); returns the last round's final folder (``None`` when a round stopped
    early). ``install`` then scores it and installs it with the recipe recorded as ``rounds`` rounds."""
    from megaviewer.engine import tokenizer_folder
    from megaviewer.model.lifter import save_lifter
    from megaviewer.model.mega import load_mega
    from megaviewer.paths import default_model_dir, resources_dir
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.meshes import SyntheticMeshes
    from training.mega_conditioned import train_conditioned
    from training.mega_pretrain import prepare_pool

    m = recipe.mega
    if not m.polish_steps:
        raise ValueError(f"recipe {recipe.name!r} has no last warm restart (polish_steps = 0) to add rounds of")
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    runs, first = Path(runs), installed_rounds(model_dir)
    if rounds <= first:
        raise ValueError(f"{model_dir} already ran {first} round(s); ask for more than that")
    installed = weights_digest(model_dir)
    init, start, hours = model_dir, first, {}
    kept = latest_kept_round(Path(state_dir), installed) if state_dir is not None else None
    if kept is not None:
        start, init, record = kept
        hours = record.get("train_hours", {})
        print(f"megaviewer-train: continuing from round {start} kept in {init}", flush=True)
    model = load_mega(model_dir)
    if model.conditioning.lifter is None:
        raise ValueError(f"{model_dir} has no keypoint lifter inside: its recipe's warm restarts need one")
    runs.mkdir(parents=True, exist_ok=True)
    lifter = save_lifter(runs / "lifter_installed", model.conditioning.lifter)
    tokenizer_dir = tokenizer_folder(model_dir)
    tokenizer = MeshVQVAE.from_pretrained(tokenizer_dir)
    pool = prepare_pool(runs / "pool.safetensors", tokenizer, m.pool_size, 0,
                        meshes=lambda: SyntheticMeshes(prior_kind=m.pool_prior))
    common = {**stage_settings(m, threads), "pool": str(runs / "pool.safetensors"), "tokenizer": str(tokenizer_dir)}
    for round_ in range(start + 1, rounds + 1):
        cfg = conditioned_config(m, runs, init, common, stage="polish", lifter=lifter, polish_round=round_)
        final = train_conditioned(cfg, tokenizer=tokenizer, pool=pool)
        if final.name != "final":
            return None
        hours[polish_label(round_)] = stage_hours(final)
        if state_dir is not None:
            keep_round(Path(state_dir), final, round_, installed, hours)
        init = final
    if install:
        recorded = json.loads((model_dir / "metrics.json").read_text()).get("train_hours") or {}
        grown = replace(recipe, mega=replace(m, polish_rounds=rounds))
        pretrained = resources_dir() / "pretrained"
        result = score_run(grown, runs, init, tokenizer, load_mega(pretrained) if pretrained.exists() else None,
                           {}, {**recorded, **hours})
        install_model(Path(init), model_dir, result, half=True)
        print(f"installed into {model_dir}")
    return Path(init)
