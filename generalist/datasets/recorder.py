"""Record one episode of a policy into arrays (the in-memory side of collection)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from generalist.datasets.dagger import DrivenPolicy
from generalist.datasets.noise import NoisyPolicy
from generalist.datasets.writer import Episode
from generalist.envs.base import TaskEnv
from generalist.episodes import run_episode
from generalist.experts.base import Policy


class EpisodeRecorder:
    """Appends each observation, action, reward and flag; `episode()` stacks them once at the end.

    With `labelled` (a NoisyPolicy or DrivenPolicy, which executes another action than its expert's), the action
    stored is the expert's label; the executed one and the wrapper's `last_info` values go to the infos."""

    def __init__(self, info_keys: tuple[str, ...] = (), labelled: NoisyPolicy | DrivenPolicy | None = None):
        self.info_keys = info_keys
        self.labelled = labelled
        self.executed: list[Any] = []
        self.extra: dict[str, list[float]] = {}
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
        if self.labelled is None:
            self.actions.append(action)
        else:
            self.actions.append(self.labelled.last_label)
            self.executed.append(action)
            for k, v in self.labelled.last_info.items():
                self.extra.setdefault(k, []).append(v)
        self.rewards.append(reward)
        self.terms.append(terminated)
        self.truncs.append(truncated)
        for k in self.info_keys:
            self.infos[k].append(info.get(k, False))

    def episode(self, discrete: bool, attrs: dict[str, Any]) -> Episode:
        dtype = np.int64 if discrete else np.float32
        infos = {k: np.asarray(v) for k, v in self.infos.items()}
        if self.labelled is not None:
            infos["executed_action"] = np.asarray(self.executed, dtype=dtype)
            infos.update({k: np.asarray(v, dtype=np.float32) for k, v in self.extra.items()})
        return Episode(
            observations={k: np.stack(v) for k, v in self.obs.items()},
            actions=np.asarray(self.actions, dtype=dtype),
            rewards=np.asarray(self.rewards, dtype=np.float64),
            terminations=np.asarray(self.terms, dtype=bool),
            truncations=np.asarray(self.truncs, dtype=bool),
            infos=infos,
            attrs=attrs,
        )


def record_episode(env: TaskEnv, policy: Policy, seed: int, action_noise: float = 0.0,
                   driver: Any = None, driver_prob: float = 1.0, driver_name: str = "") -> tuple[Episode, float]:
    """Run and record one episode on `seed`: the expert `policy` acting, its executed actions perturbed if
    `action_noise` > 0, or (DAgger) `driver` acting on a share `driver_prob` of the steps, labelled by the expert."""
    key = env.task.success_key
    labelled = (DrivenPolicy(policy, driver, driver_prob, seed) if driver is not None
                else NoisyPolicy(policy, action_noise, seed) if action_noise else None)
    rec = EpisodeRecorder((key,) if key else (), labelled)
    result = run_episode(env, labelled or policy, seed, on_step=rec.on_step, on_reset=rec.on_reset)
    attrs = {"seed": seed, "task": env.task.name, "expert": env.task.expert, "return": result.ret}
    if config := policy.config():
        attrs["expert_config"] = json.dumps(config, sort_keys=True)
    if action_noise and driver is None:
        attrs["action_noise"] = float(action_noise)
    if driver is not None:
        attrs.update(driver=driver_name, driver_prob=float(driver_prob))
    if result.success is not None:
        attrs["success"] = bool(result.success)
    ep = rec.episode(discrete=hasattr(env.action_space, "n"), attrs=attrs)
    return ep, result.ret
