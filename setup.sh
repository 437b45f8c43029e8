#!/usr/bin/env bash
# One command per job, on a fresh Debian/Ubuntu machine with Python 3.11:
#   ./setup.sh main   install, then collect a small dataset for a few tasks and print a summary
#   ./setup.sh test   install with test extras, then run the test suite
# Idempotent: system GL libraries and the virtualenv are only installed when missing.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-main}"
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3.11}"

# Headless MuJoCo rendering needs EGL (or OSMesa) from the system.
need=()
for pkg in libegl1 libgl1 libegl-mesa0 libgles2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}"
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/pip"
# torch first, pinned: a plain `torch` resolves to the newest multi-GB CUDA build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$pip" install -q "torch==${TORCH_VERSION:-2.13.0}"

case "$job" in
  main)
    "$pip" install -q -e .
    exec "$VENV/bin/generalist" collect atari-pong memorymaze-9x9 dmc-cartpole-swingup metaworld-reach \
      --episodes 2 --workers 2 --out "${OUT:-data/quick}" --resume
    ;;
  test)
    "$pip" install -q -e ".[test]"
    exec "$VENV/bin/python" -m pytest -m "not slow" -q "${@:2}"
    ;;
  *)
    echo "usage: ./setup.sh main|test" >&2; exit 2 ;;
esac
