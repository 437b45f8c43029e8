"""The evaluation job: roll out a policy per task, score it against the references, write the report.

One path for every policy: the agent (a checkpoint), the experts and the random policy are all
`PolicyFactory`s run by the same episode jobs, in `workers` processes when asked.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from generalist import envs
from generalist.datasets.inspect import stored_seeds
from generalist.datasets.layout import MAIN_FILE, DatasetError, data_dir, write_json_atomic
from generalist.datasets.sampler import demonstration, open_tasks
from generalist.episodes import (
    EpisodeJob,
    EpisodeResult,
    LockstepFactory,
    PolicyFactory,
    expert_factory,
    run_jobs,
    split_seeds,
    worker_init,
)
from generalist.errors import GeneralistError
from generalist.eval import report
from generalist.eval.scores import aggregate
from generalist.eval.task_scores import EVAL_SEED, task_scores
from generalist.eval.video import record, side_by_side, write_gif
from generalist.experts import reference
from generalist.lock import WriterLock
from generalist.procs import process_pool


class EvalError(GeneralistError):
    """Bad evaluation input: the message says what to do."""


@dataclass
class EvalConfig:
    out: str
    run: str | None = None             # run directory or checkpoint (policy 'agent')
    tasks: list[str] | None = None     # default: every task the checkpoint was trained on
    episodes: int = 50
    workers: int = 1
    seed: int = EVAL_SEED
    policy: str = "agent"
    refresh_reference: bool = False
    videos: bool = True
    video_frames: int = 250
    wandb: str = "off"
    temperature: float = 0.0           # agent: 0 greedy, > 0 sample action tokens (seeded per episode)
    prompt: int = 0                    # agent: put the last N steps of a held-out expert episode first
    lockstep: int = 10                 # agent: episodes of a task a worker plays at once (one forward pass)


@functools.lru_cache(maxsize=8)
def _cached_agent(ckpt: str, task: str, temperature: float = 0.0, prompt: int = 0):
    """One agent per (checkpoint, task, temperature, prompt): `prompt` is only a key, so an agent that
    carries a demonstration prompt is never reused without one."""
    from generalist.agent.policy import AgentPolicy  # lazy (torch): only agent evaluations load it

    return AgentPolicy.from_checkpoint(Path(ckpt), task, temperature=temperature)


@functools.lru_cache(maxsize=8)
def _demonstrations(ckpt: str, task: str):
    """The task's dataset as the run split it (held-out episodes give the prompts)."""
    from generalist.agent import checkpoint  # lazy (torch)

    meta = checkpoint.load_meta(checkpoint.resolve(Path(ckpt)))
    train = meta.get("train", {})
    return open_tasks([Path(meta["data"][task]["path"])], train.get("val_fraction", 0.1), train.get("seed", 0))[task]


def _agent(ckpt: str, env, seed: int, temperature: float = 0.0, prompt: int = 0):
    """The agent for env's task; loaded once per process and task, reset by the episode loop and
    seeded by the episode's seed (sampling is then the same with any number of workers). With
    `prompt` N each episode starts from the last N steps of a held-out expert episode (chosen by seed)."""
    agent = _cached_agent(ckpt, env.task.name, temperature, prompt)
    agent.seed(seed)
    if prompt:
        agent.set_prompt(*demonstration(_demonstrations(ckpt, env.task.name), prompt, seed))
    return agent


def _agent_lockstep(ckpt: str, env, seeds: tuple[int, ...], temperature: float = 0.0):
    """The agent for env's task, to play `seeds` at once (`run_lockstep` starts it; each samples from its seed)."""
    return _cached_agent(ckpt, env.task.name, temperature, 0)


def policy_factory(kind: str, ckpt: Path | None, temperature: float = 0.0, prompt: int = 0) -> PolicyFactory:
    """A picklable factory for 'agent' (needs `ckpt`), 'expert' or 'random'."""
    if kind == "agent":
        if ckpt is None:
            raise EvalError("--policy agent needs a run directory or checkpoint")
        return functools.partial(_agent, str(ckpt), temperature=temperature, prompt=prompt)
    if kind not in ("expert", "random"):
        raise EvalError(f"unknown policy {kind!r}; use agent, expert or random")
    return expert_factory(kind)


def lockstep_factory(kind: str, ckpt: Path | None, temperature: float = 0.0, prompt: int = 0) -> LockstepFactory | None:
    """A picklable factory of the agent that plays a chunk of episodes in lockstep (`run_lockstep` starts it);
    None where episodes are played one by one: experts, random, and prompted agents (whose demonstrations
    may differ in length, so they cannot share a forward pass)."""
    if kind != "agent" or prompt:
        return None
    return functools.partial(_agent_lockstep, str(ckpt), temperature=temperature)


def resolve(cfg: EvalConfig) -> tuple[Path | None, list[str]]:
    """The checkpoint (for the agent) and the task list, checked; raises EvalError."""
    if cfg.episodes < 1:
        raise EvalError("--episodes must be at least 1")
    if cfg.workers < 1:
        raise EvalError(f"--workers must be at least 1, got {cfg.workers}")
    if cfg.lockstep < 1:
        raise EvalError(f"--lockstep must be at least 1 (episodes played at once), got {cfg.lockstep}")
    if cfg.seed < 0:
        raise EvalError(f"--seed must be >= 0, got {cfg.seed}")
    if cfg.prompt < 0:
        raise EvalError(f"--prompt must be >= 0 (steps of a demonstration), got {cfg.prompt}")
    if not cfg.temperature >= 0:
        raise EvalError(f"--temperature must be >= 0 (0 decodes greedily), got {cfg.temperature}")
    if cfg.prompt < 0 or (cfg.prompt and cfg.policy != "agent"):
        raise EvalError("--prompt N takes N >= 0 steps and applies to --policy agent only")
    ckpt = None
    if cfg.policy == "agent":
        if not cfg.run:
            raise EvalError("give a run directory or checkpoint to evaluate (or --policy expert|random)")
        from generalist.agent import checkpoint  # lazy (torch): expert/random evaluations do not need it

        ckpt = checkpoint.resolve(Path(cfg.run))
        meta = checkpoint.load_meta(ckpt)
        known = sorted(meta["layouts"])
        tasks = _select(cfg.tasks, known) if cfg.tasks else known
        unseen = [t for t in tasks if t not in known]
        if unseen:
            raise EvalError(f"the checkpoint was never trained on {', '.join(unseen)}; it knows: {', '.join(known)}")
    else:
        if not cfg.tasks:
            raise EvalError("--tasks is required with --policy expert|random")
        tasks = _select(cfg.tasks)
    if ckpt is not None and cfg.prompt:
        gone = [t for t in tasks if not Path(meta["data"][t]["path"]).exists()]
        if gone:
            raise EvalError(f"--prompt reads expert episodes from the training data, which is gone for "
                            f"{', '.join(gone)} ({meta['data'][gone[0]]['path']}); run without --prompt")
    if ckpt is not None:
        seeds = set(range(cfg.seed, cfg.seed + cfg.episodes))
        for task, spec in meta.get("data", {}).items():
            used = seeds & training_seeds(Path(spec["path"]))
            if task in tasks and used:
                raise EvalError(f"{task}: seeds {min(used)}.. were used to collect the training data "
                                f"({spec['path']}); pick another --seed (the default, {EVAL_SEED}, is never "
                                "used by collection)")
    if not cfg.refresh_reference:
        stored = reference.load()
        missing = [t for t in tasks if not {"expert", "random"} <= set(stored.get(t, {}))]
        if missing:
            raise EvalError(f"no stored reference scores for {', '.join(missing)}; run `generalist experts score "
                            f"{' '.join(missing)} --save` or pass --refresh-reference")
    return ckpt, tasks


def training_seeds(ds_dir: Path) -> set[int]:
    """Seeds of the episodes stored in a dataset (empty when it is no longer there)."""
    try:
        return stored_seeds(ds_dir)
    except DatasetError:
        raise EvalError(f"{data_dir(ds_dir) / MAIN_FILE} (the training data) cannot be read to rule out its seeds; "
                        "restore it, or evaluate on a copy of the run without its data spec") from None


class Partial:
    """Finished (policy, task) results of an evaluation in progress, one JSON file each, for reruns."""

    def __init__(self, root: Path, key: dict[str, Any]):
        self.root, self.key = root, key

    def load(self) -> dict[tuple[str, str], list[EpisodeResult]]:
        """What an earlier, interrupted run with the same settings finished; refuses other settings."""
        key_file = self.root / "settings.json"
        if not key_file.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            write_json_atomic(key_file, self.key)
            return {}
        try:
            old = json.loads(key_file.read_text())
        except ValueError:
            old = None
        if old != self.key:
            raise EvalError(f"{self.root} holds an interrupted evaluation with other settings ({key_file}); "
                            "rerun it with the same ones, or choose another --out")
        found = {}
        for f in sorted(self.root.glob("*/*.json")):
            try:
                rows = json.loads(f.read_text())
                found[(f.parent.name, f.stem)] = [EpisodeResult(**r) for r in rows]
            except (ValueError, TypeError):
                continue  # unreadable: that task is simply run again
        return found

    def save(self, label: str, task: str, results: list[EpisodeResult]) -> None:
        (self.root / label).mkdir(parents=True, exist_ok=True)
        rows = [asdict(r) for r in sorted(results, key=lambda r: r.seed)]
        write_json_atomic(self.root / label / f"{task}.json", rows)


def _select(patterns: list[str], among: list[str] | None = None) -> list[str]:
    """--tasks with patterns expanded (among the checkpoint's tasks for an agent); EvalError when none match."""
    try:
        return envs.select(patterns, among)
    except envs.UnknownTaskError as e:
        raise EvalError(str(e)) from None


def episode_jobs(tasks: list[str], kinds: dict[str, PolicyFactory], episodes: int, seed: int,
                 workers: int, lockstep: dict[str, tuple[LockstepFactory, int]] | None = None) -> list[EpisodeJob]:
    """Split every (policy, task) into chunks of seeds so that `workers` processes stay busy. A policy in
    `lockstep` (label -> (factory, N)) plays chunks of N episodes at once instead: its chunks do not depend
    on `workers`, so neither do its results."""
    n = len(tasks) * len(kinds)
    chunks = max(1, -(-2 * workers // n)) if workers > 1 else 1
    seeds = list(range(seed, seed + episodes))
    lockstep = lockstep or {}
    jobs = []
    for label, factory in kinds.items():
        for task in tasks:
            if label in lockstep:
                batched, size = lockstep[label]
                jobs += [EpisodeJob(task, batched, part, label, lockstep=True)
                         for part in split_seeds(seeds, -(-episodes // size))]
            else:
                jobs += [EpisodeJob(task, factory, part, label) for part in split_seeds(seeds, chunks)]
    return jobs


def _video(task: str, agent: PolicyFactory, seed: int, frames: int, path: str, with_expert: bool) -> dict[str, Any]:
    a, ret_a = record(task, agent, seed, frames)
    streams, info = [a], {"seed": seed, "frames": len(a), "agent_return": ret_a}
    if with_expert:
        e, ret_e = record(task, expert_factory("expert"), seed, frames)
        streams.append(e)
        info["expert_return"] = ret_e
    write_gif(side_by_side(*streams), Path(path))
    info["path"] = Path(path).name
    return info


def record_videos(tasks: list[str], factory: PolicyFactory, kind: str, seed: int, frames: int, out: Path,
                  workers: int, progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """One GIF per task (agent left, expert right on the same seed) under out/videos/."""
    args = [(t, factory, seed, frames, str(out / "videos" / f"{t}.gif"), kind != "expert") for t in tasks]
    res = {}
    if workers <= 1:
        for a in args:
            res[a[0]] = _video(*a)
            if progress:
                progress(a[0])
        return res
    with process_pool(workers, worker_init) as pool:
        futures = {a[0]: pool.submit(_video, *a) for a in args}
        for t, f in futures.items():
            res[t] = f.result()
            if progress:
                progress(t)
    return res


def progress_bar(cfg: EvalConfig, n_tasks: int):
    """A tqdm bar over every episode (and video) `evaluate(cfg)` will run, and the callback driving it."""
    kinds = len({cfg.policy, "expert", "random"}) if cfg.refresh_reference else 1
    bar = tqdm(total=n_tasks * (cfg.episodes * kinds + int(cfg.videos)), unit="ep", desc="eval",
               dynamic_ncols=True, delay=0.5)  # a refusal before the first episode prints no bar

    def tick(stage: str, task: str, ret: float | None) -> None:
        bar.update(1)
        bar.set_postfix(stage=stage, task=task, **({"ret": f"{ret:.1f}"} if ret is not None else {}))

    return bar, tick


def evaluate(cfg: EvalConfig, progress: Callable[[str, str, float | None], None] | None = None) -> dict[str, Any]:
    """Run the evaluation, write out/scores.json, the videos and the report; returns the scores.

    `progress(stage, task, return_or_None)` is called after every episode and every video. --out is
    locked and checked writable before the first rollout; each finished (policy, task) is kept in
    out/partial/, so rerunning an interrupted evaluation continues where it stopped."""
    ckpt, tasks = resolve(cfg)
    out = Path(cfg.out)
    with WriterLock(out, "eval"):
        return _evaluate(cfg, ckpt, tasks, out, progress)


def _evaluate(cfg: EvalConfig, ckpt: Path | None, tasks: list[str], out: Path,
              progress: Callable[[str, str, float | None], None] | None) -> dict[str, Any]:
    if (out / "scores.json").exists():
        raise EvalError(f"{out / 'scores.json'} exists; choose another --out (results are never overwritten)")
    kinds = {cfg.policy: policy_factory(cfg.policy, ckpt, cfg.temperature, cfg.prompt)}
    batched = lockstep_factory(cfg.policy, ckpt, cfg.temperature, cfg.prompt)
    if cfg.refresh_reference:
        for k in ("expert", "random"):
            kinds.setdefault(k, expert_factory(k))
    kept = Partial(out / "partial", {"policy": cfg.policy, "checkpoint": str(ckpt) if ckpt else None,
                                     "seed": cfg.seed, "episodes": cfg.episodes, "temperature": cfg.temperature,
                                     "lockstep": cfg.lockstep})
    results: dict[tuple[str, str], list] = kept.load()
    for (label, task), rs in results.items():
        if progress:
            for r in rs:
                progress(label, task, r.ret)
    todo = [t for t in tasks if any((k, t) not in results for k in kinds)]
    jobs = [j for j in episode_jobs(todo, kinds, cfg.episodes, cfg.seed, cfg.workers,
                                    {cfg.policy: (batched, cfg.lockstep)} if batched else None)
            if (j.label, j.task) not in results]
    tick = (lambda label, task, r: progress(label, task, r.ret)) if progress else None
    running: dict[tuple[str, str], list] = {}

    def keep(job: EpisodeJob, part: list) -> None:
        done = running.setdefault((job.label, job.task), [])
        done.extend(part)
        if len(done) == cfg.episodes:
            kept.save(job.label, job.task, done)

    for job, part in zip(jobs, run_jobs(jobs, cfg.workers, tick, keep), strict=True):
        results.setdefault((job.label, job.task), []).extend(part)
    stored = reference.load()
    per_task = {}
    for task in tasks:
        if cfg.refresh_reference:
            exp = [r.ret for r in results[("expert", task)]]
            rnd = [r.ret for r in results[("random", task)]]
            ref_src = f"measured on seeds {cfg.seed}..{cfg.seed + cfg.episodes - 1}"
        else:
            exp, rnd = stored[task]["expert"]["returns"], stored[task]["random"]["returns"]
            ref_src = "package reference_scores.json"
        entry = task_scores(task, sorted(results[(cfg.policy, task)], key=lambda r: r.seed),
                            float(np.mean(exp)), float(np.mean(rnd)))
        if cfg.prompt:  # what the context held of the asked-for prompt
            entry["prompt_steps"] = min(cfg.prompt, _cached_agent(str(ckpt), task, cfg.temperature, cfg.prompt).prompt_room())
        entry.update(expert_returns=[round(float(x), 4) for x in exp],
                     random_returns=[round(float(x), 4) for x in rnd], reference=ref_src)
        per_task[task] = entry
    domains = sorted({v["domain"] for v in per_task.values()})
    scores: dict[str, Any] = {
        "policy": cfg.policy, "checkpoint": str(ckpt) if ckpt else None, "seed": cfg.seed,
        "episodes": cfg.episodes, "config": asdict(cfg),
        "tasks": per_task,
        "aggregate": aggregate({t: v["normalized"] for t, v in per_task.items()}),
        "domains": {d: aggregate({t: v["normalized"] for t, v in per_task.items() if v["domain"] == d})
                    for d in domains},
    }
    if cfg.videos:
        vid_tick = (lambda t: progress("video", t, None)) if progress else None
        scores["videos"] = record_videos(tasks, kinds[cfg.policy], cfg.policy, cfg.seed, cfg.video_frames, out,
                                         cfg.workers, vid_tick)
    write_json_atomic(out / "scores.json", scores)
    report.write(out, scores)
    if cfg.wandb != "off":
        report.log_wandb(out, scores, cfg.wandb, ckpt)
    return scores
