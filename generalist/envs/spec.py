"""What a task is: its name, domain, limits, expert and spaces, independent of how it is built.

The spaces are declared here (built by the helpers below from each domain module's sizes) without
importing any simulator, so that training, which only compares stored datasets against them, runs on
machines that have torch but no MuJoCo, dm-control, Meta-World, memory-maze or ALE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class Display:
    """How reports show a domain's tasks: its colour in charts, every how many steps a video keeps a
    frame, and whether its env renders at a requested size (`render_size=`) or at a fixed one."""

    color: str
    video_stride: int
    sized_render: bool


@dataclass(frozen=True)
class TaskSpec:
    """One task of the suite. `make(**kwargs)` builds a fresh env for it, whose spaces equal
    `observation_space` and `action_space` (the env takes them from the same declaration)."""

    name: str
    domain: str
    max_episode_steps: int
    expert: str
    make: Callable[..., gym.Env] = field(repr=False, compare=False)
    observation_space: gym.spaces.Dict = field(repr=False, compare=False)
    action_space: gym.Space = field(repr=False, compare=False)
    display: Display = field(repr=False, compare=False)
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False)
    success_key: str | None = None  # per-step info key that marks success, if the task has one


def state_space(n: int) -> gym.spaces.Dict:
    """A state observation: {'state': float32 (n,)}, unbounded."""
    return gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)})


def image_space(height: int, width: int, channels: int) -> gym.spaces.Dict:
    """An image observation: {'image': uint8 (H, W, C)}."""
    return gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (height, width, channels), np.uint8)})


def box_actions(n: int) -> gym.spaces.Box:
    """n continuous actions, each in [-1, 1] (envs rescale to the simulator's own bounds)."""
    return gym.spaces.Box(-1.0, 1.0, (n,), np.float32)


def discrete_actions(n: int) -> gym.spaces.Discrete:
    return gym.spaces.Discrete(n)


class DeclaredSpaceMismatch(RuntimeError):
    """A simulator disagrees with the sizes its domain module declares (a bug or an upstream change)."""


def require_same(what: str, declared: int | tuple[int, ...], actual: int | tuple[int, ...]) -> None:
    """Raise DeclaredSpaceMismatch when a simulator's size or shape differs from the declared one."""
    if declared != actual:
        raise DeclaredSpaceMismatch(f"{what}: the simulator gives {actual}, the task declares {declared}; "
                                    "update the declaration in generalist/envs/")


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
