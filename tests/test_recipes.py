"""Named recipes: the command line, the scripts and the recorded metrics describe the same runs."""

from __future__ import annotations

import subprocess
import sys
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


def test_every_recipe_is_a_command():
    parser = build_parser()
    for name in RECIPES:
        assert parser.parse_args(["recipe", name]).name == name


def test_train_default_script_prints_the_estimate():
    out = subprocess.run([sys.executable, "scripts/train_default.py", "--quick", "--estimate"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "recipe 'quick'" in out and "hours on a 2-core CPU" in out
