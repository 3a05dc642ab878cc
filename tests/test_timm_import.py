"""import_torchvision: declares the two operators a CUDA torchvision wheel beside a CPU torch lacks, only then.

Each case runs in a subprocess with a stand-in ``torchvision`` package first on ``sys.path``: operator
declarations are process-global, and the real torchvision must not be touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

NEEDS_OPERATORS = """
import torch
for name in ("nms", "qnms"):
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        raise RuntimeError(f"operator torchvision::{name} does not exist")
"""
BROKEN_OTHERWISE = 'raise RuntimeError("something else is wrong with this torchvision")\n'
HEALTHY = "VERSION = 'fake'\n"

PROBE = """
import json, sys
from megaviewer.model.timm_import import import_torchvision
try:
    module, declared = import_torchvision()
    print(json.dumps({"declared": declared, "file": module.__file__}))
except RuntimeError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def run_probe(tmp_path: Path, package_source: str) -> dict:
    package = tmp_path / "torchvision"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(package_source))
    repo_root = Path(__file__).resolve().parents[1]
    env_path = f"{tmp_path}:{repo_root}"
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_missing_operators_are_declared_and_the_import_retried(tmp_path):
    result = run_probe(tmp_path, NEEDS_OPERATORS)
    assert result["declared"] == ["nms", "qnms"]
    assert result["file"].startswith(str(tmp_path))


def test_a_healthy_torchvision_is_imported_untouched(tmp_path):
    assert run_probe(tmp_path, HEALTHY)["declared"] == []


def test_any_other_import_error_propagates(tmp_path):
    assert run_probe(tmp_path, BROKEN_OTHERWISE) == {"error": "something else is wrong with this torchvision"}


def test_timm_builds_a_backbone_in_this_environment():
    import torch

    from megaviewer.model.timm_import import import_timm

    model = import_timm().create_model("resnet18", pretrained=False, num_classes=0)
    assert model.forward_features(torch.zeros(1, 3, 64, 64)).shape[:2] == (1, 512)
