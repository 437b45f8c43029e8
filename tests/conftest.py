"""Shared test helpers: run the CLI in a subprocess like a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m generalist ARGS` with captured output."""
    return subprocess.run([sys.executable, "-m", "generalist", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def cli():
    return run_cli


# A torch-only node (a GPU cluster's training image): what training needs, what gymnasium adds, and
# torch's own requirements.
TORCH_ONLY = ("torch", "torchgen", "functorch", "numpy", "h5py", "safetensors", "tqdm", "gymnasium", "cloudpickle",
              "farama_notifications", "typing_extensions", "filelock", "setuptools", "sympy", "mpmath", "networkx",
              "jinja2", "markupsafe", "fsspec")


def torch_only_site(where: Path) -> Path:
    """A folder of links to TORCH_ONLY's packages (with their .libs and .dist-info) in this virtualenv:
    with `python -S` and PYTHONPATH pointing here, every other installed package is absent."""
    site = Path(numpy.__file__).resolve().parents[1]  # site-packages
    where.mkdir()
    for entry in site.iterdir():
        stem = entry.name.split("-")[0].removesuffix(".libs").removesuffix(".py")
        if stem in TORCH_ONLY:
            (where / entry.name).symlink_to(entry)
    return where


# The suite's first 11 tasks are tested on every run; of the tasks added for breadth (every maze size, all of
# Meta-World's MT50, the planner's DMC tasks) a fixed sample is, and the rest only with `-m slow`, to keep the
# default run short.
CORE_TASKS = ("atari-pong", "atari-breakout", "memorymaze-9x9", "dmc-cartpole-swingup", "dmc-reacher-easy",
              "dmc-walker-walk", "metaworld-reach", "metaworld-push", "metaworld-pick-place", "metaworld-door-open",
              "metaworld-drawer-open")
BREADTH_SAMPLE = ("memorymaze-11x11", "metaworld-assembly", "metaworld-peg-insert-side", "metaworld-window-open",
                  "dmc-cheetah-run", "dmc-pendulum-swingup")


def sampled(tasks) -> list:
    """pytest params for `tasks`: the core tasks and the breadth sample as they are, the others marked slow."""
    return [pytest.param(t, marks=() if t in CORE_TASKS + BREADTH_SAMPLE else pytest.mark.slow) for t in tasks]
