"""Run one episode of a policy in an env: the loop collection and scoring share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generalist.envs.base import TaskEnv
from generalist.experts.base import Policy


@dataclass
class EpisodeResult:
    seed: int
    ret: float
    steps: int
    success: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_episode(
    env: TaskEnv,
    policy: Policy,
    seed: int,
    on_step: Callable[[dict, Any, float, bool, bool, dict], None] | None = None,
    on_reset: Callable[[dict], None] | None = None,
) -> EpisodeResult:
    """Reset with `seed`, act until the episode ends; hooks see every observation and transition."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    if on_reset is not None:
        on_reset(obs)
    key = env.task.success_key
    ret, steps, success = 0.0, 0, False if key else None
    while True:
        action = policy.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        ret += reward
        steps += 1
        if key and info.get(key):
            success = True
        if on_step is not None:
            on_step(obs, action, reward, terminated, truncated, info)
        if terminated or truncated:
            return EpisodeResult(seed, float(ret), steps, success)


def summarize(results: list[EpisodeResult]) -> dict[str, Any]:
    """Mean/std of returns (and success rate) over episodes."""
    rets = np.array([r.ret for r in results], dtype=np.float64)
    out: dict[str, Any] = {
        "episodes": len(results),
        "mean": float(rets.mean()) if len(rets) else float("nan"),
        "std": float(rets.std()) if len(rets) else float("nan"),
        "min": float(rets.min()) if len(rets) else float("nan"),
        "max": float(rets.max()) if len(rets) else float("nan"),
        "mean_steps": float(np.mean([r.steps for r in results])) if results else float("nan"),
    }
    if results and results[0].success is not None:
        out["success_rate"] = float(np.mean([bool(r.success) for r in results]))
    return out
