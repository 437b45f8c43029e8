"""Headless MuJoCo rendering: pick EGL, else OSMesa, before MuJoCo is imported."""

from __future__ import annotations

import ctypes.util
import os

from generalist.errors import GeneralistError

SYSTEM_PACKAGES = "libegl1 libgl1 libegl-mesa0 libgles2 (EGL) or libosmesa6 (OSMesa)"


class RenderingUnavailable(GeneralistError, RuntimeError):
    """No headless OpenGL backend could be found."""


def configure_headless_gl() -> str:
    """Set MUJOCO_GL (and PYOPENGL_PLATFORM) to a backend this machine has; return its name.

    Respects a MUJOCO_GL the user already set. Must run before `mujoco`/`dm_control` import.
    """
    chosen = os.environ.get("MUJOCO_GL")
    if not chosen:
        if ctypes.util.find_library("EGL"):
            chosen = "egl"
        elif ctypes.util.find_library("OSMesa"):
            chosen = "osmesa"
        else:
            raise RenderingUnavailable(
                "MuJoCo needs a headless OpenGL library and none was found. Install the system packages "
                f"{SYSTEM_PACKAGES}, e.g. `sudo apt-get install -y libegl1 libgl1 libegl-mesa0 libgles2`."
            )
        os.environ["MUJOCO_GL"] = chosen
    if chosen in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen


def fast_render_settings(model) -> None:
    """Turn off shadows and multisampling: 4-8x faster on a CPU (software) renderer."""
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
