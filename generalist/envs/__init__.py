"""Task registry: one gymnasium API across Atari, Memory Maze, DM Control and Meta-World.

Importing the registry imports no simulator: each domain module declares its spaces without one and
imports its simulator when an env is first built, so that, e.g., an Atari-only run never imports MuJoCo
and training (which only compares datasets with the declared spaces) needs no simulator at all.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from generalist.envs import atari, dmc, maze, meta_world
from generalist.envs.spec import TaskSpec, describe_space
from generalist.errors import GeneralistError


def _atari(game: str, task: str) -> TaskSpec:
    return TaskSpec(f"atari-{task}", "atari", 27_000, f"atari-{task}-ram",
                    atari.AtariEnv, *atari.spaces(game), atari.DISPLAY, {"game": game})


def _dmc(domain: str, task: str, expert: str) -> TaskSpec:
    return TaskSpec(f"dmc-{domain}-{task}", "dmc", 1000, expert, dmc.DMCEnv,
                    *dmc.spaces(domain, task), dmc.DISPLAY, {"domain": domain, "task": task})


def _metaworld(task: str) -> TaskSpec:
    return TaskSpec(f"metaworld-{task}", "metaworld", 500, f"metaworld-{task}-scripted",
                    meta_world.MetaWorldEnv, *meta_world.spaces(), meta_world.DISPLAY, {"task": task},
                    success_key="success")


TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in [
        _atari("Pong", "pong"),
        _atari("Breakout", "breakout"),
        TaskSpec("memorymaze-9x9", "memorymaze", 1000, "memorymaze-planner",
                 maze.MemoryMazeEnv, *maze.spaces(), maze.DISPLAY, {"size": 9}),
        _dmc("cartpole", "swingup", "dmc-cartpole-energy-lqr"),
        _dmc("reacher", "easy", "dmc-reacher-pd"),
        _dmc("walker", "walk", "dmc-walker-sac"),
        _metaworld("reach"),
        _metaworld("push"),
        _metaworld("pick-place"),
        _metaworld("door-open"),
        _metaworld("drawer-open"),
    ]
}


class UnknownTaskError(GeneralistError, KeyError):
    """A task name that is not in the suite; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_task(name: str) -> TaskSpec:
    """The spec of a suite task, or UnknownTaskError naming the known tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(
            f"unknown task {name!r}; known tasks: {', '.join(TASKS)}"
        ) from None


def task_names() -> list[str]:
    return list(TASKS)


def make(name: str, **kwargs: Any) -> gym.Env:
    """A fresh env for a suite task; kwargs (e.g. render_mode) go to its constructor."""
    spec = get_task(name)
    env = spec.make(**spec.kwargs, **kwargs)
    env.task = spec
    return env


def gym_id(name: str) -> str:
    """The gymnasium id each task is registered under, so `gym.make` and Minari's env_spec work."""
    return f"generalist/{name}-v0"


def _make_for_gym(task: str, **kwargs: Any) -> gym.Env:
    return make(task, **kwargs)


for _name in TASKS:
    if gym_id(_name) not in gym.registry:
        gym.register(gym_id(_name), entry_point="generalist.envs:_make_for_gym", kwargs={"task": _name},
                     disable_env_checker=True, order_enforce=False)


def describe(name: str) -> dict[str, Any]:
    """The JSON description `generalist envs --json` prints for one task (declared spaces: no env is built)."""
    spec = get_task(name)
    return {
        "name": spec.name,
        "domain": spec.domain,
        "observation": describe_space(spec.observation_space),
        "action": describe_space(spec.action_space),
        "max_episode_steps": spec.max_episode_steps,
        "expert": spec.expert,
        "success_key": spec.success_key,
    }


__all__ = ["TASKS", "TaskSpec", "UnknownTaskError", "describe", "get_task", "gym_id", "make", "task_names"]
