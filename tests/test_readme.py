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
