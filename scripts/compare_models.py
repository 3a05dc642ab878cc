"""The shipped default against the models it replaced, each on its own tokenizer, on the same people.

    python scripts/compare_models.py [--model NAME=DIR ...] [--out resources/bench/models.json]

Each model's tokenizer on the same held-out meshes of the training prior (PVE and the p95 error of hand and
foot vertices), then deterministic PA-MPJPE (mm) on the synthetic benchmark (512 people) and its hard-poses
split (256 people of the held-out motion clips), each with the detector's 3D landmarks for every person (as
MediaPipe gives them) and without any (a keypoints file from another detector). The people are the same for
every model: their meshes come from the prior and are built once (the evaluation keeps no tokens).

``DIR+SOURCE`` is the model in DIR with the keypoint lifter of SOURCE (a lifter's folder, or a model carrying
one) put in without training (:func:`training.lifter.attach_lifter`): what the lifter alone buys. ``DIR@TOKENIZER``
decodes the model's tokens through another tokenizer with the same codebook (e.g. one before its decoder
fine-tune, :mod:`training.decoder`): what the sharper decoder alone buys.

Every row decodes the paper's argmax codes except a row named ``<model>+expected_codes``, which decodes the
expected codes (:mod:`megaviewer.generate`, the engine's default): the last row is the shipped default as the
engine decodes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = {"keypoint_model": "resources/baselines/keypoint_model",
          "landmark_model": "resources/baselines/landmark_model",
          "no_lifter_model": "resources/baselines/no_lifter_model",
          "no_lifter_model+lifter": "resources/baselines/no_lifter_model+resources/baselines/lifted_model",
          "lifted_model": "resources/baselines/lifted_model",
          "offsets_model@before_decoder": ("resources/baselines/offsets_model"
                                           "@resources/baselines/no_lifter_model/tokenizer"),
          "offsets_model": "resources/baselines/offsets_model",
          "dense_model": "resources/baselines/dense_model",
          "tokens64_model": "resources/baselines/tokens64_model",
          "default": "resources/default",
          "default+expected_codes": "resources/default"}
WHAT = {"keypoint_model": "`baseline` recipe: absolute-coordinate tokenizer, key poses only, reads keypoints",
        "landmark_model": "the keypoint model taught the detector's 3D landmarks (3,000-step warm start, the "
                          "detector's gross 2D errors)",
        "no_lifter_model": "`even_extremities` recipe up to its first warm restart: tokenizer on offsets trained "
                           "100,000 steps, key poses + real motion, landmarks from the start of conditioned training, "
                           "8,400 steps, then 6,000 steps with landmarks for half the people",
        "no_lifter_model+lifter": "no_lifter_model with lifted_model's keypoint lifter put in, without training",
        "lifted_model": "the same, then a keypoint lifter answering for absent landmarks and a second 6,000-step "
                        "warm restart with it (decoded through the fine-tuned decoder of offsets_model)",
        "offsets_model@before_decoder": "the same, then a third 6,000-step warm restart; decoded through the "
                                        "tokenizer before its decoder fine-tune",
        "offsets_model": "the whole `even_extremities` recipe: the same, decoded through "
                         "the tokenizer whose decoder was fine-tuned with the hand and foot vertices weighted x8 "
                         "(token ids unchanged)",
        "dense_model": "the whole `dense_extremities` recipe (the previous default): the same, with the tokenizer's "
                       "coarse levels twice as dense on the hands and feet",
        "tokens64_model": "the `default` recipe with one round of its third warm restart: the same, with 64 tokens "
                          "instead of 54, the coarse levels three times as dense on the hands and feet, and the hand "
                          "and foot vertices weighing twice as much in the tokenizer's loss",
        "default": "the whole `default` recipe: the same, with its third warm restart run six times in all, each "
                   "round from the previous round's weights with its own data seed (argmax codes, as the paper "
                   "decodes)",
        "default+expected_codes": "the same model decoding the expected code of each token's predicted "
                                  "distribution instead of its argmax (the engine's default)"}
TOKENIZER_MESHES = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None, help="NAME=DIR, repeatable (default: the "
                                                                      "shipped models)")
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "bench" / "models.json")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    import torch

    from megaviewer.body.assets import BodyAssets
    from megaviewer.engine import tokenizer_folder
    from megaviewer.io.atomic import atomic_write_text
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.meshes import SyntheticMeshes
    from training.evaluate import (
        BENCHMARK_PEOPLE,
        HARD_SPLIT_PEOPLE,
        build_eval_set,
        deterministic_scores,
        landmark_observations,
        row_decodes_expected_codes,
    )
    from training.tokenizer import evaluate_tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    models = dict(m.split("=", 1) for m in args.model) if args.model else MODELS
    obs = landmark_observations(landmark_prob=1.0)
    report: dict = {"command": "python scripts/compare_models.py"
                    + "".join(f" --model {n}={f}" for n, f in models.items() if args.model),
                    "people": {"main": BENCHMARK_PEOPLE, "hard": HARD_SPLIT_PEOPLE}, "models": {}}
    splits: dict = {}
    for name, spec in models.items():
        folder, _, other_tokenizer = spec.partition("@")
        tokenizer = MeshVQVAE.from_pretrained(REPO / other_tokenizer if other_tokenizer
                                              else tokenizer_folder(REPO / folder.split("+")[0]))
        regressor = BodyAssets.load(tokenizer.config.body).coco_regressor.float()
        model = load_model(folder)
        expected = row_decodes_expected_codes(name)
        row: dict = {"folder": spec, "what": WHAT.get(name, ""), "kinds": list(model.config.conditioning.kinds),
                     "expected_codes": expected}
        tok = evaluate_tokenizer(tokenizer, SyntheticMeshes(prior_kind="motion"), TOKENIZER_MESHES)
        row["tokenizer"] = {k: tok[k] for k in ("heldout_meshes", "pve_mm", "hands_feet_vertex_p95_mm")}
        if not splits:  # built once: the people (true meshes, keypoints, landmarks) do not depend on the tokenizer
            splits = {"main": build_eval_set(tokenizer, BENCHMARK_PEOPLE, obs=obs),
                      "hard": build_eval_set(tokenizer, HARD_SPLIT_PEOPLE, obs=obs,
                                             meshes=SyntheticMeshes(prior_kind="hard"))}
        for split, data in splits.items():
            sets = {"without_landmarks": data.without_landmarks()}
            if "landmarks" in row["kinds"]:
                sets["with_landmarks"] = data
            for label, people in sets.items():
                scores = deterministic_scores(model, tokenizer, regressor, people, expected_codes=expected)
                row[f"{split}_{label}"] = float(scores["pa_mpjpe"].mean())
        report["models"][name] = row
        print(name, json.dumps(row), flush=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")


def load_model(spec: str):
    """The MEGA of ``DIR``, or of ``DIR+SOURCE``: DIR's model with SOURCE's keypoint lifter put in."""
    from megaviewer.io.checkpoint import load_config
    from megaviewer.model.lifter import KIND as LIFTER_KIND
    from megaviewer.model.lifter import load_lifter
    from megaviewer.model.mega import load_mega
    from training.lifter import attach_lifter

    folder, _, source = spec.partition("+")
    model = load_mega(REPO / folder)
    if not source:
        return model
    if load_config(REPO / source).get("kind") == LIFTER_KIND:
        return attach_lifter(model, load_lifter(REPO / source))
    carrier = load_mega(REPO / source).conditioning
    if carrier is None or carrier.lifter is None:
        raise SystemExit(f"{source} carries no keypoint lifter")
    return attach_lifter(model, carrier.lifter)


if __name__ == "__main__":
    main()
