"""DeepMind Control Suite tasks from state: the observation dict flattened into one float32 vector."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from generalist.envs.base import TaskEnv
from generalist.envs.rendering import configure_headless_gl, fast_render_settings
from generalist.envs.spec import Display, box_actions, require_same, state_space

# (domain, task) -> (state size, action size): dm_control's flattened observation and its action spec.
# Declared so that the spaces are known without importing dm_control; DMCEnv checks them on construction.
SIZES: dict[tuple[str, str], tuple[int, int]] = {
    ("cartpole", "swingup"): (5, 1),
    ("reacher", "easy"): (6, 2),
    ("walker", "walk"): (24, 6),
}
# Tasks whose expert is the generic planner (experts/mpc.py, which holds their budgets), with their sizes;
# the registry adds them after the others, in this order.
_PLANNED_SIZES: dict[tuple[str, str], tuple[int, int]] = {
    ("cartpole", "balance"): (5, 1),
    ("point_mass", "easy"): (4, 2),
    ("reacher", "hard"): (6, 2),
    ("pendulum", "swingup"): (3, 1),
    ("finger", "turn_easy"): (12, 2),
    ("cheetah", "run"): (17, 6),
}
SIZES.update(_PLANNED_SIZES)
PLANNED = tuple(_PLANNED_SIZES)

DISPLAY = Display(color="#55A868", video_stride=4, sized_render=True)  # renders at render_size

def spaces(domain: str, task: str) -> tuple[gym.spaces.Dict, gym.spaces.Box]:
    """The observation and action spaces of `domain/task`, without importing dm_control."""
    n_obs, n_act = SIZES[(domain, task)]
    return state_space(n_obs), box_actions(n_act)


def _suite() -> Any:
    """dm_control.suite, imported on first use (after choosing a headless GL backend)."""
    configure_headless_gl()
    from dm_control import suite

    return suite


class DMCEnv(TaskEnv):
    """dm_control `domain/task`; observation {'state': float32 (n,)}, actions in [-1, 1]."""

    def __init__(self, domain: str, task: str, render_mode: str | None = None, render_size: int = 64):
        self._env = _suite().load(domain, task, task_kwargs={"random": 0})
        self.domain, self.task_name = domain, task
        self.render_mode = render_mode
        self.render_size = render_size
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.observation_space, self.action_space = spaces(domain, task)
        n = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        require_same(f"dmc {domain}/{task} state", self.observation_space["state"].shape[0], n)
        require_same(f"dmc {domain}/{task} action", self.action_space.shape[0], int(np.prod(spec.shape)))
        fast_render_settings(self._env.physics.model)
        self._t = 0

    @property
    def physics(self):
        """The MuJoCo physics (expert-only)."""
        return self._env.physics

    def _obs(self, timestep) -> dict[str, np.ndarray]:
        parts = [np.asarray(v, dtype=np.float32).ravel() for v in timestep.observation.values()]
        return {"state": np.concatenate(parts)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            # Same episode as `suite.load(..., task_kwargs={"random": seed})`, without rebuilding.
            self._env.task._random = np.random.RandomState(seed)
            self.action_space.seed(seed)
        ts = self._env.reset()
        self._t = 0
        return self._obs(ts), {}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        a = self._low + (a + 1.0) * 0.5 * (self._high - self._low)
        ts = self._env.step(a)
        self._t += 1
        last = ts.last()
        terminated = bool(last and ts.discount == 0.0)
        truncated = bool(last and not terminated)
        return self._obs(ts), float(ts.reward or 0.0), terminated, truncated, {}

    def render(self):
        return self._env.physics.render(self.render_size, self.render_size, camera_id=0)

    def privileged(self) -> dict[str, Any]:
        """The MuJoCo physics, the physics steps per env step and the task, whose reward planners read (expert-only)."""
        return {"physics": self._env.physics, "n_sub_steps": self._env._n_sub_steps, "task": self._env.task}

    def close(self):
        self._env.close()
