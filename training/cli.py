"""``megaviewer-train``: train and evaluate the tokenizer and MEGA from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _tokenizer_parser(sub) -> None:
    from training.data.bodies import add_body_arguments
    from training.data.priors import PRIOR_KINDS
    from training.decoder import DecoderTrainConfig
    from training.tokenizer import TokenizerTrainConfig

    d = TokenizerTrainConfig()  # every default below is the config's own
    p = sub.add_parser("tokenizer", help="train the Mesh-VQ-VAE tokenizer on synthetic Anny (or your SMPL) meshes")
    add_body_arguments(p, what="the meshes (smpl / smplh: the topology of your file; docs/smpl.md)")
    p.add_argument("--out", default=d.out_dir, help="run folder (checkpoints, TensorBoard, final/)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--prior", choices=PRIOR_KINDS, default=d.prior, help="pose prior the meshes come from")
    p.add_argument("--chunk-size", type=int, default=d.chunk_size,
                   help="pose meshes in chunks of this many, each drawn a few times (0: pose every batch)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--channels", default="", help="conv widths per level, e.g. 16,32,64")
    p.add_argument("--residual-scale", type=float, default=None,
                   help="learn (mesh - rest template) x this scale instead of absolute coordinates (0: off)")
    p.add_argument("--extremity-density", type=float, default=None,
                   help="give the hands and feet this many times their even share of tokens (default 1)")
    p.add_argument("--extremity-weight", type=float, default=None,
                   help="weigh a hand or foot vertex this many times any other in the loss (default 1)")
    p.add_argument("--tokens", type=int, default=None,
                   help="tokens per mesh, the coarsest level's size (default 54, as the original; bodies other "
                        "than Anny get sizes from their vertex count)")
    p.add_argument("--eval-count", type=int, default=1024, help="held-out meshes evaluated at the end")

    e = sub.add_parser("eval-tokenizer", help="evaluate a tokenizer checkpoint on held-out synthetic meshes")
    e.add_argument("checkpoint", nargs="?", default=None, help="checkpoint folder (default: shipped)")
    e.add_argument("--count", type=int, default=1024)
    e.add_argument("--json", default=None, help="write the metrics to this JSON file")
    add_body_arguments(e, default=None, what="the held-out meshes (default: the tokenizer's body)")

    f = DecoderTrainConfig()
    r = sub.add_parser("decoder", help="sharpen a trained tokenizer's hands and feet: fine-tune its decoder only, "
                                       "every token id unchanged (models trained on it stay valid)")
    r.add_argument("tokenizer", nargs="?", default=None, help="tokenizer folder (default: shipped)")
    r.add_argument("--out", default=f.out_dir, help="run folder (checkpoints, final/: the sharpened tokenizer)")
    r.add_argument("--steps", type=int, default=f.steps)
    r.add_argument("--batch-size", type=int, default=f.batch_size)
    r.add_argument("--lr", type=float, default=f.lr)
    r.add_argument("--extremity-weight", type=float, default=f.extremity_weight,
                   help="loss weight of a hand or foot vertex relative to any other")
    r.add_argument("--prior", choices=PRIOR_KINDS, default=f.prior, help="pose prior the meshes come from")
    r.add_argument("--chunk-size", type=int, default=f.chunk_size, help="meshes posed per chunk")
    r.add_argument("--seed", type=int, default=f.seed)
    r.add_argument("--stop-at", type=int, default=None, help="stop after this many steps (rerun to continue)")
    r.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    r.add_argument("--eval-count", type=int, default=1024, help="held-out meshes evaluated before and after")


def _run_tokenizer(args) -> int:
    from training.tokenizer import config_from_args, evaluate_tokenizer, train_tokenizer, write_metrics

    cfg = config_from_args(args)
    final = train_tokenizer(cfg)
    from megaviewer.tokenizer.model import MeshVQVAE

    if final.name == "final":
        result = evaluate_tokenizer(MeshVQVAE.from_pretrained(final), cfg.body_spec.meshes(), args.eval_count)
        write_metrics(final / "metrics.json", result)
        print(json.dumps(result, indent=2))
    return 0


def _run_decoder(args) -> int:
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.meshes import SyntheticMeshes
    from training.decoder import DecoderTrainConfig, train_decoder
    from training.tokenizer import evaluate_tokenizer, write_metrics

    cfg = DecoderTrainConfig(out_dir=args.out, init=args.tokenizer, steps=args.steps, batch_size=args.batch_size,
                             lr=args.lr, extremity_weight=args.extremity_weight, prior=args.prior,
                             chunk_size=args.chunk_size, seed=args.seed,
                             stop_at=args.stop_at, threads=args.threads)
    final = train_decoder(cfg)
    if final.name == "final":
        meshes = SyntheticMeshes(prior_kind=args.prior)
        result = {"before": evaluate_tokenizer(MeshVQVAE.from_pretrained(args.tokenizer), meshes, args.eval_count),
                  "after": evaluate_tokenizer(MeshVQVAE.from_pretrained(final), meshes, args.eval_count)}
        write_metrics(final / "metrics.json", result)
        print(json.dumps(result, indent=2))
    else:
        print(f"megaviewer-train decoder: stopped at {final}; run the same command to continue")
    return 0


def _run_eval_tokenizer(args) -> int:
    from megaviewer.tokenizer.model import MeshVQVAE
    from training.data.bodies import BodySpec
    from training.tokenizer import evaluate_tokenizer, write_metrics

    model = MeshVQVAE.from_pretrained(args.checkpoint)
    body = args.body or model.config.body
    if body != model.config.body:
        raise ValueError(f"{args.checkpoint or 'the shipped tokenizer'} encodes {model.config.body!r} meshes, "
                         f"not {body!r}")
    result = evaluate_tokenizer(model, BodySpec(body, args.model_path, args.gender).meshes(), args.count)
    print(json.dumps(result, indent=2))
    if args.json:
        write_metrics(Path(args.json), result)
    return 0


def _recipe_parsers(sub) -> None:
    from training.recipes import RECIPES
    from training.run_recipe import STAGES

    r = sub.add_parser("recipe", help="run a named recipe end to end (the shipped default: 'default')")
    r.add_argument("name", choices=sorted(RECIPES))
    r.add_argument("--runs", default=None, help="folder for all stages (default: runs/<name>)")
    r.add_argument("--state", default=None,
                   help="folder of saved training state: empty stages start from it, save-state writes it")
    r.add_argument("--tokenizer", default=None, help="use this trained tokenizer instead of the tokenizer stage")
    r.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    r.add_argument("--no-install", action="store_true", help="do not copy the results into resources/")
    r.add_argument("--estimate", action="store_true", help="only print the recipe and how long it takes")
    r.add_argument("--until", default=None, choices=STAGES[:-1],
                   help="stop after this stage, before the later ones and the evaluation (conditioned: before the "
                        "warm restarts)")

    v = sub.add_parser("evaluate", help="score a MEGA checkpoint on the synthetic benchmark, as the shipped "
                                        "models are scored (network alone, engine output, hard poses)")
    v.add_argument("model", nargs="?", default=None, help="MEGA folder (default: the shipped resources/default)")
    v.add_argument("--tokenizer", default=None,
                   help="tokenizer folder (default: the model folder's tokenizer/, else the shipped one)")
    v.add_argument("--pretrained", default=None, help="an unconditional MEGA folder: also report its samples' APD")
    v.add_argument("--people", type=int, default=None, help="benchmark people (default: 512, as shipped)")
    v.add_argument("--hard-people", type=int, default=None,
                   help="people of the held-out motion clips (default: 256, as shipped; 0: skip)")
    v.add_argument("--no-engine", action="store_true",
                   help="score the network alone (skips the keypoint fit, the slow part)")
    v.add_argument("--json", default=None, help="write the results to this JSON file")
    v.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")

    p = sub.add_parser("polish", help="add rounds of a recipe's last warm restart to an installed model "
                                      "(each half an hour to an hour on a 2-core CPU)")
    p.add_argument("--recipe", default="default", choices=sorted(RECIPES), help="the installed model's recipe")
    p.add_argument("--rounds", type=int, required=True,
                   help="rounds in all, counting those the installed model ran (its metrics.json records them)")
    p.add_argument("--model", default=None, help="the installed MEGA folder (default: resources/default)")
    p.add_argument("--runs", default=None, help="folder of the rounds (default: runs/<recipe>_polish)")
    p.add_argument("--state", default=None,
                   help="folder that keeps the latest finished round (float16) so another machine continues")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--install", action="store_true",
                   help="score the last round on the benchmark and install it into --model")

    s = sub.add_parser("save-state", help="copy each stage's latest checkpoint of a recipe run into --state")
    s.add_argument("name", help="recipe name (for the default --runs)")
    s.add_argument("--runs", default=None, help="folder of the run (default: runs/<name>)")
    s.add_argument("--state", required=True)


def _run_recipe(args) -> int:
    from training.recipes import get_recipe
    from training.run_recipe import describe, run_recipe

    recipe = get_recipe(args.name)
    if args.estimate:
        print(describe(recipe))
        print(json.dumps(recipe.to_dict(), indent=2))
        return 0
    result = run_recipe(recipe, args.runs or f"runs/{args.name}", install=not args.no_install,
                        threads=args.threads, state_dir=args.state, tokenizer_dir=args.tokenizer,
                        until=args.until)
    return 0 if result is not None or args.until else 3


def _run_evaluate(args) -> int:
    import torch

    from megaviewer.body.assets import BodyAssets
    from megaviewer.io.atomic import atomic_write_text
    from megaviewer.model.mega import load_mega
    from megaviewer.paths import default_model_dir
    from training.evaluate import (
        BENCHMARK_PEOPLE,
        HARD_SPLIT_PEOPLE,
        benchmark,
        format_report,
        load_for_evaluation,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.model) if args.model else default_model_dir()
    model, tokenizer, tokenizer_dir = load_for_evaluation(folder, args.tokenizer)
    people = BENCHMARK_PEOPLE if args.people is None else args.people
    hard_people = HARD_SPLIT_PEOPLE if args.hard_people is None else args.hard_people
    if people < 1 or hard_people < 0:
        raise ValueError("--people must be at least 1 and --hard-people at least 0")
    out = Path(args.json) if args.json else None
    if out is not None and not (out.parent.is_dir() and os.access(out.parent, os.W_OK)):
        # checked before the minutes of evaluation, not after
        raise ValueError(f"cannot write {out}: {out.parent} is not a writable folder")
    result = benchmark(model, tokenizer, BodyAssets.load(tokenizer.config.body).coco_regressor, people=people,
                       engine=not args.no_engine, hard_people=hard_people,
                       unconditional_model=load_mega(args.pretrained) if args.pretrained else None)
    result.update(model=str(folder), tokenizer=str(tokenizer_dir))
    print(format_report(result))
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2))
    return 0


def _run_polish(args) -> int:
    from training.continue_polish import continue_polish
    from training.recipes import get_recipe

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    final = continue_polish(get_recipe(args.recipe), args.runs or f"runs/{args.recipe}_polish", args.rounds,
                            model_dir=args.model, state_dir=args.state, threads=args.threads, install=args.install)
    return 0 if final is not None else 3


def _run_save_state(args) -> int:
    from training.run_recipe import save_state

    saved = save_state(args.runs or f"runs/{args.name}", args.state)
    print(json.dumps(saved, indent=2) if saved else "megaviewer-train: no checkpoint to save yet")
    return 0


def _mega_common(p) -> None:
    """Options shared by ``pretrain`` and ``train`` (MEGA on the tokenised mesh pool)."""
    from megaviewer.masking import SCHEDULES
    from megaviewer.model.config import list_presets
    from training.data.bodies import add_body_arguments
    from training.mega_pretrain import PretrainConfig

    d = PretrainConfig()  # every default below is the config's own
    p.add_argument("--preset", default=d.preset, choices=list_presets(), help="MEGA preset")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per-rank batch size")
    p.add_argument("--lr", type=float, default=d.lr,
                   help="absolute learning rate (default: base-lr x batch-size / 256, as the original)")
    p.add_argument("--base-lr", type=float, default=d.base_lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup", type=int, default=d.warmup_steps, help="linear warm-up steps")
    p.add_argument("--masking", default=d.masking, choices=sorted(SCHEDULES),
                   help="cosine (original), linear / full (ablations), cosine_full (half the batches fully masked)")
    p.add_argument("--pool", default=None,
                   help=f"mesh pool file; built with --tokenizer and cached here if missing (default {d.pool}, "
                        "for smpl / smplh runs/pool_<body>.safetensors)")
    p.add_argument("--pool-size", type=int, default=None,
                   help="meshes in the pool (default: the existing file's size, or 100000 when building)")
    p.add_argument("--pool-seed", type=int, default=d.pool_seed)
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: shipped resources/tokenizer)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--stop-at", type=int, default=None, help="end this invocation after N steps (resumable)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_body_arguments(p, what="the tokenizer and the pool (smpl / smplh: --model-path builds the pool; docs/smpl.md)")


def _mega_parsers(sub) -> None:
    from training.evaluate import TRAINING_LANDMARK_PROB
    from training.lifter import LifterTrainConfig

    p = sub.add_parser("pretrain", help="self-supervised MEGA pre-training on tokenised synthetic meshes")
    p.add_argument("--out", default="runs/pretrain", help="run folder (checkpoints, TensorBoard, final/)")
    _mega_common(p)

    t = sub.add_parser("train", help="conditioned MEGA training (HMR stage): synthetic keypoints, or a dataset folder")
    t.add_argument("--out", default=None,
                   help="run folder (checkpoints, TensorBoard, final/); default runs/mega or runs/mega_dataset")
    t.add_argument("--init", default=None,
                   help="pre-trained checkpoint folder (e.g. runs/pretrain/final); omit = w/o pre-training")
    t.add_argument("--condition", "--kinds", dest="kinds", default=None,
                   help="what the model reads, comma-separated: keypoints, landmarks, image (default: the "
                        "preset's; with --data: image)")
    _dataset_options(t)
    t.add_argument("--reprojection-rows", type=int, default=None,
                   help="score the 2D loss on this many samples per batch (default: all, as the original)")
    t.add_argument("--fresh-lr-scale", type=float, default=1.0,
                   help="learning rate of the tensors the --init checkpoint lacks (conditioners, rotation/camera "
                        "head) as a multiple of --lr (default 1; 5 learned faster in scripts/bench_training.py)")
    t.add_argument("--geometry-weight", type=float, default=0.0,
                   help="weight of the soft-decoded mesh loss (ours; default 0 = off)")
    t.add_argument("--code-smoothing", type=float, default=0.0,
                   help="share of each token target moved to neighbouring codes (ours; default 0 = one-hot)")
    t.add_argument("--landmark-prob", type=float, default=TRAINING_LANDMARK_PROB,
                   help="with landmarks: the share of people who have them (simulated with the detector's measured "
                        "errors; the others have none)")
    t.add_argument("--gross-2d-errors", action="store_true",
                   help="keypoint outliers as the real detector makes them (as the default recipe trains)")
    t.add_argument("--lifter", default=None,
                   help="a trained keypoint lifter's folder (megaviewer-train lifter), frozen inside a landmark "
                        "model: it answers for the landmarks of people who have none")
    _mega_common(t)

    lift = LifterTrainConfig()  # every default below is the config's own
    f = sub.add_parser("lifter", help="train the keypoint lifter (2D keypoints -> 3D joints) a landmark model "
                                      "reads when the detector gives no landmarks")
    f.add_argument("--out", default=lift.out_dir, help="run folder (checkpoints, TensorBoard, final/)")
    f.add_argument("--pool", default=None, help="mesh pool built by pretrain/train (default: runs/pool.safetensors)")
    f.add_argument("--steps", type=int, default=lift.steps)
    f.add_argument("--batch-size", type=int, default=lift.batch_size)
    f.add_argument("--lr", type=float, default=lift.lr)
    f.add_argument("--hidden", type=int, default=lift.lifter.hidden, help="width of the hidden layers")
    f.add_argument("--depth", type=int, default=lift.lifter.depth, help="number of hidden layers")
    f.add_argument("--gross-2d-errors", action="store_true",
                   help="keypoint outliers as the real detector makes them (as the default recipe trains)")
    f.add_argument("--seed", type=int, default=lift.seed)
    f.add_argument("--stop-at", type=int, default=None, help="stop after this many steps (rerun to continue)")
    f.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    f.add_argument("--no-progress", action="store_true")

    i = sub.add_parser("image-path", help="train an image-conditioned MEGA on rendered crops (small scale)")
    i.add_argument("--out", default="runs/image_path")
    i.add_argument("--steps", type=int, default=300)
    i.add_argument("--num-images", type=int, default=256)
    i.add_argument("--image-size", type=int, default=64)
    i.add_argument("--batch-size", type=int, default=16)
    i.add_argument("--lr", type=float, default=1e-3)
    i.add_argument("--head-dropout", type=float, default=0.1, help="rotation/camera head dropout (orig. 0.5)")
    i.add_argument("--backbone", default="resnet18", help="timm backbone (random init, never downloaded)")
    i.add_argument("--preset", default="cpu_small")
    i.add_argument("--tokenizer", default=None, help="tokenizer folder (default: shipped resources/tokenizer)")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    i.add_argument("--no-progress", action="store_true")


def _dataset_options(t) -> None:
    """Options of training on a dataset folder (docs/dataset.md); without ``--data`` training is synthetic."""
    from training.mega_dataset import DatasetTrainConfig

    d = DatasetTrainConfig()
    t.add_argument("--data", default=None, help="dataset folder (images + people.jsonl/npz): train on real images")
    t.add_argument("--backbone", default=d.backbone,
                   help="timm image backbone, e.g. resnet50, hrnet_w48, vit_base_patch16_224")
    t.add_argument("--backbone-weights", default=None,
                   help="local .safetensors weights of the timm backbone; default: random init")
    t.add_argument("--image-size", type=int, default=d.image_size, help="crop side in pixels")
    t.add_argument("--val-split", default=d.val_split,
                   help="split evaluated at the end (default val; without any, a fixed tenth of the images)")
    t.add_argument("--workers", type=int, default=d.workers, help="threads reading images")
    t.add_argument("--no-augment", action="store_true", help="no scale/rotation/flip/colour augmentation")
    t.add_argument("--no-amp", action="store_true", help="full precision on CUDA (default: bfloat16 autocast)")
    t.add_argument("--head-dropout", type=float, default=None, help="rotation/camera head dropout (default: preset's)")


def _mega_config(args, cls):
    from dataclasses import fields

    from training.evaluate import training_observations
    from training.mega_losses import LossWeights
    from training.mega_pretrain import default_pool_path

    values = {"out_dir": args.out, "preset": args.preset, "steps": args.steps, "batch_size": args.batch_size,
              "lr": args.lr, "base_lr": args.base_lr, "weight_decay": args.weight_decay,
              "warmup_steps": args.warmup, "masking": args.masking,
              "pool": args.pool if args.pool is not None else default_pool_path(args.body),
              "pool_size": args.pool_size, "pool_seed": args.pool_seed, "tokenizer": args.tokenizer,
              "seed": args.seed, "ckpt_every": args.ckpt_every, "log_every": args.log_every,
              "stop_at": args.stop_at, "threads": args.threads, "progress": not args.no_progress,
              "body": args.body, "model_path": args.model_path, "gender": args.gender}
    names = {f.name for f in fields(cls)}
    if "init" in names:
        values["init"] = args.init
        values["kinds"] = tuple(k.strip() for k in args.kinds.split(",") if k.strip()) if args.kinds else None
        values["reprojection_rows"] = args.reprojection_rows
        values["weights"] = LossWeights(geometry=args.geometry_weight, code_smoothing=args.code_smoothing)
        values["lifter"] = args.lifter
        if "fresh_lr_scale" in names:
            values["fresh_lr_scale"] = args.fresh_lr_scale
        if args.data is None:
            values["observation"] = training_observations("landmarks" in (values["kinds"] or ()),
                                                          args.gross_2d_errors, args.landmark_prob)
    return cls(**values)


def _report_final(final: Path) -> None:
    from training.distributed import env_rank

    if env_rank() == 0:
        what = "final checkpoint" if final.name == "final" else "checkpoint (stopped early; rerun to continue)"
        print(f"megaviewer-train: {what}: {final}", flush=True)


def _run_pretrain(args) -> int:
    from training.mega_pretrain import PretrainConfig, pretrain

    _report_final(pretrain(_mega_config(args, PretrainConfig)))
    return 0


def _run_train(args) -> int:
    if args.data is not None:
        return _run_train_dataset(args)
    from training.mega_conditioned import ConditionedConfig, train_conditioned

    args.out = args.out or "runs/mega"
    _report_final(train_conditioned(_mega_config(args, ConditionedConfig)))
    return 0


def _run_lifter(args) -> int:
    from megaviewer.model.lifter import LifterConfig
    from training.evaluate import training_observations
    from training.lifter import LifterTrainConfig, train_lifter
    from training.mega_pretrain import default_pool_path

    pool = args.pool or default_pool_path()
    if not Path(pool).exists():
        print(f"megaviewer-train lifter: no mesh pool at {pool}; pretrain or train builds one (--pool FILE)",
              file=sys.stderr)
        return 2
    observation = training_observations(False, args.gross_2d_errors)
    cfg = LifterTrainConfig(out_dir=args.out, pool=pool, steps=args.steps,
                            batch_size=args.batch_size, lr=args.lr, lifter=LifterConfig(hidden=args.hidden,
                                                                                         depth=args.depth),
                            observation=observation, seed=args.seed, stop_at=args.stop_at, threads=args.threads,
                            progress=not args.no_progress)
    _report_final(train_lifter(cfg))
    return 0


def _run_train_dataset(args) -> int:
    from dataclasses import replace

    from training.data.dataset import AugmentConfig
    from training.mega_dataset import DatasetTrainConfig, train_on_dataset

    if args.lifter:
        print("megaviewer-train train: --lifter serves synthetic keypoint training, not --data", file=sys.stderr)
        return 2
    args.out = args.out or "runs/mega_dataset"
    cfg = _mega_config(args, DatasetTrainConfig)
    cfg = replace(cfg, data=args.data, kinds=cfg.kinds or ("image",), backbone=args.backbone,
                  backbone_weights=args.backbone_weights, image_size=args.image_size, val_split=args.val_split,
                  workers=args.workers, amp=not args.no_amp, head_dropout=args.head_dropout,
                  augment=AugmentConfig(enabled=not args.no_augment))
    _report_final(train_on_dataset(cfg))
    return 0


def _run_image_path(args) -> int:
    import torch

    from training.image_path import train_image_path

    if args.threads:
        torch.set_num_threads(args.threads)
    result = train_image_path(args.out, steps=args.steps, num_images=args.num_images, seed=args.seed,
                              tokenizer=args.tokenizer, preset=args.preset, image_size=args.image_size,
                              batch_size=args.batch_size, lr=args.lr, backbone=args.backbone,
                              head_dropout=args.head_dropout,
                              progress=not args.no_progress)
    print(json.dumps({k: result[k] for k in ("initial", "final", "blind", "final_dir")}, indent=2))
    _report_final(Path(result["final_dir"]))
    return 0


COMMANDS = {"tokenizer": _run_tokenizer, "eval-tokenizer": _run_eval_tokenizer, "pretrain": _run_pretrain,
            "train": _run_train, "lifter": _run_lifter, "decoder": _run_decoder, "image-path": _run_image_path,
            "recipe": _run_recipe, "evaluate": _run_evaluate, "save-state": _run_save_state,
            "polish": _run_polish}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="megaviewer-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _tokenizer_parser(sub)
    _mega_parsers(sub)
    _recipe_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"megaviewer-train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
