"""Meta-World v3 single-task environments with the goal observable (39-d state, 4-d action).

We use Meta-World's goal-observable variants: with the goal hidden (MT1's default) an imitation agent
without reward input could not know where to reach. Each seed draws its own object and goal positions.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from generalist.envs.base import TaskEnv
from generalist.envs.rendering import configure_headless_gl, fast_render_settings
from generalist.envs.spec import Display, box_actions, require_same, state_space

STATE_SIZE, ACTION_SIZE = 39, 4  # every v3 task: hand, gripper, two objects, goal (x2 frames); xyz + grip

DISPLAY = Display(color="#C44E52", video_stride=2, sized_render=True)  # renders at render_size

# Meta-World v3's 50 tasks (MT50), named as upstream's `<task>-v3-goal-observable` envs and its
# `policies.ENV_POLICY_MAP` keys without the suffix; tests/test_breadth.py checks this list
# against the installed metaworld, so the registry can declare every task without importing it.
MT50 = (
    "assembly", "basketball", "bin-picking", "box-close", "button-press", "button-press-topdown",
    "button-press-topdown-wall", "button-press-wall", "coffee-button", "coffee-pull", "coffee-push",
    "dial-turn", "disassemble", "door-close", "door-lock", "door-open", "door-unlock", "drawer-close",
    "drawer-open", "faucet-close", "faucet-open", "hammer", "hand-insert", "handle-press",
    "handle-press-side", "handle-pull", "handle-pull-side", "lever-pull", "peg-insert-side",
    "peg-unplug-side", "pick-out-of-hole", "pick-place", "pick-place-wall", "plate-slide",
    "plate-slide-back", "plate-slide-back-side", "plate-slide-side", "push", "push-back", "push-wall",
    "reach", "reach-wall", "shelf-place", "soccer", "stick-pull", "stick-push", "sweep", "sweep-into",
    "window-close", "window-open",
)

def spaces() -> tuple[gym.spaces.Dict, gym.spaces.Box]:
    """The observation and action spaces of every Meta-World task, without importing metaworld."""
    return state_space(STATE_SIZE), box_actions(ACTION_SIZE)


def _metaworld() -> Any:
    """The metaworld package, imported on first use (after choosing a headless GL backend)."""
    configure_headless_gl()
    import metaworld

    return metaworld


class MetaWorldEnv(TaskEnv):
    """One Meta-World v3 task (e.g. 'reach'); reports `success` in every step's info."""

    def __init__(self, task: str, render_mode: str | None = None, render_size: int = 64):
        env_id = f"{task}-v3-goal-observable"
        cls = _metaworld().ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[env_id]
        self._env = cls(
            seed=0,
            render_mode="rgb_array" if render_mode == "rgb_array" else None,
        )
        if render_mode == "rgb_array":
            self._env.width = self._env.height = render_size
            # the renderer was built at Meta-World's 480x480 during construction; 10x fewer pixels to draw
            self._env.mujoco_renderer.width = self._env.mujoco_renderer.height = render_size
            self._env.camera_name = "corner"
        self._env._freeze_rand_vec = False
        self._env.seeded_rand_vec = True
        fast_render_settings(self._env.model)
        self.task_name = task
        self.render_mode = render_mode
        self.max_episode_steps = int(self._env.max_path_length)
        self.observation_space, self.action_space = spaces()
        require_same(f"metaworld {task} state", STATE_SIZE, self._env.observation_space.shape[0])
        require_same(f"metaworld {task} action", ACTION_SIZE, self._env.action_space.shape[0])
        self._last_obs = np.zeros(STATE_SIZE)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
            self.action_space.seed(seed)
        obs, _ = self._env.reset()
        self._last_obs = obs
        return {"state": obs.astype(np.float32)}, {"success": False}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self._env.step(a)
        self._last_obs = obs
        info = {"success": bool(info.get("success", 0.0))}
        return {"state": obs.astype(np.float32)}, float(reward), bool(terminated), bool(truncated), info

    def render(self):
        return self._env.render()

    def privileged(self) -> dict[str, Any]:
        """The full float64 observation Meta-World's scripted policies parse (expert-only)."""
        return {"obs": self._last_obs}

    def close(self):
        self._env.close()
