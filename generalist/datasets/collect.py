"""Collection runs: experts play their tasks; episodes go to crash-safe datasets, one per task.

Episode k of a run uses seed S + k. Workers are separate processes (each with its own env and
expert) that write finished episodes to temporary files; the parent alone commits them, so the
dataset index only ever grows by whole episodes. Shards of a larger run are just runs with
disjoint seeds and --out paths, so any scheduler can launch them unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import as_completed
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from generalist import envs
from generalist.datasets.dagger import DriverFactory, check_driver_prob
from generalist.datasets.layout import DEFAULT_NAME, DatasetError, dataset_dir, has_episode_data
from generalist.datasets.noise import check_action_noise
from generalist.datasets.recorder import record_driven_lockstep, record_episode
from generalist.datasets.writer import DatasetExistsError, DatasetWriter, exists_message, write_episode_file
from generalist.episodes import split_seeds, worker_init
from generalist.errors import ConfigError
from generalist.experts import make_policy
from generalist.fs import check_not_a_file
from generalist.lock import WriterLock
from generalist.procs import process_pool


@dataclass
class CollectConfig:
    """One collection run."""

    tasks: list[str]
    episodes: int
    out: Path
    workers: int = 1
    seed: int = 0
    resume: bool = False
    name: str = DEFAULT_NAME
    finalize: bool = True  # pack each completed dataset into one main_data.hdf5
    action_noise: float = 0.0  # DART: perturb executed actions, keep expert labels (datasets/noise.py)
    # DAgger (datasets/dagger.py): `driver(env)` builds the policy that acts on a share `driver_prob` of the steps
    # while the expert labels every state; `driver_name` (e.g. the checkpoint path) is stored with each episode.
    driver: DriverFactory | None = None
    driver_name: str = ""
    driver_prob: float = 1.0
    lockstep: int = 16  # driven episodes a worker plays at once (one batched forward pass of the driver a step)


@dataclass
class EpisodeDone:
    task: str
    seed: int
    ret: float
    steps: int
    tmp: str
    seconds: float


# ---------------------------------------------------------------- worker side
_ENVS: dict[str, Any] = {}
_DRIVERS: dict[str, Any] = {}


def _env(task: str):
    """This process's env for `task`, built once (building a MuJoCo env costs ~0.1-1 s)."""
    env = _ENVS.get(task)
    if env is None:
        env = _ENVS[task] = envs.make(task)
    return env


def _driver(task: str, factory: DriverFactory, env=None):
    """This process's driver for `task`, built once (loading a checkpoint costs ~0.1 s) for `env` (default: the
    process's env of the task)."""
    d = _DRIVERS.get(task)
    if d is None:
        d = _DRIVERS[task] = factory(env if env is not None else _env(task))
    return d


def run_job(task: str, seed: int, tmp: str, action_noise: float = 0.0) -> EpisodeDone:
    """Play and record one expert episode (executed actions perturbed with `action_noise`), write it to `tmp`.
    Runs in a worker or inline."""
    env = _env(task)
    t0 = time.perf_counter()
    policy = make_policy("expert", env, seed=seed)
    ep, ret = record_episode(env, policy, seed, action_noise)
    write_episode_file(Path(tmp), ep)
    return EpisodeDone(task, seed, ret, ep.steps, tmp, time.perf_counter() - t0)


def run_driven_jobs(task: str, jobs: list[tuple[str, int]], driver: DriverFactory, driver_prob: float = 1.0,
                    driver_name: str = "") -> list[EpisodeDone]:
    """Play and record driven episodes (tmp, seed) at once, one env and expert each, the driver acting for all of
    them in one batched call a step; write each to its tmp. Runs in a worker or inline."""
    t0 = time.perf_counter()
    env_list = []
    try:
        env_list += [envs.make(task) for _ in jobs]
        experts = [make_policy("expert", env, seed=seed) for env, (_, seed) in zip(env_list, jobs, strict=True)]
        recorded = record_driven_lockstep(env_list, experts, [seed for _, seed in jobs], _driver(task, driver, env_list[0]),
                                          driver_prob, driver_name)
    finally:
        for env in env_list:
            env.close()
    seconds = (time.perf_counter() - t0) / len(jobs)
    out = []
    for (tmp, seed), (ep, ret) in zip(jobs, recorded, strict=True):
        write_episode_file(Path(tmp), ep)
        out.append(EpisodeDone(task, seed, ret, ep.steps, tmp, seconds))
    return out


# ---------------------------------------------------------------- parent side
def check_config(cfg: CollectConfig) -> None:
    """Refuse a bad task, count, seed or noise level before anything is created."""
    for t in cfg.tasks:
        envs.get_task(t)
    if cfg.episodes < 1:
        raise DatasetError("--episodes must be at least 1")
    if cfg.workers < 1:
        raise DatasetError("--workers must be at least 1")
    if cfg.lockstep < 1:
        raise DatasetError("--lockstep must be at least 1")
    if cfg.seed < 0:
        raise DatasetError(f"--seed must be >= 0 (episode k uses seed SEED+k), got {cfg.seed}")
    check_action_noise(cfg.action_noise, None)
    if cfg.driver is not None:
        check_driver_prob(cfg.driver_prob)
        if cfg.action_noise:
            raise ConfigError("--driver and --action-noise are exclusive: a driven episode's executed actions "
                              "are the driver's")


def open_writers(cfg: CollectConfig) -> dict[str, DatasetWriter]:
    """Validate every task and destination before anything is written; open one writer per task."""
    check_config(cfg)
    if not cfg.resume:  # refuse before creating anything, for every task at once
        for t in cfg.tasks:
            d = dataset_dir(cfg.out, t, cfg.name)
            if has_episode_data(d):
                raise DatasetExistsError(exists_message(d))
    for t in cfg.tasks:  # reused by inline collection (workers=1)
        check_action_noise(cfg.action_noise, _env(t).action_space, t)
    writers = {}
    for t in cfg.tasks:
        env = _env(t)
        make_policy("expert", env)  # fail on a missing expert (or checkpoint) before writing
        if cfg.driver is not None:
            _driver(t, cfg.driver)  # and on a driver that cannot play the task
        writers[t] = DatasetWriter(
            dataset_dir(cfg.out, t, cfg.name), t, env.observation_space, env.action_space,
            cfg.seed, envs.get_task(t).expert, gym.spec(envs.gym_id(t)).to_json(), cfg.resume,
            cfg.action_noise)
    if cfg.workers > 1:
        _close_envs()
    return writers


def _close_envs() -> None:
    for env in _ENVS.values():
        env.close()
    _ENVS.clear()
    _DRIVERS.clear()


def pending_jobs(cfg: CollectConfig, writers: dict[str, DatasetWriter]) -> list[tuple[str, int]]:
    """(task, seed) for every episode index k < episodes whose seed S + k is not yet stored."""
    jobs = []
    for t in cfg.tasks:
        done = set(writers[t].seeds)
        jobs += [(t, cfg.seed + k) for k in range(cfg.episodes) if cfg.seed + k not in done]
    return jobs


def _results(cfg: CollectConfig, jobs: list[tuple[str, str, int]]) -> Iterator[EpisodeDone]:
    if cfg.driver is not None:
        yield from _driven_results(cfg, jobs)
        return
    if cfg.workers <= 1:
        for task, tmp, seed in jobs:
            yield run_job(task, seed, tmp, cfg.action_noise)
        return
    with process_pool(cfg.workers, worker_init) as pool:
        futures = [pool.submit(run_job, t, s, tmp, cfg.action_noise) for t, tmp, s in jobs]
        for f in as_completed(futures):
            yield f.result()


def _driven_results(cfg: CollectConfig, jobs: list[tuple[str, str, int]]) -> Iterator[EpisodeDone]:
    """Driven episodes in chunks played in lockstep: enough chunks for every worker, at most `lockstep` each."""
    chunks = []
    for task in dict.fromkeys(t for t, _, _ in jobs):
        mine = [(tmp, s) for t, tmp, s in jobs if t == task]
        chunks += [(task, list(part)) for part in split_seeds(mine, max(cfg.workers, -(-len(mine) // cfg.lockstep)))]
    if cfg.workers <= 1:
        for task, part in chunks:
            yield from run_driven_jobs(task, part, cfg.driver, cfg.driver_prob, cfg.driver_name)
        return
    with process_pool(cfg.workers, worker_init) as pool:  # one compute thread each (the driver runs torch)
        futures = [pool.submit(run_driven_jobs, task, part, cfg.driver, cfg.driver_prob, cfg.driver_name)
                   for task, part in chunks]
        for f in as_completed(futures):
            yield from f.result()


def collect(cfg: CollectConfig, on_episode: Callable[[EpisodeDone, int], None] | None = None,
            on_start: Callable[[int], None] | None = None) -> dict[str, DatasetWriter]:
    """Run the collection; `on_start(n_jobs)` once, then `on_episode(result, id)` after each commit.

    Each task's dataset directory is locked for the whole run: a second writer is refused."""
    check_config(cfg)
    check_not_a_file(Path(cfg.out))
    with ExitStack() as locks:
        for t in cfg.tasks:
            locks.enter_context(WriterLock(dataset_dir(cfg.out, t, cfg.name), "collect"))
        return _collect_locked(cfg, on_episode, on_start)


def _collect_locked(cfg: CollectConfig, on_episode: Callable[[EpisodeDone, int], None] | None,
                    on_start: Callable[[int], None] | None) -> dict[str, DatasetWriter]:
    writers = open_writers(cfg)
    jobs = [(t, str(writers[t].new_part_path()), s) for t, s in pending_jobs(cfg, writers)]
    if on_start is not None:
        on_start(len(jobs))
    remaining = {t: sum(1 for j in jobs if j[0] == t) for t in cfg.tasks}
    for t in cfg.tasks:
        if remaining[t] == 0 and cfg.finalize:
            writers[t].finalize()
    for res in _results(cfg, jobs):
        ep_id = writers[res.task].commit(Path(res.tmp))
        remaining[res.task] -= 1
        if on_episode is not None:
            on_episode(res, ep_id)
        if remaining[res.task] == 0 and cfg.finalize:
            writers[res.task].finalize()
    _close_envs()
    return writers
