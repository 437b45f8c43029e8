"""Run episodes of a policy: the one episode loop, and the jobs that run it in the one worker pool
(`procs.process_pool`) for collection, reference scores and evaluation."""

from __future__ import annotations

import os
import queue as queue_mod
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from generalist import envs
from generalist.envs.base import TaskEnv
from generalist.experts import make_policy
from generalist.experts.base import Policy
from generalist.procs import process_pool, spawn_queue


@dataclass
class EpisodeResult:
    seed: int
    ret: float
    steps: int
    success: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Tally:
    """One episode's return, length and success, as its steps come in."""

    def __init__(self, env: TaskEnv, seed: int):
        self.key, self.seed = env.task.success_key, seed
        self.ret, self.steps, self.success = 0.0, 0, (False if self.key else None)

    def add(self, reward: float, info: dict) -> None:
        self.ret += reward
        self.steps += 1
        if self.key and info.get(self.key):
            self.success = True

    def result(self) -> EpisodeResult:
        return EpisodeResult(self.seed, float(self.ret), self.steps, self.success)


def run_episode(
    env: TaskEnv,
    policy: Policy,
    seed: int,
    on_step: Callable[[dict, Any, float, bool, bool, dict], None] | None = None,
    on_reset: Callable[[dict], None] | None = None,
) -> EpisodeResult:
    """Reset with `seed`, act until the episode ends; hooks see every observation and transition."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    if on_reset is not None:
        on_reset(obs)
    tally = _Tally(env, seed)
    while True:
        action = policy.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        tally.add(reward, info)
        if on_step is not None:
            on_step(obs, action, reward, terminated, truncated, info)
        if terminated or truncated:
            return tally.result()


def run_lockstep(envs_: list[TaskEnv], policy: Any, seeds: tuple[int, ...],
                 on_done: Callable[[EpisodeResult], None] | None = None,
                 on_step: Callable[[int, dict, Any, float, bool, bool, dict], None] | None = None,
                 on_reset: Callable[[int, dict], None] | None = None) -> list[EpisodeResult]:
    """Play one episode per env (env i on seeds[i]) at once, with a policy that acts for all of them in one
    call: `start(seeds)` once the envs are reset, `act_batch(observations)` for the episodes still going,
    `keep(places)` when some end (`AgentPolicy`, `DrivenBatch`). Results in seed order; `on_done(result)` as
    each episode ends; the hooks are `run_episode`'s with the episode's place in `seeds` first."""
    obs = [env.reset(seed=s)[0] for env, s in zip(envs_, seeds, strict=True)]
    policy.start(list(seeds))
    if on_reset is not None:
        for i, o in enumerate(obs):
            on_reset(i, o)
    tallies = [_Tally(env, s) for env, s in zip(envs_, seeds, strict=True)]
    live = list(range(len(envs_)))
    while live:
        actions = policy.act_batch([obs[i] for i in live])
        going = []
        for j, (i, action) in enumerate(zip(live, actions, strict=True)):
            obs[i], reward, terminated, truncated, info = envs_[i].step(action)
            tallies[i].add(reward, info)
            if on_step is not None:
                on_step(i, obs[i], action, reward, terminated, truncated, info)
            if terminated or truncated:
                if on_done is not None:
                    on_done(tallies[i].result())
            else:
                going.append(j)
        if len(going) < len(live):
            live = [live[j] for j in going]
            if live:
                policy.keep(going)
    return [t.result() for t in tallies]


def summarize(results: list[EpisodeResult]) -> dict[str, Any]:
    """Mean/std of returns (and success rate) over episodes."""
    rets = np.array([r.ret for r in results], dtype=np.float64)
    out: dict[str, Any] = {
        "episodes": len(results),
        "mean": float(rets.mean()) if len(rets) else float("nan"),
        "std": float(rets.std()) if len(rets) else float("nan"),
        "min": float(rets.min()) if len(rets) else float("nan"),
        "max": float(rets.max()) if len(rets) else float("nan"),
        "mean_steps": float(np.mean([r.steps for r in results])) if results else float("nan"),
    }
    if results and results[0].success is not None:
        out["success_rate"] = float(np.mean([bool(r.success) for r in results]))
    return out


PolicyFactory = Callable[[TaskEnv, int], Policy]


LockstepFactory = Callable[[TaskEnv, tuple[int, ...]], Any]


@dataclass(frozen=True)
class EpisodeJob:
    """Episodes of one policy on one task: a unit of work a worker process runs on its own env.

    `policy` must be picklable (a module-level function or a functools.partial of one): it is
    called once per episode with the env and the episode's seed. With `lockstep` it is a
    `LockstepFactory` instead, called once with an env and the seeds, that returns a policy playing
    them all at once, one env each (`run_lockstep`)."""

    task: str
    policy: PolicyFactory | LockstepFactory
    seeds: tuple[int, ...]
    label: str = ""
    lockstep: bool = False


def expert_factory(kind: str) -> PolicyFactory:
    """A picklable factory for 'expert' or 'random', seeded per episode."""
    return partial(_make_kind, kind)


def _make_kind(kind: str, env: TaskEnv, seed: int) -> Policy:
    return make_policy(kind, env, seed=seed)


def split_seeds(seeds: list[Any], parts: int) -> list[tuple[Any, ...]]:
    """Contiguous, nearly equal chunks of `seeds` (or of any list: driven jobs), no empty ones."""
    parts = max(1, min(parts, len(seeds)))
    bounds = np.linspace(0, len(seeds), parts + 1).round().astype(int)
    return [tuple(seeds[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


_PROGRESS: Any = None  # in a worker: the queue episodes are reported through


def _run_job(job: EpisodeJob) -> list[EpisodeResult]:
    def report(result: EpisodeResult) -> None:
        if _PROGRESS is not None:
            _PROGRESS.put((job.label, job.task, result))

    if job.lockstep:
        envs_ = []
        try:
            envs_ += [envs.make(job.task) for _ in job.seeds]
            return run_lockstep(envs_, job.policy(envs_[0], job.seeds), job.seeds, report)
        finally:
            for env in envs_:
                env.close()
    env = envs.make(job.task)
    try:
        out = []
        for s in job.seeds:
            out.append(run_episode(env, job.policy(env, s), s))
            report(out[-1])
        return out
    finally:
        env.close()


def worker_init(progress: Any = None) -> None:
    """One compute thread per worker process (W workers on W cores, not W x cores threads)."""
    global _PROGRESS
    _PROGRESS = progress
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run_jobs(jobs: list[EpisodeJob], workers: int = 1,
             progress: Callable[[str, str, EpisodeResult], None] | None = None,
             on_job: Callable[[EpisodeJob, list[EpisodeResult]], None] | None = None) -> list[list[EpisodeResult]]:
    """Run every job (in `workers` spawned processes when > 1); results in job order.

    `progress(label, task, result)` is called in this process after every episode, `on_job(job,
    results)` after every job (e.g. to keep finished work when a later job fails)."""
    if workers <= 1:
        results = []
        for job in jobs:
            results.append(_run_job(job))
            if progress:
                for r in results[-1]:
                    progress(job.label, job.task, r)
            if on_job:
                on_job(job, results[-1])
        return results
    progress_queue = spawn_queue()

    def drain(block: bool) -> int:
        n = 0
        while True:
            try:
                label, task, r = progress_queue.get(timeout=5) if block else progress_queue.get_nowait()
            except queue_mod.Empty:
                return n
            n += 1
            if progress:
                progress(label, task, r)
            if block:
                return n

    with process_pool(workers, worker_init, (progress_queue,)) as pool:
        futures = {pool.submit(_run_job, job): job for job in jobs}
        pending, reported = set(futures), 0
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            reported += drain(False)
            for f in done:
                res = f.result()  # surface a worker's exception now, not after every job ran
                if on_job:
                    on_job(futures[f], res)
        total = sum(len(j.seeds) for j in jobs)
        while reported < total and drain(True):  # the queue's feeder may trail the results
            reported += 1
        return [f.result() for f in futures]
