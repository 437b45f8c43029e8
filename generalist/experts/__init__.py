"""One specialist expert per task, behind the Policy interface (reset / act).

`EXPERTS` is the one registry of expert names: a task names its expert (`TaskSpec.expert`, also written
into its datasets' metadata) by a key of `EXPERTS`, and the classes carry no name of their own."""

from __future__ import annotations

import importlib

from generalist.envs import get_task
from generalist.envs.base import TaskEnv
from generalist.envs.meta_world import MT50
from generalist.experts.base import Policy, RandomPolicy

# expert name (a task's `TaskSpec.expert`) -> "module:Class" under generalist.experts
EXPERTS: dict[str, str] = {
    "atari-pong-ram": "atari:PongExpert",
    "atari-breakout-ram": "atari:BreakoutExpert",
    "memorymaze-planner": "maze:MazePlannerExpert",
    "dmc-cartpole-energy-lqr": "dmc:CartpoleSwingupExpert",
    "dmc-reacher-pd": "dmc:ReacherExpert",
    "dmc-walker-sac": "sac:WalkerSACExpert",
    "dmc-predictive-sampling": "mpc:PredictiveSamplingExpert",  # any DMC task; budgets in experts/mpc.py
    **{f"metaworld-{t}-scripted": "metaworld_scripted:MetaWorldScriptedExpert" for t in MT50},
}


def make_policy(kind: str, env: TaskEnv, seed: int | None = None) -> Policy:
    """'expert' -> the task's specialist; 'random' -> uniform random actions."""
    if kind == "random":
        return RandomPolicy(env, seed)
    if kind != "expert":
        raise ValueError(f"unknown policy kind {kind!r}; use 'expert' or 'random'")
    return expert_class(get_task(env.task.name).expert)(env, seed)


def planner_tasks(tasks: list[str]) -> list[str]:
    """Those of `tasks` whose expert is the predictive-sampling planner (the ones `--planner` applies to)."""
    return [t for t in tasks if EXPERTS[get_task(t).expert] == "mpc:PredictiveSamplingExpert"]


def expert_class(name: str) -> type[Policy]:
    """The class registered as expert `name` (its module, and simulator, imported now)."""
    if name not in EXPERTS:
        raise KeyError(f"no expert named {name!r} in generalist.experts.EXPERTS; known: {', '.join(EXPERTS)}")
    module, cls = EXPERTS[name].split(":")
    return getattr(importlib.import_module(f"generalist.experts.{module}"), cls)


__all__ = ["EXPERTS", "Policy", "RandomPolicy", "expert_class", "make_policy", "planner_tasks"]
