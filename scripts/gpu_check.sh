#!/usr/bin/env bash
# The prepared GPU check (README, "Training on a GPU"): one command on a lent GPU machine, <= 8 minutes.
#
#   scripts/gpu_check.sh             # train small (+ base if time allows), bf16, eager and --compile;
#                                    # numbers and a bf16 checkpoint in shards of <= 15 MiB go to $OUT
#   scripts/gpu_check.sh --dry-run   # the same path on CPU with tiny and a few steps (the tests run this)
#
# Needs only torch, numpy, h5py, safetensors, tqdm and gymnasium: no simulator, no `pip install -e .`
# (the checkout is put on PYTHONPATH). gymnasium and the two packages it adds to a torch install come
# as wheels in the git-ignored .whl/ (made here with the command in README); when gymnasium is missing
# they are installed offline into a scratch folder put on PYTHONPATH. Other flags go to scripts/gpu_check.py (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
DEPS="${TMPDIR:-/tmp}/gpu_check_deps"  # the wheels go here, not into the system's Python (PEP 668)
if ! "$PYTHON" -c "import gymnasium" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "gpu_check: error: gymnasium is not installed and .whl/ holds no wheels (see README)" >&2
        exit 2
    fi
    if "$PYTHON" -m pip --version >/dev/null 2>&1; then
        "$PYTHON" -m pip install --quiet --upgrade --no-deps --no-index --target "$DEPS" .whl/*.whl
    else  # pure-Python wheels are zip files of importable trees
        "$PYTHON" -c "import glob, sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in glob.glob('.whl/*.whl')]" "$DEPS"
    fi
    export PYTHONPATH="$DEPS${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" scripts/gpu_check.py "$@"
