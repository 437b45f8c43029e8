"""What a task is: its name, domain, limits and expert, independent of how it is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class TaskSpec:
    """One task of the suite. `make(**kwargs)` builds a fresh env for it."""

    name: str
    domain: str
    max_episode_steps: int
    expert: str
    make: Callable[..., gym.Env] = field(repr=False, compare=False)
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False)
    success_key: str | None = None  # per-step info key that marks success, if the task has one


def describe_space(space: gym.Space) -> dict[str, Any]:
    """JSON-friendly description of an observation (Dict) or action space."""
    if isinstance(space, gym.spaces.Dict):
        return {k: {"shape": list(s.shape), "dtype": str(s.dtype)} for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "continuous", "shape": list(space.shape), "low": float(space.low.min()),
                "high": float(space.high.max())}
    raise TypeError(f"unsupported space {space!r}")
