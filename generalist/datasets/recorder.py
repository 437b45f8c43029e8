"""Record one episode of a policy into arrays (the in-memory side of collection)."""

from __future__ import annotations

from typing import Any

import numpy as np

from generalist.datasets.noise import NoisyPolicy
from generalist.datasets.writer import Episode
from generalist.envs.base import TaskEnv
from generalist.episodes import run_episode
from generalist.experts.base import Policy


class EpisodeRecorder:
    """Appends each observation, action, reward and flag; `episode()` stacks them once at the end.

    With `noisy`, the action stored is the expert's label and the executed one goes to the infos."""

    def __init__(self, info_keys: tuple[str, ...] = (), noisy: NoisyPolicy | None = None):
        self.info_keys = info_keys
        self.noisy = noisy
        self.executed: list[Any] = []
        self.noise: list[float] = []
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
        if self.noisy is None:
            self.actions.append(action)
        else:
            self.actions.append(self.noisy.last_label)
            self.executed.append(action)
            self.noise.append(self.noisy.last_noise)
        self.rewards.append(reward)
        self.terms.append(terminated)
        self.truncs.append(truncated)
        for k in self.info_keys:
            self.infos[k].append(info.get(k, False))

    def episode(self, discrete: bool, attrs: dict[str, Any]) -> Episode:
        dtype = np.int64 if discrete else np.float32
        infos = {k: np.asarray(v) for k, v in self.infos.items()}
        if self.noisy is not None:
            infos["executed_action"] = np.asarray(self.executed, dtype=dtype)
            infos["action_noise"] = np.asarray(self.noise, dtype=np.float32)
        return Episode(
            observations={k: np.stack(v) for k, v in self.obs.items()},
            actions=np.asarray(self.actions, dtype=dtype),
            rewards=np.asarray(self.rewards, dtype=np.float64),
            terminations=np.asarray(self.terms, dtype=bool),
            truncations=np.asarray(self.truncs, dtype=bool),
            infos=infos,
            attrs=attrs,
        )


def record_episode(env: TaskEnv, policy: Policy, seed: int,
                   action_noise: float = 0.0) -> tuple[Episode, float]:
    """Run and record one episode on `seed` (perturbing executed actions if `action_noise` > 0)."""
    key = env.task.success_key
    noisy = NoisyPolicy(policy, action_noise, seed) if action_noise else None
    rec = EpisodeRecorder((key,) if key else (), noisy)
    result = run_episode(env, noisy or policy, seed, on_step=rec.on_step, on_reset=rec.on_reset)
    attrs = {"seed": seed, "task": env.task.name, "expert": env.task.expert, "return": result.ret}
    if noisy is not None:
        attrs["action_noise"] = noisy.sigma
    if result.success is not None:
        attrs["success"] = bool(result.success)
    ep = rec.episode(discrete=hasattr(env.action_space, "n"), attrs=attrs)
    return ep, result.ret
