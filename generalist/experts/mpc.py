"""A generic expert for any dm_control task: predictive sampling on a private copy of its physics.

Every step it copies the real env's MuJoCo state into a private physics (the real one is only read),
rolls out `samples` action sequences for `horizon` seconds, scores each by the task's own reward summed
over the rollout, executes the first action of the best and keeps the best as next step's nominal
(shifted by one step). Sequences are the nominal plus Gaussian noise drawn at `knots` points and
interpolated linearly, so that a few numbers describe a smooth plan (Howell et al. 2022, "Predictive
Sampling: Real-time Behaviour Synthesis with MuJoCo"; MuJoCo MPC's simplest planner).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from generalist.envs.base import TaskEnv
from generalist.envs.rendering import configure_headless_gl
from generalist.errors import ConfigError
from generalist.experts.base import Policy

configure_headless_gl()  # mujoco picks its GL backend when imported

import mujoco  # noqa: E402
from mujoco import rollout as mj_rollout  # noqa: E402

STATE = mujoco.mjtState.mjSTATE_FULLPHYSICS  # time, qpos, qvel, act, warm-start history, mocap


@dataclass(frozen=True)
class PlannerConfig:
    """The planner's budget: `samples` rollouts of `horizon` seconds per env step (cost ~ samples x horizon)."""

    samples: int = 16        # rollouts per env step, the nominal included
    horizon: float = 0.5     # seconds of look-ahead
    knots: int = 4           # noise points per rollout, linearly interpolated between
    noise: float = 0.4       # std of the noise, in [-1, 1] action units
    reward_every: int = 1    # score every k-th step of a rollout (x k): rollouts run in C, rewards in Python


# Per-task budgets, each chosen by single-episode probes on one core (seed 1; DEVELOPERS.md, "An expert for
# any DMC task") as the cheapest tried that came near TD-MPC2's 1M-step return; the 50-episode results are in
# the README. A sparse reward needs a horizon that reaches it (pendulum from hanging down: 1 s never does, 3 s
# from some starts, 5 s from more, yet 29 of 50 episodes still never swing up).
BUDGETS: dict[str, PlannerConfig] = {
    "dmc-cartpole-balance": PlannerConfig(samples=8, horizon=1.0, reward_every=2),
    "dmc-point_mass-easy": PlannerConfig(samples=16, horizon=1.0, reward_every=2),
    "dmc-reacher-hard": PlannerConfig(samples=16, horizon=1.0, reward_every=2),
    "dmc-pendulum-swingup": PlannerConfig(samples=32, horizon=5.0, knots=6, noise=1.0, reward_every=5),
    "dmc-finger-turn_easy": PlannerConfig(samples=16, horizon=1.0, noise=0.8, reward_every=2),
    "dmc-cheetah-run": PlannerConfig(samples=16, horizon=0.6, noise=0.8, reward_every=2),
}

# The planner budget a run overrides (JSON of PlannerConfig fields): set by `--planner` on `collect` and
# `experts score`, read here, so that spawned worker processes inherit it.
OVERRIDE_ENV = "GENERALIST_PLANNER"


def parse_budget(words: list[str]) -> dict[str, float | int]:
    """`["samples=32", "horizon=1"]` -> PlannerConfig overrides, checked (ConfigError names the bad word)."""
    types = {f.name: f.type for f in fields(PlannerConfig)}
    out: dict[str, float | int] = {}
    for w in words:
        key, sep, value = w.partition("=")
        if not sep or key not in types:
            raise ConfigError(f"--planner {w!r}: expected KEY=VALUE with KEY one of {', '.join(types)}")
        try:
            v = int(value) if types[key] == "int" else float(value)
        except ValueError:
            raise ConfigError(f"--planner {w!r}: {key} takes {'an integer' if types[key] == 'int' else 'a number'}") from None
        if v <= 0 or (key in ("samples", "knots") and v < 2):
            raise ConfigError(f"--planner {w!r}: {key} must be {'>= 2' if key in ('samples', 'knots') else '> 0'}")
        out[key] = v
    return out


def budget_for(task: str) -> PlannerConfig:
    """The budget `task` plans with: its entry in BUDGETS (else the defaults), then the run's overrides."""
    cfg = BUDGETS.get(task, PlannerConfig())
    override = os.environ.get(OVERRIDE_ENV)
    return replace(cfg, **json.loads(override)) if override else cfg


class PredictiveSamplingExpert(Policy):
    """Model-predictive control by sampling, on a private copy of the task's physics, scored by its reward."""

    def __init__(self, env: TaskEnv, seed: int | None = None, **overrides):
        super().__init__(env, seed)
        priv = self.privileged()
        real = priv["physics"]
        spec = getattr(env.unwrapped, "task", None)  # None: a DMCEnv built outside the registry (tests)
        self.cfg = replace(budget_for(spec.name if spec else ""), **overrides)
        self.task, self.n_sub = priv["task"], priv["n_sub_steps"]
        self.sim = real.copy(share_model=True)  # our own MjData; the real env's is only read
        self.model = real.model.ptr
        self.steps = max(1, round(self.cfg.horizon / (real.model.opt.timestep * self.n_sub)))
        nu = self.model.nu
        lo, hi = self.model.actuator_ctrlrange.T
        limited = self.model.actuator_ctrllimited.astype(bool)
        self.low, self.high = np.where(limited, lo, -1.0), np.where(limited, hi, 1.0)
        # (steps, knots) linear interpolation from the knot noise to per-step noise
        t = np.linspace(0.0, self.cfg.knots - 1, self.steps)
        self.interp = np.maximum(0.0, 1.0 - np.abs(t[:, None] - np.arange(self.cfg.knots)[None, :]))
        self.nominal = np.zeros((self.steps, nu))
        self.state = np.empty(mujoco.mj_stateSize(self.model, STATE))
        self.rollout_data = mujoco.MjData(self.model)  # the native rollout's scratch data

    def reset(self) -> None:
        self.nominal[:] = 0.0

    def config(self) -> dict[str, float | int]:
        return asdict(self.cfg)

    def _returns(self, plans: np.ndarray) -> np.ndarray:
        """The task reward summed over each plan (samples x steps x nu, in [-1, 1]) from the saved state.

        MuJoCo's native `rollout` steps every plan (each control held for the env's physics substeps); the
        task's `get_reward` then reads every `reward_every`-th resulting state in the private physics.
        """
        ctrl = self.low + (plans + 1.0) * 0.5 * (self.high - self.low)
        ctrl = np.repeat(ctrl, self.n_sub, axis=1)
        states, _ = mj_rollout.rollout(self.model, self.rollout_data, self.state[None], ctrl)
        k = self.cfg.reward_every
        at = np.arange(self.n_sub - 1, ctrl.shape[1], self.n_sub * k)  # after every k-th env step
        data = self.sim.data.ptr
        out = np.zeros(len(plans))
        for i, traj in enumerate(states):
            for x in traj[at]:
                mujoco.mj_setState(self.model, data, x, STATE)
                mujoco.mj_forward(self.model, data)
                out[i] += k * float(self.task.get_reward(self.sim))
        return out

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        real = self.privileged()["physics"]
        mujoco.mj_getState(self.model, real.data.ptr, self.state, STATE)
        nominal = np.concatenate([self.nominal[1:], self.nominal[-1:]])  # one step later than last time
        noise = self.rng.normal(0.0, self.cfg.noise, (self.cfg.samples - 1, self.cfg.knots, nominal.shape[1]))
        plans = np.concatenate([nominal[None], np.clip(nominal + self.interp @ noise, -1.0, 1.0)])
        self.nominal = plans[int(np.argmax(self._returns(plans)))]
        return self.nominal[0].astype(np.float32)
