"""The one task API: a gymnasium.Env with a Dict observation and privileged state for experts."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from generalist.envs.spec import TaskSpec


class TaskEnv(gym.Env):
    """Base of every suite task.

    `observation_space` is a `Dict` with `image` (uint8 HxWxC) and/or `state` (float32); the action
    space is `Discrete(n)` or a `Box` in [-1, 1]. `privileged()` returns what an expert may use and
    the agent never sees (RAM, maze layout, physics state); it is never part of the observation.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    task: TaskSpec

    def privileged(self) -> dict[str, Any]:
        """Expert-only information about the current state."""
        return {}
