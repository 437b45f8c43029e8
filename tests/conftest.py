"""Shared test helpers: run the CLI in a subprocess like a user would."""

from __future__ import annotations

import os
import subprocess
import sys

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
