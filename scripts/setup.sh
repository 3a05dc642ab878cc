#!/usr/bin/env bash
# Set up a fresh machine: system libraries for Qt/VTK under X or Xvfb, a venv with megaviewer, and
# Anny's one-time cache (~2 min). Usage: bash scripts/setup.sh [--test]
#   --test  also installs the test extras (pytest, pytest-qt, pytest-xvfb, hypothesis, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_packages="xvfb xauth libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 \
 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-randr0 libxcb-xinerama0 \
 libdbus-1-3 libfontconfig1"
missing=""
for p in $apt_packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "installing system packages:$missing"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq $missing >/dev/null
fi

python3 -m venv .venv
pip_install() { .venv/bin/python -m pip install -q --no-cache-dir "$@"; }
pip_install --upgrade pip

# PyTorch first, so that the project's requirements find it satisfied. Without an NVIDIA GPU a CPU build
# does everything and is ~5 GB smaller than PyPI's default CUDA build. In order: torch 2.13.0+cpu where
# pip finds it (a wheel directory given as pip's find-links, e.g. an offline cache; PyPI's torchvision
# 0.28.0 imports beside it via megaviewer/model/timm_import.py), PyTorch's CPU index, and last PyPI's
# default build. MEGAVIEWER_TORCH=cuda skips all this; =cpu forces it with a GPU present.
torch_build="${MEGAVIEWER_TORCH:-auto}"
if [ "$torch_build" = auto ]; then
  torch_build=cpu
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && torch_build=cuda
fi
if [ "$torch_build" = cpu ] && ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if pip_install "torch==2.13.0+cpu" "torchvision==0.28.0" 2>/dev/null; then
    echo "installed torch 2.13.0+cpu"
  elif pip_install --timeout 20 --retries 1 --index-url https://download.pytorch.org/whl/cpu \
      "torch>=2.4,<=2.14.1" "torchvision>=0.19,<=0.29.1" 2>/dev/null; then  # pyproject.toml's bounds
    echo "installed torch from PyTorch's CPU index"
  else
    echo "no CPU build of torch reachable: installing PyPI's default build"
  fi
fi

extras=""
[ "$want_test" = 1 ] && extras="[test]"
pip_install -e ".${extras}"

# Anny builds its model cache on first use (~2 min, ~2 GB RAM); do it once here, keep only what it reloads.
export ANNY_CACHE_DIR="${ANNY_CACHE_DIR:-$PWD/.anny_cache}"
.venv/bin/python - <<'PY'
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    import anny
    anny.Anny(topology="notoes_collapse10pc")
print("anny cache ready")
PY
echo "setup done: .venv ready"
