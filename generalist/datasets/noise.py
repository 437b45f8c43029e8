"""DART-style noise injection (Laskey et al. 2017): the env executes a perturbed expert action.

The dataset keeps the expert's action as the label to clone and the executed one in
`infos/executed_action`, so a cloned policy sees how the expert recovers from perturbed states.
Box: executed = clip(expert + N(0, sigma^2) per dimension, low, high). Discrete: with probability
sigma a uniformly random action replaces the expert's (it may happen to equal it).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from generalist.errors import ConfigError
from generalist.experts.base import Policy

NOISE_STREAM = 7  # the noise generator is default_rng([episode seed, NOISE_STREAM])


def check_action_noise(sigma: float, space: gym.Space | None, task: str = "") -> None:
    """ValueError unless `sigma` suits `space` (>= 0; a probability if discrete; None: sign only)."""
    if not sigma >= 0:  # also refuses NaN
        raise ConfigError(f"--action-noise must be >= 0, got {sigma}")
    if isinstance(space, gym.spaces.Discrete) and sigma > 1:
        raise ConfigError(f"--action-noise is a probability for discrete actions ({task or 'this task'}): "
                         f"it must be <= 1, got {sigma}")


class NoisyPolicy(Policy):
    """Wraps an expert: act() returns the action to execute; `last_label` is the expert's own."""

    name = "noisy"

    def __init__(self, expert: Policy, sigma: float, seed: int):
        super().__init__(expert.env)
        check_action_noise(sigma, expert.env.action_space)
        self.expert, self.sigma, self.seed = expert, float(sigma), seed
        self.rng = np.random.default_rng([seed, NOISE_STREAM])
        self.last_label: Any = None
        self.last_noise = 0.0  # Box: |executed - label|_2; Discrete: 1.0 if the action was drawn at random

    @property
    def last_info(self) -> dict[str, float]:
        """What the recorder stores beside the executed action, per step."""
        return {"action_noise": self.last_noise}

    def reset(self) -> None:
        """Reset the expert and restart the noise stream from the episode seed."""
        self.rng = np.random.default_rng([self.seed, NOISE_STREAM])
        self.expert.reset()

    def act(self, obs: dict[str, np.ndarray]) -> Any:
        """The expert acts on every observation; the returned (executed) action is perturbed."""
        label = self.last_label = self.expert.act(obs)
        space = self.env.action_space
        if isinstance(space, gym.spaces.Discrete):
            drawn = self.rng.random() < self.sigma
            self.last_noise = float(drawn)
            return int(space.start + self.rng.integers(space.n)) if drawn else label
        label = np.asarray(label, dtype=space.dtype)
        executed = np.clip(label + self.rng.normal(0.0, self.sigma, label.shape), space.low, space.high)
        executed = executed.astype(space.dtype)
        self.last_noise = float(np.linalg.norm(executed.astype(np.float64) - label))
        return executed
