"""Headless GL: whichever project module imports dm_control/mujoco first, they get EGL or OSMesa.

dm_control picks its GL backend once, when imported; with MUJOCO_GL unset it takes glfw, which has no
display here and aborts the process on the first rendered frame (CI once died that way after a test
module imported generalist.envs.maze_speedups at collection).
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys

import pytest

import generalist

MODULES = sorted(m.name for m in pkgutil.walk_packages(generalist.__path__, "generalist."))


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(("generalist.envs", "generalist.experts"))])
def test_importing_a_module_never_leaves_dm_control_on_glfw(module):
    probe = (f"import importlib, sys; importlib.import_module({module!r}); "
             "r = sys.modules.get('dm_control._render'); print(r.BACKEND if r else 'none')")
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] in ("none", "egl", "osmesa"), f"{module} left dm_control on {res.stdout.strip()}"
