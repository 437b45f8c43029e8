"""Memory Maze 9x9 through its dm_env task API, wrapped as a gymnasium env (64x64 RGB, 6 actions)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from generalist.envs.base import TaskEnv
from generalist.envs.rendering import configure_headless_gl

configure_headless_gl()

from memory_maze import tasks as mm_tasks  # noqa: E402

PRIVILEGED_KEYS = ("agent_pos", "agent_dir", "targets_pos", "target_pos", "target_vec", "maze_layout")


class MemoryMazeEnv(TaskEnv):
    """memory-maze `memory_maze_<size>x<size>`; observation {'image': (64, 64, 3) uint8}.

    The target colour is drawn as a border in the image (upstream's default), so the image alone
    tells the agent what to look for. reset(seed=s) gives the episode of upstream's env built with seed=s.
    """

    def __init__(self, size: int = 9, render_mode: str | None = None):
        self.size = size
        self.render_mode = render_mode
        self._env = None
        self._seed_used: int | None = None
        self._ts = None
        self.observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)})
        self.action_space = gym.spaces.Discrete(6)

    def _build(self, seed: int | None):
        if self._env is not None:
            self._env.close()
        factory = getattr(mm_tasks, f"memory_maze_{self.size}x{self.size}")
        self._env = factory(seed=seed, global_observables=True)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._env is None:
            if seed is None:
                seed = int(self.np_random.integers(2**31))
            self._build(seed)
            self.action_space.seed(seed)
        self._ts = self._env.reset()
        return self._obs(self._ts), {}

    def _obs(self, ts) -> dict[str, np.ndarray]:
        return {"image": np.asarray(ts.observation["image"], dtype=np.uint8)}

    def step(self, action):
        ts = self._env.step(int(action))
        self._ts = ts
        last = ts.last()
        terminated = bool(last and ts.discount == 0.0)
        truncated = bool(last and not terminated)
        return self._obs(ts), float(ts.reward or 0.0), terminated, truncated, {}

    def render(self):
        return self._obs(self._ts)["image"]

    def privileged(self) -> dict[str, Any]:
        """Maze layout, agent and target positions (expert-only)."""
        obs = self._ts.observation
        return {k: np.asarray(obs[k]) for k in PRIVILEGED_KEYS if k in obs}

    def close(self):
        if self._env is not None:
            self._env.close()
