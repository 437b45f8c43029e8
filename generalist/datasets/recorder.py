"""Record one episode of a policy into arrays (the in-memory side of collection)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from generalist.datasets.dagger import DrivenBatch, DrivenPolicy
from generalist.datasets.noise import NoisyPolicy
from generalist.datasets.writer import Episode
from generalist.envs.base import TaskEnv
from generalist.episodes import EpisodeResult, run_episode, run_lockstep
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


def record_episode(env: TaskEnv, policy: Policy, seed: int, action_noise: float = 0.0) -> tuple[Episode, float]:
    """Run and record one episode on `seed`: the expert `policy` acting, its executed actions perturbed if
    `action_noise` > 0 (DART). Driven episodes (DAgger) are recorded by `record_driven_lockstep`."""
    key = env.task.success_key
    labelled = NoisyPolicy(policy, action_noise, seed) if action_noise else None
    rec = EpisodeRecorder((key,) if key else (), labelled)
    result = run_episode(env, labelled or policy, seed, on_step=rec.on_step, on_reset=rec.on_reset)
    return _episode(env, policy, rec, result, action_noise, None), result.ret


def record_driven_lockstep(env_list: list[TaskEnv], experts: list[Policy], seeds: list[int], driver: Any,
                           driver_prob: float = 1.0, driver_name: str = "") -> list[tuple[Episode, float]]:
    """Run and record driven episodes (DAgger), one env and expert each, at once: `driver` acts on a share
    `driver_prob` of the steps, for all of them in one batched call a step (`DrivenBatch`: most of a driven
    step's cost on a CPU is the driver's forward pass); the experts label every state."""
    batch = DrivenBatch(experts, driver, driver_prob, seeds)
    key = env_list[0].task.success_key
    recs = [EpisodeRecorder((key,) if key else (), row) for row in batch.rows]
    results = run_lockstep(env_list, batch, tuple(seeds), on_step=lambda i, *a: recs[i].on_step(*a),
                           on_reset=lambda i, obs: recs[i].on_reset(obs))
    driven = {"driver": driver_name, "driver_prob": float(driver_prob)}
    return [(_episode(env, expert, rec, res, 0.0, driven), res.ret)
            for env, expert, rec, res in zip(env_list, experts, recs, results, strict=True)]


def _episode(env: TaskEnv, expert: Policy, rec: EpisodeRecorder, result: EpisodeResult, action_noise: float,
             driven: dict[str, Any] | None) -> Episode:
    """A recorded episode with its attributes: seed, task, expert (and its config), return, noise or driver."""
    attrs = {"seed": result.seed, "task": env.task.name, "expert": env.task.expert, "return": result.ret}
    if config := expert.config():
        attrs["expert_config"] = json.dumps(config, sort_keys=True)
    if action_noise:
        attrs["action_noise"] = float(action_noise)
    if driven is not None:
        attrs.update(driven)
    if result.success is not None:
        attrs["success"] = bool(result.success)
    return rec.episode(discrete=hasattr(env.action_space, "n"), attrs=attrs)
