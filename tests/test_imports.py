"""The runtime package stands on its own: importing any ``megaviewer`` module loads neither the training
package nor the benchmarks, so an installed app never needs what only training or measuring uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter: this pytest process has imported ``training`` through other tests already.
_SCRIPT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
outside = sorted(m for m in sys.modules if m.split(".")[0] in ("training", "benchmarks"))
print(json.dumps({"imported": len(sys.argv) - 1, "outside": outside}))
"""


def runtime_modules() -> list[str]:
    """Every module of the ``megaviewer`` source tree, by file (packages by their ``__init__``)."""
    names = []
    for path in sorted((ROOT / "megaviewer").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_megaviewer_never_imports_training_or_benchmarks() -> None:
    names = runtime_modules()
    assert {"megaviewer.engine", "megaviewer.cli", "megaviewer.gui.app", "megaviewer.tokenizer.model"} <= set(names)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, *names], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["imported"] == len(names)
    assert report["outside"] == [], f"megaviewer imported {report['outside']}"
