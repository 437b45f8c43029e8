"""The policy interface every expert (and the random baseline) implements: reset() and act(obs)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from generalist.envs.base import TaskEnv


class Policy(ABC):
    """Something that acts in one env. Experts may read `env.privileged()`; agents may not."""

    def __init__(self, env: TaskEnv, seed: int | None = None):
        self.env = env
        self.rng = np.random.default_rng(seed)

    def privileged(self) -> dict[str, Any]:
        """The env's expert-only state (`TaskEnv.privileged`): the one thing an expert reads besides `obs`."""
        return self.env.unwrapped.privileged()

    def reset(self) -> None:
        """Called after every env.reset(), before the first act()."""

    def config(self) -> dict[str, Any]:
        """Settings that change what this expert does (a planner's budget), stored with every episode it plays."""
        return {}

    @abstractmethod
    def act(self, obs: dict[str, np.ndarray]) -> Any:
        """The action for the current observation."""


class RandomPolicy(Policy):
    """Uniform over the action space: the 'random' reference of normalized scores."""

    def act(self, obs: dict[str, np.ndarray]) -> Any:
        space = self.env.action_space
        if hasattr(space, "n"):
            return int(self.rng.integers(space.n))
        return self.rng.uniform(space.low, space.high).astype(np.float32)
