"""Record one episode of a policy into arrays (the in-memory side of collection)."""

from __future__ import annotations

from typing import Any

import numpy as np

from generalist.datasets.writer import Episode
from generalist.envs.base import TaskEnv
from generalist.experts.base import Policy
from generalist.experts.rollout import run_episode


class EpisodeRecorder:
    """Appends each observation, action, reward and flag; `episode()` stacks them once at the end."""

    def __init__(self, info_keys: tuple[str, ...] = ()):
        self.info_keys = info_keys
        self.obs: dict[str, list[np.ndarray]] = {}
        self.actions: list[Any] = []
        self.rewards: list[float] = []
        self.terms: list[bool] = []
        self.truncs: list[bool] = []
        self.infos: dict[str, list[Any]] = {k: [] for k in info_keys}

    def on_reset(self, obs: dict[str, np.ndarray]) -> None:
        self.obs = {k: [v] for k, v in obs.items()}

    def on_step(self, obs, action, reward, terminated, truncated, info) -> None:
        for k, v in obs.items():
            self.obs[k].append(v)
        self.actions.append(action)
        self.rewards.append(reward)
        self.terms.append(terminated)
        self.truncs.append(truncated)
        for k in self.info_keys:
            self.infos[k].append(info.get(k, False))

    def episode(self, discrete: bool, attrs: dict[str, Any]) -> Episode:
        actions = (np.asarray(self.actions, dtype=np.int64) if discrete
                   else np.asarray(self.actions, dtype=np.float32))
        return Episode(
            observations={k: np.stack(v) for k, v in self.obs.items()},
            actions=actions,
            rewards=np.asarray(self.rewards, dtype=np.float64),
            terminations=np.asarray(self.terms, dtype=bool),
            truncations=np.asarray(self.truncs, dtype=bool),
            infos={k: np.asarray(v) for k, v in self.infos.items()},
            attrs=attrs,
        )


def record_episode(env: TaskEnv, policy: Policy, seed: int) -> tuple[Episode, float]:
    """Run and record one episode on `seed`; returns the episode and its return."""
    key = env.task.success_key
    rec = EpisodeRecorder((key,) if key else ())
    result = run_episode(env, policy, seed, on_step=rec.on_step, on_reset=rec.on_reset)
    attrs = {"seed": seed, "task": env.task.name, "expert": env.task.expert, "return": result.ret}
    if result.success is not None:
        attrs["success"] = bool(result.success)
    ep = rec.episode(discrete=hasattr(env.action_space, "n"), attrs=attrs)
    return ep, result.ret
