"""Training needs no simulator: `generalist train` runs where MuJoCo, dm-control, Meta-World, memory-maze
and ALE cannot be imported, both installed and from a bare copy of the source tree.

The packages are installed here, so they are hidden instead, two ways:
- installed package: a `sitecustomize.py` (which Python imports at start-up from the first directory on
  PYTHONPATH holding one) puts a finder at the front of `sys.meta_path` that refuses them, and the extras
  training must not need either (wandb, matplotlib, Pillow, OpenCV, the old gym, Minari). It records every
  refused import and writes them to a JSON file when the process exits. DataLoader workers are forked
  and inherit the finder.
- bare checkout: `python -S` (no site-packages, no .pth files, so no editable install of generalist)
  with PYTHONPATH = a copy of the source tree + a folder linking only torch, numpy, h5py, safetensors,
  tqdm, gymnasium and what they require from this virtualenv: every other package is simply absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import torch_only_site

import generalist
from generalist import envs
from generalist.datasets.collect import CollectConfig, collect

SIMULATORS = ("mujoco", "dm_control", "metaworld", "memory_maze", "ale_py")
EXTRAS = ("wandb", "matplotlib", "PIL", "cv2", "gym", "minari")
SOURCE = Path(generalist.__file__).resolve().parents[1]  # the tree under test (a checkout or worktree)

BLOCKER = '''
"""Test-only start-up hook: refuse simulator (and extra) imports, as on a torch-only training node."""
import atexit, json, os, sys

BLOCKED = set(os.environ["SIMFREE_BLOCK"].split(","))
refused = []


class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            refused.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the simulator-free test)", name=name)
        return None


sys.meta_path.insert(0, _Refuse())


@atexit.register
def _report():  # forked DataLoader workers leave through os._exit: only the main process writes this
    g = sys.modules.get("generalist")
    with open(os.environ["SIMFREE_REPORT"], "w") as f:
        json.dump({"refused": refused, "generalist": getattr(g, "__file__", None)}, f)
'''

ARGS = ["--steps", "3", "--batch", "4", "--context", "24", "--eval-every", "3", "--obs-encoding", "vector",
        "--hide-actions", "--action-loss", "hlgauss", "--workers", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two state tasks, collected with the real simulators (2 episodes each: one is held out)."""
    root = tmp_path_factory.mktemp("data")
    collect(CollectConfig(tasks=["dmc-cartpole-swingup", "metaworld-reach"], episodes=2, out=root))
    return root


def _blocked_train(tmp: Path, pythonpath: str, data: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m generalist train` in a fresh process with the blocker on PYTHONPATH; its result and report."""
    hook = tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCKER)
    report = tmp / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=f"{hook}{os.pathsep}{pythonpath}", SIMFREE_BLOCK=",".join(SIMULATORS + EXTRAS),
               SIMFREE_REPORT=str(report))
    res = subprocess.run([sys.executable, "-m", "generalist", "train", "--data", str(data), "--out", str(tmp / "run"), *ARGS],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp)
    return res, (json.loads(report.read_text()) if report.exists() else {})


def test_blocker_blocks(tmp_path):
    """The hook really makes the simulators unimportable (else the tests below prove nothing)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(hook), "SIMFREE_BLOCK": ",".join(SIMULATORS),
           "SIMFREE_REPORT": str(tmp_path / "r.json")}
    for name in SIMULATORS:
        res = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, env=env)
        assert res.returncode != 0 and "blocked by the simulator-free test" in res.stderr, name


def test_train_without_simulators(data, tmp_path):
    """The installed package trains with every simulator (and extra) unimportable, and tries none."""
    res, report = _blocked_train(tmp_path, str(SOURCE), data)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "done:" in res.stdout
    assert not [n for n in report["refused"] if n.split(".")[0] in SIMULATORS], report
    assert (tmp_path / "run" / "checkpoints" / "step_00000003" / "model.safetensors").exists()


def test_train_from_a_bare_checkout(data, tmp_path):
    """`python -S -m generalist train` from a copy of the source tree, only torch, numpy, h5py, safetensors,
    tqdm and gymnasium (and their requirements) on the path: a cluster node without `pip install -e .`."""
    checkout = tmp_path / "checkout"
    shutil.copytree(SOURCE / "generalist", checkout / "generalist",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    site = torch_only_site(tmp_path / "site")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
           "PYTHONPATH": f"{checkout}{os.pathsep}{site}"}
    probe = "import generalist, importlib.util as u; print(generalist.__file__); print([m for m in %r if u.find_spec(m)])"
    res = subprocess.run([sys.executable, "-S", "-c", probe % (SIMULATORS + EXTRAS,)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    where, found = res.stdout.splitlines()
    assert Path(where).resolve().is_relative_to(checkout.resolve()) and found == "[]", res.stdout
    res = subprocess.run([sys.executable, "-S", "-m", "generalist", "train", "--data", str(data), "--out",
                          str(tmp_path / "run"), *ARGS], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "step_00000003" / "model.safetensors").exists()


def test_envs_lists_tasks_without_simulators(tmp_path):
    """`generalist envs` reads the declared spaces: it too works without any simulator."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{SOURCE}", "SIMFREE_BLOCK": ",".join(SIMULATORS),
           "SIMFREE_REPORT": str(tmp_path / "r.json")}
    res = subprocess.run([sys.executable, "-m", "generalist", "envs", "--json"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert [r["name"] for r in json.loads(res.stdout)] == envs.task_names()  # all 65, no simulator imported
