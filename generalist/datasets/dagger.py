"""DAgger collection (Ross et al. 2011): a trained agent drives the env and the expert labels every state it
visits, so a clone learns what to do in the states its own mistakes lead to, which expert episodes never show.

The expert still acts on every observation (experts read the emulator or physics state and may keep their
own); with probability `prob` per step the driver's action is executed, otherwise the expert's. The recorder
stores the expert's label as `actions`, the executed one as `infos/executed_action` and `infos/agent_acted`
(1.0 where the driver's action ran). The driver is built by a factory the caller passes (the CLI builds the
agent from a checkpoint), so this layer imports no model code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from generalist.errors import ConfigError
from generalist.experts.base import Policy

DRIVER_STREAM = 11  # the mixing coin is default_rng([episode seed, DRIVER_STREAM])


def check_driver_prob(prob: float) -> None:
    if not 0.0 < prob <= 1.0:
        raise ConfigError(f"--driver-prob must be in (0, 1], got {prob}")


class DrivenPolicy(Policy):
    """Wraps an expert and a driver: act() returns the action to execute; `last_label` is the expert's."""

    name = "driven"

    def __init__(self, expert: Policy, driver: Any, prob: float, seed: int):
        super().__init__(expert.env)
        check_driver_prob(prob)
        self.expert, self.driver, self.prob, self.seed = expert, driver, float(prob), seed
        self.rng = np.random.default_rng([seed, DRIVER_STREAM])
        self.last_label: Any = None
        self.last_info: dict[str, float] = {}

    def reset(self) -> None:
        self.rng = np.random.default_rng([self.seed, DRIVER_STREAM])
        self.expert.reset()
        self.driver.reset()

    def act(self, obs: dict[str, np.ndarray]) -> Any:
        label = self.last_label = self.expert.act(obs)
        driven = self.driver.act(obs)  # every step, so that the driver's own memory stays its own
        use = bool(self.rng.random() < self.prob)
        self.last_info = {"agent_acted": float(use)}
        return driven if use else label


class _Staged:
    """A driver whose next action was decided elsewhere (by the batched driver of `DrivenBatch`)."""

    def __init__(self) -> None:
        self.action: Any = None

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> Any:
        return self.action


class DrivenBatch:
    """Several driven episodes played in lockstep (`episodes.run_lockstep`): one `DrivenPolicy` per episode, its
    own expert labelling, one driver acting for all of them in one batched call (`AgentPolicy.act_batch`)."""

    def __init__(self, experts: list[Policy], driver: Any, prob: float, seeds: list[int]):
        self.driver = driver
        self.stages = [_Staged() for _ in experts]
        self.rows = [DrivenPolicy(e, st, prob, s) for e, st, s in zip(experts, self.stages, seeds, strict=True)]
        self.live = list(range(len(self.rows)))

    def start(self, seeds: list[int]) -> None:
        """Once the envs are reset: reset every expert and coin, start the driver on the episodes."""
        for row in self.rows:
            row.reset()
        self.driver.start(seeds)
        self.live = list(range(len(self.rows)))

    def act_batch(self, observations: list[dict[str, np.ndarray]]) -> list[Any]:
        driven = self.driver.act_batch(observations)
        out = []
        for i, obs, action in zip(self.live, observations, driven, strict=True):
            self.stages[i].action = action
            out.append(self.rows[i].act(obs))
        return out

    def keep(self, which: list[int]) -> None:
        self.driver.keep(which)
        self.live = [self.live[j] for j in which]


DriverFactory = Callable[[Any], Any]  # env -> a policy with reset() and act(obs) (and, to drive in lockstep,
# start(seeds), act_batch(observations) and keep(places): `AgentPolicy`)
