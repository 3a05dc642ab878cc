"""Named recipes: the command line, the scripts and the recorded metrics describe the same runs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from training.cli import build_parser
from training.mega_pretrain import PretrainConfig
from training.recipes import RECIPES, get_recipe
from training.tokenizer import TokenizerTrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_recipes_build_their_stage_configs():
    default = get_recipe("default")
    cfg = default.tokenizer.train_config("runs/x", threads=1)
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.prior) == (default.tokenizer.steps, default.tokenizer.batch_size,
                                                              default.tokenizer.lr, "motion")
    assert cfg.tokenizer.residual_scale == default.tokenizer.residual_scale
    assert cfg.tokenizer.channels == list(default.tokenizer.channels)
    assert get_recipe("baseline").tokenizer.prior == "keyposes" and get_recipe("baseline").mega.pool_prior == "keyposes"
    with pytest.raises(KeyError, match="unknown recipe"):
        get_recipe("nope")


def test_previous_defaults_differ_from_the_default_in_the_tokenizer_only():
    default, dense, even = (get_recipe(n) for n in ("default", "dense_extremities", "even_extremities"))
    assert even.tokenizer == replace(dense.tokenizer, extremity_density=1.0)
    assert (even.mega, even.decoder) == (dense.mega, dense.decoder)
    assert dense.tokenizer.train_config("runs/x").tokenizer.extremity_density == 2.0
    assert even.tokenizer.train_config("runs/x").tokenizer.extremity_density == 1.0
    assert dense.tokenizer.train_config("runs/x").tokenizer.num_tokens == 54
    assert dense.tokenizer == replace(default.tokenizer, extremity_density=2.0, extremity_weight=1.0, tokens=54,
                                      seconds_per_step=dense.tokenizer.seconds_per_step)
    timings = ("pretrain_seconds_per_step", "train_seconds_per_step", "lifter_seconds_per_step")
    assert dense.mega == replace(default.mega, **{t: getattr(dense.mega, t) for t in timings})
    assert dense.decoder == default.decoder


def test_default_tokenizer_spends_more_on_the_hands_and_feet_and_reaches_its_training():
    default = get_recipe("default")
    train = default.tokenizer.train_config("runs/x")
    assert train.extremity_weight == 2.0 and get_recipe("dense_extremities").tokenizer.extremity_weight == 1.0
    assert train.tokenizer.extremity_density == 3.0
    quick = get_recipe("quick").tokenizer.train_config("runs/x")
    assert train.tokenizer.level_sizes[:-1] == quick.tokenizer.level_sizes[:-1]
    assert train.tokenizer.num_tokens == 64


def test_tokenizer_command_with_the_recipes_flags_builds_the_recipes_config():
    """README's single-stage command reproduces the default recipe's tokenizer stage."""
    from training.tokenizer import config_from_args

    t = get_recipe("default").tokenizer
    args = build_parser().parse_args(["tokenizer", "--out", "runs/x", "--steps", str(t.steps), "--batch-size",
                                      str(t.batch_size), "--lr", str(t.lr), "--channels", "16,32,64",
                                      "--residual-scale", "5", "--extremity-density", "3", "--extremity-weight",
                                      "2", "--tokens", "64", "--prior", "motion", "--chunk-size", "4096"])
    from_cli, from_recipe = config_from_args(args), t.train_config("runs/x")
    assert from_cli.tokenizer == from_recipe.tokenizer
    assert (from_cli.extremity_weight, from_cli.prior, from_cli.chunk_size, from_cli.steps) == (
        from_recipe.extremity_weight, from_recipe.prior, from_recipe.chunk_size, from_recipe.steps)


def test_quick_recipe_fits_ninety_minutes_by_its_own_estimate():
    assert get_recipe("quick").estimated_hours() <= 1.5
    assert get_recipe("default").estimated_hours() > get_recipe("quick").estimated_hours()


def test_cli_defaults_are_the_configs_defaults():
    parser = build_parser()
    tok = parser.parse_args(["tokenizer"])
    d = TokenizerTrainConfig()
    assert (tok.steps, tok.batch_size, tok.lr, tok.ckpt_every, tok.prior, tok.chunk_size) == (
        d.steps, d.batch_size, d.lr, d.ckpt_every, d.prior, d.chunk_size)
    pre = parser.parse_args(["pretrain"])
    p = PretrainConfig()
    assert (pre.preset, pre.steps, pre.batch_size, pre.warmup, pre.masking, pre.weight_decay) == (
        p.preset, p.steps, p.batch_size, p.warmup_steps, p.masking, p.weight_decay)
    from training.decoder import DecoderTrainConfig
    from training.evaluate import TRAINING_LANDMARK_PROB
    from training.lifter import LifterTrainConfig

    lift, f = parser.parse_args(["lifter"]), LifterTrainConfig()
    assert (lift.out, lift.steps, lift.batch_size, lift.lr, lift.hidden, lift.depth, lift.seed) == (
        f.out_dir, f.steps, f.batch_size, f.lr, f.lifter.hidden, f.lifter.depth, f.seed)
    dec, c = parser.parse_args(["decoder"]), DecoderTrainConfig()
    assert (dec.out, dec.steps, dec.batch_size, dec.lr, dec.extremity_weight, dec.chunk_size) == (
        c.out_dir, c.steps, c.batch_size, c.lr, c.extremity_weight, c.chunk_size)
    assert parser.parse_args(["train"]).landmark_prob == TRAINING_LANDMARK_PROB


def test_every_recipe_is_a_command():
    parser = build_parser()
    for name in RECIPES:
        assert parser.parse_args(["recipe", name]).name == name


def test_train_default_script_prints_the_estimate():
    out = subprocess.run([sys.executable, "scripts/train_default.py", "--quick", "--estimate"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "recipe 'quick'" in out and "hours on a 2-core CPU" in out


def test_default_recipe_ends_with_a_warm_restart_with_fewer_landmarks():
    """The tail stage continues the conditioned stage's final weights with its own learning rate, warm-up and
    share of people with landmarks, everything else as the conditioned stage; its checkpoints are saved state."""
    from training.run_recipe import STAGES, conditioned_config

    m = get_recipe("default").mega
    runs = Path("runs/default")
    common = dict(preset=m.preset, batch_size=m.batch_size, lr=m.lr, pool="pool", tokenizer="tok", threads=1,
                  ckpt_every=m.ckpt_every, warmup_steps=m.warmup_steps)
    main = conditioned_config(m, runs, runs / "pretrain" / "final", common)
    tail = conditioned_config(m, runs, runs / "conditioned" / "final", common, stage="tail")
    assert (main.steps, main.lr, main.warmup_steps, main.observation.landmark_prob) == (m.train_steps, m.lr,
                                                                                       m.warmup_steps, 0.8)
    assert (tail.steps, tail.lr, tail.warmup_steps) == (m.tail_steps, m.tail_lr, m.tail_warmup_steps) != (
        main.steps, main.lr, main.warmup_steps)
    assert tail.observation.landmark_prob == m.tail_landmark_prob < main.observation.landmark_prob
    assert tail.init == str(runs / "conditioned" / "final") and tail.out_dir == str(runs / "tail")
    assert tail.observation.outlier_prob == main.observation.outlier_prob > 0  # the detector's gross errors kept
    assert (tail.kinds, tail.masking, tail.reprojection_rows) == (main.kinds, main.masking, main.reprojection_rows)
    assert "tail" in STAGES and tail.lifter is None
    assert get_recipe("quick").mega.tail_steps == 0  # recipes without one end at the conditioned stage
    # The second warm restart: from the tail's final weights, with the trained lifter inside the model.
    lifter = runs / "lifter" / "final"
    lifted = conditioned_config(m, runs, runs / "tail" / "final", common, stage="lifted", lifter=lifter)
    assert (lifted.steps, lifted.lr, lifted.lifter) == (m.lifted_steps, m.lifted_lr, str(lifter))
    assert lifted.observation.landmark_prob == m.lifted_landmark_prob and lifted.out_dir == str(runs / "lifted")
    assert (lifted.kinds, lifted.observation.outlier_prob) == (main.kinds, main.observation.outlier_prob)
    assert STAGES[-4:-2] == ("lifter", "lifted") and get_recipe("quick").mega.lifter_steps == 0
    # The third: from the second's final weights, the same data and lifter, at its own learning rate.
    polish = conditioned_config(m, runs, runs / "lifted" / "final", common, stage="polish", lifter=lifter)
    assert (polish.steps, polish.lr, polish.init) == (m.polish_steps, m.polish_lr, str(runs / "lifted" / "final"))
    assert (polish.lifter, polish.observation, polish.kinds) == (lifted.lifter, lifted.observation, lifted.kinds)
    assert polish.out_dir == str(runs / "polish") and STAGES[-2] == "polish" and m.polish_steps > 0


def test_default_recipe_sharpens_the_decoder_last():
    """The decoder stage fine-tunes the trained tokenizer (its token ids unchanged), after every MEGA stage."""
    from training.run_recipe import STAGES

    default, quick = get_recipe("default"), get_recipe("quick")
    assert STAGES[-1] == "decoder" and quick.decoder is None and "decoder" not in quick.estimated_minutes()
    cfg = default.decoder.train_config("runs/default/decoder", "runs/default/tokenizer/final", threads=1)
    assert (cfg.init, cfg.steps, cfg.lr, cfg.extremity_weight) == ("runs/default/tokenizer/final",
                                                                   default.decoder.steps, default.decoder.lr,
                                                                   default.decoder.extremity_weight)
    assert cfg.extremity_weight > 1 and default.estimated_minutes()["decoder"] > 0


def test_the_shipped_models_record_the_default_recipe_and_its_tokenizer():
    """The shipped metrics, the shipped tokenizer and ``recipes.py`` must describe the same run."""
    recipe = get_recipe("default")
    metrics = json.loads((ROOT / "resources" / "default" / "metrics.json").read_text())
    assert metrics["recipe"] == json.loads(json.dumps(recipe.to_dict()))
    tokenizer = json.loads((ROOT / "resources" / "tokenizer" / "config.json").read_text())
    stage = recipe.tokenizer
    assert (tokenizer["extremity_density"], tokenizer["residual_scale"], tokenizer["channels"]) == (
        stage.extremity_density, stage.residual_scale, list(stage.channels))
    assert json.loads((ROOT / "resources" / "tokenizer" / "metrics.json").read_text())["steps"] == stage.steps


def test_rounds_of_the_last_warm_restart_have_their_own_folder_seed_and_estimate(tmp_path):
    """Round r of the last warm restart continues round r - 1 in ``polish_<r>`` with data seed r - 1; the first is
    the recipe's ``polish`` stage as before; the estimate and the saved state count every round."""
    from training.run_recipe import conditioned_config, polish_label, polish_stage, save_state

    default = get_recipe("default")
    m = replace(default.mega, polish_rounds=3)
    runs = tmp_path / "runs"
    common = dict(preset=m.preset, batch_size=m.batch_size, lr=m.lr, pool="pool", tokenizer="tok", threads=1,
                  ckpt_every=m.ckpt_every, warmup_steps=m.warmup_steps)
    first = conditioned_config(m, runs, runs / "lifted" / "final", common, stage="polish", lifter=runs / "lifter")
    third = conditioned_config(m, runs, runs / "polish_2" / "final", common, stage="polish", lifter=runs / "lifter",
                               polish_round=3)
    assert (first.out_dir, first.seed) == (str(runs / "polish"), 0) and polish_stage(1) == "polish"
    assert (third.out_dir, third.seed, third.init) == (str(runs / "polish_3"), 2, str(runs / "polish_2" / "final"))
    assert replace(third, out_dir=first.out_dir, seed=first.seed, init=first.init) == first
    assert polish_label(1) == "third warm restart" and polish_label(3) == "warm restart 5"
    with pytest.raises(ValueError):
        polish_stage(0)
    grown = replace(default, mega=m).estimated_minutes()
    assert grown["further warm restarts"] == 2 * grown["third warm restart"]
    assert default.estimated_minutes()["further warm restarts"] == 5 * grown["third warm restart"]
    assert "further warm restarts" not in replace(default, mega=replace(m, polish_rounds=1)).estimated_minutes()
    # save-state snapshots each round's latest checkpoint beside the recipe's stages
    for stage in ("polish", "polish_2", "polish_10"):
        ckpt = runs / stage / "checkpoints" / "step-00000002"
        ckpt.mkdir(parents=True)
        (ckpt / "trainer_state.json").write_text('{"step": 2, "loop_config": {"total_steps": 4}}')
        (runs / stage / "checkpoints" / "last.json").write_text('{"folder": "step-00000002"}')
    assert list(save_state(runs, tmp_path / "state")) == ["polish", "polish_2", "polish_10"]
    args = build_parser().parse_args(["polish", "--rounds", "4", "--state", "resources/training_state/default"])
    assert (args.recipe, args.rounds, args.install, args.model) == ("default", 4, False, None)
