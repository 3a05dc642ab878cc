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
.venv/bin/python -m pip install -q --upgrade pip
extras=""
[ "$want_test" = 1 ] && extras="[test]"
.venv/bin/python -m pip install -q -e ".${extras}"

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
