#!/usr/bin/env bash
# One command per job, on a fresh Debian/Ubuntu machine with Python 3.11:
#   ./setup.sh main   install, then run the quick suite: collect -> train -> eval -> report (~29 min, 2 cores)
#   ./setup.sh test   install with test extras (and chromium, for the report check), then run the tests
# Idempotent: system packages and the virtualenv are only installed when missing.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-main}"
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3.11}"

# Headless MuJoCo rendering needs EGL (or OSMesa) from the system; the tests open a report in chromium.
pkgs=(libegl1 libgl1 libegl-mesa0 libgles2)
if [ "$job" = test ]; then pkgs+=(chromium); fi
need=()
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/pip"
# torch first, pinned: a plain `torch` resolves to the newest multi-GB CUDA build.
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$pip" install -q "torch==${TORCH_VERSION:-2.13.0}"

case "$job" in
  main)
    "$pip" install -q -e .
    exec "$VENV/bin/generalist" run --suite quick --out "${OUT:-runs/quick}" "${@:2}"
    ;;
  test)
    "$pip" install -q -e ".[test]"
    exec "$VENV/bin/python" -m pytest -m "not slow" -q "${@:2}"
    ;;
  *)
    echo "usage: ./setup.sh main|test" >&2; exit 2 ;;
esac
