"""README's measured figures are the result files' (``scripts/update_readme.py`` writes them), and the user
documentation describes the software, not how it came about."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Work-period numbers, issue talk, machine loans and the internal notes; bracketed so the line does not match itself.
HISTORY = re.compile(r"sessio[n][ -]?[0-9]|earlier sessio[n]s|this workplac[e]|was len[t]|referenc[e]-facts"
                     r"|issu[e] [0-9]|foundation issu[e]|MEGA issu[e]", re.IGNORECASE)


def _update_readme():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measured_figures_match_the_result_files() -> None:
    block = _update_readme().generated_block()
    assert block in (ROOT / "README.md").read_text(), "README is stale: run python scripts/update_readme.py"
    assert "### Targets" in block and "### Speed" in block


def test_user_documentation_tells_no_history() -> None:
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        found = [line for line in path.read_text().splitlines() if HISTORY.search(line)]
        assert not found, f"{path.name}: {found[:3]}"


def test_time_to_accuracy_target_keeps_landmark_recipes_apart() -> None:
    """A recipe that also reads the detector's 3D landmarks answers from other inputs: its speed-up gets a row of
    its own and never meets the keypoint-only target for the keypoint recipes."""
    module = _update_readme()

    def variant(speedup, landmarks):
        return {"speedup_vs_baseline": speedup, "reads_detector_landmarks": landmarks,
                "variant": {"label": "x"}, "curve": [{"steps": 1, "train_minutes": 1.0, "pa_mpjpe": 70.0}]}

    report = {"variants": {"base": variant(1.0, False), "fast": variant(1.5, False), "lm": variant(4.0, True)}}
    rows = module.targets_section(None, None, None, report).splitlines()
    alone = next(r for r in rows if "(keypoints alone)" in r)
    both = next(r for r in rows if "3D landmarks)" in r)
    assert "1.50×" in alone and alone.endswith("**no** |")
    assert "4.00×" in both and both.endswith("yes |")
    del report["variants"]["lm"]
    assert "3D landmarks)" not in module.targets_section(None, None, None, report)


def test_shipped_row_counts_every_conditioned_step() -> None:
    """The ablation's reference row gives the shipped model's conditioned steps in all: the conditioned stage, each
    warm restart, and the last warm restart once per round."""
    count = _update_readme().conditioned_steps
    assert count({"train_steps": 8_400}) == 8_400
    stage = {"train_steps": 8_400, "tail_steps": 6_000, "lifted_steps": 6_000, "polish_steps": 6_000}
    assert count(stage) == 26_400
    assert count({**stage, "polish_rounds": 6}) == 56_400


def test_speed_on_a_second_machine_says_which_targets_it_misses() -> None:
    """The same benchmark on another CPU gets a line of its own that names that CPU and marks each missed target,
    beside the first machine's table (which it does not change)."""
    module = _update_readme()

    def report(cpu, stochastic_ms, detector_ms, command):
        checks = {"stochastic": {"what": "stochastic Q=16, T=5, ms", "value": stochastic_ms, "better": "lower",
                                 "target": 150.0, "met": stochastic_ms <= 150.0}}
        return {"command": command, "environment": {"cpu_model": cpu, "torch_threads": 2}, "checks": checks,
                "results": {"detector": {"single": {"median_ms": detector_ms}}}}

    first = report("Intel", 97.0, 33.0, "scripts/bench.py --repeats 30")
    text = module.bench_section(first, None, report("AMD EPYC", 178.0, 56.0, "scripts/bench.py --out x.json"))
    line = next(r for r in text.splitlines() if r.startswith("On another 2-core CPU"))
    assert "AMD EPYC" in line and "178 (**not met**)" in line and "56 ms there against 33" in line
    assert "| stochastic Q=16, T=5, ms | 97 |" in text
    assert "On another" not in module.bench_section(first)
