"""Meta-World's own scripted policies, reading the full (goal-included) float64 observation."""

from __future__ import annotations

import importlib

import numpy as np

from generalist.envs.base import TaskEnv
from generalist.experts.base import Policy


def _policy_class(task: str):
    # 'pick-place' -> metaworld.policies.sawyer_pick_place_v3_policy.SawyerPickPlaceV3Policy
    snake = task.replace("-", "_")
    camel = "".join(p.capitalize() for p in task.split("-"))
    module = importlib.import_module(f"metaworld.policies.sawyer_{snake}_v3_policy")
    return getattr(module, f"Sawyer{camel}V3Policy")


class MetaWorldScriptedExpert(Policy):
    """Wraps metaworld.policies.Sawyer<Task>V3Policy; deterministic given the observation."""

    name = "metaworld-scripted"

    def __init__(self, env: TaskEnv, seed: int | None = None):
        super().__init__(env, seed)
        self._policy = _policy_class(env.unwrapped.task_name)()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        full = self.env.unwrapped.privileged()["obs"]
        return np.clip(self._policy.get_action(full), -1.0, 1.0).astype(np.float32)
