"""Task registry: one gymnasium API across Atari, Memory Maze, DM Control and Meta-World.

Importing the registry imports no simulator: each domain module declares its spaces without one and
imports its simulator when an env is first built, so that, e.g., an Atari-only run never imports MuJoCo
and training (which only compares datasets with the declared spaces) needs no simulator at all.
"""

from __future__ import annotations

import difflib
import fnmatch
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


def _maze(size: int) -> TaskSpec:
    return TaskSpec(f"memorymaze-{size}x{size}", "memorymaze", maze.EPISODE_STEPS[size], "memorymaze-planner",
                    maze.MemoryMazeEnv, *maze.spaces(), maze.DISPLAY, {"size": size})


# The first 11 are the original suite, in its order; then every other maze size and Meta-World task, then the
# dm_control tasks whose expert is the generic planner.
_FIRST_METAWORLD = ("reach", "push", "pick-place", "door-open", "drawer-open")
TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in [
        _atari("Pong", "pong"),
        _atari("Breakout", "breakout"),
        _maze(9),
        _dmc("cartpole", "swingup", "dmc-cartpole-energy-lqr"),
        _dmc("reacher", "easy", "dmc-reacher-pd"),
        _dmc("walker", "walk", "dmc-walker-sac"),
        *(_metaworld(t) for t in _FIRST_METAWORLD),
        *(_maze(n) for n in maze.EPISODE_STEPS if n != 9),
        *(_metaworld(t) for t in meta_world.MT50 if t not in _FIRST_METAWORLD),
        *(_dmc(d, t, "dmc-predictive-sampling") for d, t in dmc.PLANNED),
    ]
}


class UnknownTaskError(GeneralistError, KeyError):
    """A task name that is not in the suite; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_task(name: str) -> TaskSpec:
    """The spec of a suite task, or UnknownTaskError naming the closest known tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}{_did_you_mean(name, list(TASKS))}") from None


def _did_you_mean(name: str, pool: list[str]) -> str:
    """'; did you mean A or B? (...)': the closest names, and where the full list is."""
    close = difflib.get_close_matches(name.rstrip("*?["), pool, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"{hint} (`generalist envs` lists all {len(pool)} tasks; patterns such as 'metaworld-*' work)"


def task_names(domain: str | None = None) -> list[str]:
    """Every task of the suite, or of one domain, in registry order."""
    if domain is not None and domain not in domains():
        raise UnknownTaskError(f"unknown domain {domain!r}; known domains: {', '.join(domains())}")
    return [n for n, s in TASKS.items() if domain is None or s.domain == domain]


def domains() -> list[str]:
    """The task domains (atari, memorymaze, dmc, metaworld), in registry order."""
    return list(dict.fromkeys(s.domain for s in TASKS.values()))


def select(patterns: list[str], among: list[str] | None = None) -> list[str]:
    """Task names for names and shell-style patterns ('metaworld-*'), in the order given, each once.

    A pattern matches among `among` (default: every task); a pattern matching nothing, or a plain name
    that is not a task, raises UnknownTaskError. Plain names are kept even when not in `among`, so the
    caller can say why such a task does not apply (e.g. a checkpoint never trained on it).
    """
    pool = task_names() if among is None else list(among)
    out: list[str] = []
    for p in patterns:
        if any(c in p for c in "*?["):
            hits = fnmatch.filter(pool, p)
            if not hits:
                where = _did_you_mean(p, pool) if among is None else f" among {', '.join(pool)}"
                raise UnknownTaskError(f"no task matches {p!r}{where}")
        else:
            hits = [get_task(p).name]
        out += [h for h in hits if h not in out]
    return out


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


__all__ = ["TASKS", "TaskSpec", "UnknownTaskError", "describe", "domains", "get_task", "gym_id", "make", "select",
           "task_names"]
