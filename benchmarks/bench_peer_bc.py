"""Peer benchmark: the distilled agent against d3rlpy's behaviour cloning, task by task.

Why: one model trained on every task at once should be compared with the obvious specialist
baseline, a behaviour-cloning MLP per task trained on the same expert episodes for the same compute.
d3rlpy's `BC` (continuous, default encoder, `StandardObservationScaler`, batch 256, CPU) is trained
on each state-observation task under ROOT, one after the other, for an even share of the wall time
the quick suite's training stage took (`seconds.train` in the run's `run.json`, or `--seconds`).
Both policies are then played on the same unseen seeds (2,000,000+, as `generalist eval`) through
the project's evaluation path (`EpisodeJob`s in `--workers` processes) and scored against the
package's expert and random reference returns. Prints per task the mean returns with bootstrap 95%
intervals, expert and random references, normalized scores, success rates and the ratio
agent / BC of normalized scores (paired bootstrap over seeds); writes the same to OUT/peer_bc.json,
with the BC models (OUT/models/<task>.d3) and d3rlpy's logs (OUT/d3rlpy_logs; never the cwd).

    python benchmarks/bench_peer_bc.py --data runs/quick/data --run runs/quick/run --episodes 20
    python benchmarks/bench_peer_bc.py --data ROOT --agent-scores runs/quick/eval/scores.json
    python benchmarks/bench_peer_bc.py --data ROOT --seconds 600          # BC only

Needs the `peer` extra: `pip install -e ".[peer]"` (d3rlpy 2.8.0; 2.8.1 is the same library code but
pins gymnasium==1.0.0, which conflicts with generalist's gymnasium>=1.2).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import torch

from generalist.datasets.layout import (
    MAIN_FILE,
    data_dir,
    deserialize_space,
    find_datasets,
    read_metadata,
    write_json_atomic,
)
from generalist.episodes import EpisodeResult, run_jobs
from generalist.eval.evaluate import (
    EvalConfig,
    EvalError,
    episode_jobs,
    policy_factory,
    resolve,
    training_seeds,
)
from generalist.eval.scores import aggregate, bootstrap_ci, normalized
from generalist.eval.task_scores import EVAL_SEED, task_scores
from generalist.experts import reference
from generalist.experts.base import Policy

EPOCH_STEPS = 200  # d3rlpy commits its logged metrics once per epoch of this many steps


class BenchError(Exception):
    """Bad input: the message says what to do."""


def _d3rlpy() -> Any:
    """d3rlpy, imported with its console logging limited to warnings."""
    try:
        import d3rlpy
    except ImportError:
        raise BenchError('d3rlpy is not installed: pip install -e ".[peer]"') from None
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return d3rlpy


# --- datasets -------------------------------------------------------------------------------------

def state_datasets(root: Path) -> dict[str, Path]:
    """{task: dataset dir} for every dataset under root with a state (and no image) observation and a
    Box action space."""
    out: dict[str, Path] = {}
    for ds in find_datasets(root):
        meta = read_metadata(ds)
        task = meta.get("generalist", {}).get("task") or meta["dataset_id"].split("/")[0]
        obs, act = deserialize_space(meta["observation_space"]), deserialize_space(meta["action_space"])
        keys = set(obs.spaces) if isinstance(obs, gym.spaces.Dict) else set()
        if "state" in keys and "image" not in keys and isinstance(act, gym.spaces.Box):
            if task in out:
                raise BenchError(f"two datasets for {task}: {out[task]} and {ds}; pass a root holding one")
            out[task] = ds
    return out


def mdp_dataset(ds_dir: Path) -> tuple[Any, dict[str, int]]:
    """A d3rlpy MDPDataset of every episode: state observations (the last one of each episode, which no
    action follows, dropped), actions, rewards, terminals from terminations, timeouts from truncations
    (an episode ending on neither is marked timed out so that d3rlpy splits episodes where we do)."""
    d3rlpy = _d3rlpy()
    obs, act, rew, term, tout = [], [], [], [], []
    with h5py.File(data_dir(ds_dir) / MAIN_FILE, "r") as f:
        for name in sorted(f, key=lambda k: int(k.split("_")[-1])):
            g = f[name]
            n = int(g["actions"].shape[0])
            if n == 0:
                continue
            obs.append(np.asarray(g["observations/state"][:n], dtype=np.float32))
            act.append(np.asarray(g["actions"][:], dtype=np.float32).reshape(n, -1))
            rew.append(np.asarray(g["rewards"][:], dtype=np.float32))
            t = np.asarray(g["terminations"][:], dtype=np.float32)
            tr = np.asarray(g["truncations"][:], dtype=np.float32)
            if not (t[-1] or tr[-1]):
                tr[-1] = 1.0
            term.append(t)
            tout.append(tr)
    if not obs:
        raise BenchError(f"{ds_dir} holds no episodes")
    ds = d3rlpy.dataset.MDPDataset(np.concatenate(obs), np.concatenate(act), np.concatenate(rew),
                                   np.concatenate(term), np.concatenate(tout),
                                   action_space=d3rlpy.ActionSpace.CONTINUOUS)
    return ds, {"episodes": len(obs), "transitions": int(sum(len(o) for o in obs))}


# --- BC training ------------------------------------------------------------------------------------

class _TimeUp(Exception):
    pass


def train_bc(task: str, ds_dir: Path, seconds: float, out: Path, seed: int = 0) -> dict[str, Any]:
    """Train BC on one task's dataset until `seconds` of wall time (dataset loading included) are spent;
    saves OUT/models/<task>.d3 and logs under OUT/d3rlpy_logs/<task>."""
    d3rlpy = _d3rlpy()
    t0 = time.perf_counter()
    d3rlpy.seed(seed)
    dataset, info = mdp_dataset(ds_dir)
    bc = d3rlpy.algos.BCConfig(batch_size=256,
                               observation_scaler=d3rlpy.preprocessing.StandardObservationScaler()
                               ).create(device=False)
    done = {"steps": 0, "loss": float("nan")}

    def stop_when_spent(_algo: Any, _epoch: int, total_step: int) -> None:
        done["steps"] = total_step
        if time.perf_counter() - t0 >= seconds:
            raise _TimeUp

    fitter = bc.fitter(dataset, n_steps=10 ** 12, n_steps_per_epoch=EPOCH_STEPS,
                       logger_adapter=d3rlpy.logging.FileAdapterFactory(root_dir=str(out / "d3rlpy_logs")),
                       experiment_name=task, with_timestamp=False, show_progress=False,
                       save_interval=10 ** 12, callback=stop_when_spent)
    try:
        for _epoch, metrics in fitter:
            done["loss"] = float(metrics.get("loss", float("nan")))
    except _TimeUp:
        pass
    wall = time.perf_counter() - t0
    if done["steps"] == 0:
        raise BenchError(f"{task}: no BC step fitted in {seconds:.1f} s; give more --seconds")
    (out / "models").mkdir(parents=True, exist_ok=True)
    bc.save(str(out / "models" / f"{task}.d3"))
    return {**info, "steps": done["steps"], "seconds": wall, "steps_per_s": done["steps"] / wall,
            "last_epoch_loss": done["loss"], "dataset": str(ds_dir)}


# --- BC as a policy of the evaluation path ---------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _load_bc(path: str) -> Any:
    return _d3rlpy().load_learnable(path, device=False)


class BCPolicy(Policy):
    """d3rlpy BC acting on the env's state observation; no memory, so reset() does nothing."""

    name = "d3rlpy-bc"

    def __init__(self, env: Any, algo: Any):
        super().__init__(env)
        self.algo = algo
        self.low, self.high = env.action_space.low, env.action_space.high

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        a = self.algo.predict(np.asarray(obs["state"], dtype=np.float32)[None])[0]
        return np.clip(a, self.low, self.high).astype(np.float32)


def bc_policy(models: str, env: Any, seed: int) -> BCPolicy:
    """Picklable factory (via functools.partial): the BC model of env's task, loaded once per process."""
    return BCPolicy(env, _load_bc(str(Path(models) / f"{env.task.name}.d3")))


# --- scoring -----------------------------------------------------------------------------------------

def side(returns: list[float], seeds: list[int], success_rate: float | None, expert: float,
         rnd: float) -> dict[str, Any]:
    """Mean return and normalized score with bootstrap 95% intervals (normalization is affine, so the
    interval of the normalized mean is the normalized interval of the mean)."""
    r = np.asarray(returns, dtype=np.float64)
    lo, hi = bootstrap_ci(r)
    out: dict[str, Any] = {"mean": float(r.mean()), "ci95": [lo, hi],
                           "normalized": normalized(float(r.mean()), expert, rnd),
                           "normalized_ci95": sorted([normalized(lo, expert, rnd), normalized(hi, expert, rnd)]),
                           "episodes": len(r), "returns": [round(float(x), 4) for x in r],
                           "seeds": [int(s) for s in seeds]}
    if success_rate is not None:
        out["success_rate"] = float(success_rate)
    return out


def ratio(agent: dict[str, Any], bc: dict[str, Any], expert: float, rnd: float) -> dict[str, Any]:
    """agent / BC of normalized scores, with a paired bootstrap interval (seeds resampled, both policies'
    returns on each drawn seed). Undefined (None) when BC's normalized score is not positive."""
    if bc["normalized"] <= 0:
        return {"ratio": None, "ratio_ci95": None}
    value = agent["normalized"] / bc["normalized"]
    if agent["seeds"] != bc["seeds"]:
        return {"ratio": value, "ratio_ci95": None}
    a, b = np.asarray(agent["returns"]), np.asarray(bc["returns"])

    def stat(idx: np.ndarray) -> float:
        i = idx.astype(int)
        nb = normalized(float(b[i].mean()), expert, rnd)
        return normalized(float(a[i].mean()), expert, rnd) / nb if nb > 0 else float("nan")

    lo, hi = bootstrap_ci(np.arange(len(b)), stat)
    return {"ratio": value, "ratio_ci95": [lo, hi]}


# --- the run ---------------------------------------------------------------------------------------

def find_run_json(paths: list[Path]) -> Path | None:
    """The first run.json with seconds.train at or above any of `paths` (up to 3 levels up)."""
    for p in paths:
        for d in [p, *list(p.resolve().parents)[:3]]:
            f = d / "run.json"
            if f.is_file() and "train" in json.loads(f.read_text()).get("seconds", {}):
                return f
    return None


def fmt(x: float | None, ci: list[float] | None = None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    s = f"{x:.{digits}f}"
    return s + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def print_table(rows: dict[str, dict[str, Any]], has_agent: bool) -> None:
    head = ["task", "expert", "random"]
    head += ["agent return", "agent norm."] if has_agent else []
    head += ["BC return", "BC norm.", "BC steps"]
    head += ["success agent/BC", "ratio agent/BC"] if has_agent else ["BC success"]
    lines = [head]
    for task, r in rows.items():
        b = r["bc"]
        line = [task, fmt(r["expert_mean"]), fmt(r["random_mean"])]
        if has_agent:
            line += [fmt(r["agent"]["mean"], r["agent"]["ci95"]),
                     fmt(r["agent"]["normalized"], r["agent"]["normalized_ci95"], 2)]
        line += [fmt(b["mean"], b["ci95"]), fmt(b["normalized"], b["normalized_ci95"], 2), str(r["bc_train"]["steps"])]
        if has_agent:
            sa, sb = r["agent"].get("success_rate"), b.get("success_rate")
            line += ["-" if sa is None and sb is None else f"{fmt(sa, digits=2)}/{fmt(sb, digits=2)}",
                     fmt(r["ratio"], r["ratio_ci95"], 2)]
        else:
            line.append(fmt(b.get("success_rate"), digits=2) if "success_rate" in b else "-")
        lines.append(line)
    widths = [max(len(ln[i]) for ln in lines) for i in range(len(head))]
    for k, ln in enumerate(lines):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(ln, widths, strict=True))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def run(a: argparse.Namespace) -> dict[str, Any]:
    root = Path(a.data)
    if not root.exists():
        raise BenchError(f"--data {root} does not exist")
    found = state_datasets(root)
    if not found:
        raise BenchError(f"no state-observation dataset with a Box action space under {root}")
    tasks = list(a.tasks or sorted(found))
    missing = [t for t in tasks if t not in found]
    if missing:
        raise BenchError(f"no state dataset under {root} for {', '.join(missing)}; found: {', '.join(sorted(found))}")

    # the agent: a stored scores.json, a checkpoint to evaluate, or nothing
    agent_scores = json.loads(Path(a.agent_scores).read_text()) if a.agent_scores else None
    ckpt = None
    episodes, seed = a.episodes or 20, a.seed if a.seed is not None else EVAL_SEED
    if agent_scores is not None:
        for name, theirs, ours in (("--episodes", agent_scores["episodes"], a.episodes),
                                   ("--seed", agent_scores["seed"], a.seed)):
            if ours is not None and ours != theirs:
                raise BenchError(f"{a.agent_scores} was played with {name} {theirs}; BC must play the same seeds "
                                 f"(drop {name} or re-evaluate the agent with --run)")
        episodes, seed = int(agent_scores["episodes"]), int(agent_scores["seed"])
        dropped = [t for t in tasks if t not in agent_scores["tasks"]]
        tasks = [t for t in tasks if t in agent_scores["tasks"]]
    elif a.run:
        from generalist.agent import checkpoint

        try:
            known = checkpoint.load_meta(checkpoint.resolve(Path(a.run)))["layouts"]
        except FileNotFoundError as e:
            raise BenchError(str(e)) from None
        dropped = [t for t in tasks if t not in known]
        tasks = [t for t in tasks if t in known]
    else:
        dropped = []
    if dropped:
        print(f"skipping {', '.join(dropped)}: the agent has no score for them", flush=True)
    if not tasks:
        raise BenchError("no task left to compare")
    # the project's own checks: known tasks, stored references, checkpoint (and its training seeds)
    ecfg = EvalConfig(out="", run=a.run if agent_scores is None else None, tasks=tasks, episodes=episodes,
                      workers=a.workers, seed=seed, policy="agent" if a.run and agent_scores is None else "expert",
                      videos=False)
    try:
        ckpt, tasks = resolve(ecfg)
    except EvalError as e:
        raise BenchError(str(e)) from None
    eval_seeds = set(range(seed, seed + episodes))
    for t in tasks:
        used = eval_seeds & training_seeds(found[t])
        if used:
            raise BenchError(f"{t}: seeds {min(used)}.. were used to collect {found[t]}; pick another --seed")

    # the time budget
    if a.seconds is not None:
        seconds, source = float(a.seconds), "--seconds"
    else:
        rj = find_run_json([Path(p) for p in (a.run, a.agent_scores) if p])
        if rj is None:
            raise BenchError("--seconds is required without a run whose run.json records seconds.train "
                             "(give --run RUN of a `generalist run` directory, or --seconds S)")
        seconds, source = float(json.loads(rj.read_text())["seconds"]["train"]), str(rj)

    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="peer-bc-"))
    if (out / "peer_bc.json").exists():
        raise BenchError(f"{out / 'peer_bc.json'} exists; choose another --out (results are never overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    _d3rlpy()
    torch.set_num_threads(a.threads)
    share = seconds / len(tasks)
    print(f"BC: {seconds:.0f} s of training ({source}) over {len(tasks)} task(s), {share:.0f} s each, "
          f"{a.threads} torch thread(s); out: {out}", flush=True)
    train: dict[str, dict[str, Any]] = {}
    for t in tasks:
        train[t] = train_bc(t, found[t], share, out)
        print(f"  {t}: {train[t]['steps']} steps in {train[t]['seconds']:.1f} s "
              f"({train[t]['steps_per_s']:.0f}/s) on {train[t]['transitions']} transitions, "
              f"last epoch loss {train[t]['last_epoch_loss']:.4f}", flush=True)

    # both policies, same seeds, same episode jobs
    kinds = {"bc": functools.partial(bc_policy, str(out / "models"))}
    if ckpt is not None:
        kinds["agent"] = policy_factory("agent", ckpt)
    jobs = episode_jobs(tasks, kinds, episodes, seed, a.workers)
    from tqdm import tqdm

    bar = tqdm(total=len(tasks) * episodes * len(kinds), unit="ep", desc="eval", dynamic_ncols=True)

    def tick(label: str, task: str, r: EpisodeResult) -> None:
        bar.update(1)
        bar.set_postfix(policy=label, task=task, ret=f"{r.ret:.1f}")

    results: dict[tuple[str, str], list[EpisodeResult]] = {}
    for job, part in zip(jobs, run_jobs(jobs, a.workers, tick), strict=True):
        results.setdefault((job.label, job.task), []).extend(part)
    bar.close()

    stored = reference.load()
    rows: dict[str, dict[str, Any]] = {}
    for t in tasks:
        exp = float(np.mean(stored[t]["expert"]["returns"]))
        rnd = float(np.mean(stored[t]["random"]["returns"]))

        def from_results(label: str, t: str = t, exp: float = exp, rnd: float = rnd) -> dict[str, Any]:
            e = task_scores(t, sorted(results[(label, t)], key=lambda r: r.seed), exp, rnd)
            return side(e["returns"], e["seeds"], e.get("success_rate"), exp, rnd)

        row: dict[str, Any] = {"expert_mean": exp, "random_mean": rnd, "bc": from_results("bc"), "bc_train": train[t]}
        if ckpt is not None:
            row["agent"] = from_results("agent")
        elif agent_scores is not None:
            e = agent_scores["tasks"][t]
            row["agent"] = side(e["returns"], e["seeds"], e.get("success_rate"), exp, rnd)
        if "agent" in row:
            row.update(ratio(row["agent"], row["bc"], exp, rnd))
        rows[t] = row

    has_agent = ckpt is not None or agent_scores is not None
    print()
    print_table(rows, has_agent)
    summary: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "data": str(root), "run": a.run, "checkpoint": str(ckpt) if ckpt else None,
        "agent_scores": a.agent_scores, "seed": seed, "episodes": episodes, "workers": a.workers,
        "bc": {"library": f"d3rlpy {_d3rlpy().__version__}", "algo": "BC (continuous, deterministic policy)",
               "encoder": "default", "observation_scaler": "standard", "batch_size": 256, "device": "cpu",
               "torch_threads": a.threads, "seconds_total": seconds, "seconds_source": source,
               "seconds_per_task": share},
        "reference": "package reference_scores.json",
        "tasks": rows,
        "aggregate": {"bc": aggregate({t: r["bc"]["normalized"] for t, r in rows.items()})},
    }
    if has_agent:
        summary["aggregate"]["agent"] = aggregate({t: r["agent"]["normalized"] for t, r in rows.items()})
    for k, v in summary["aggregate"].items():
        print(f"mean normalized score, {k}: {v['mean']:.2f} [{v['mean_ci95'][0]:.2f}, {v['mean_ci95'][1]:.2f}] "
              f"over {v['tasks']} task(s)")
    write_json_atomic(out / "peer_bc.json", summary)
    print(f"wrote {out / 'peer_bc.json'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root (e.g. runs/quick/data)")
    p.add_argument("--run", help="the agent's run directory or checkpoint (omit: BC only)")
    p.add_argument("--agent-scores", help="the agent's scores.json from `generalist eval`, instead of evaluating "
                                          "--run (BC then plays its seeds)")
    p.add_argument("--seconds", type=float, help="total BC training wall time, split evenly over tasks (default: "
                                                 "seconds.train of the run.json above --run / --agent-scores)")
    p.add_argument("--tasks", nargs="+", help="default: every state-observation task under --data")
    p.add_argument("--episodes", type=int, help="evaluation episodes per task and policy (default 20)")
    p.add_argument("--workers", type=int, default=2, help="evaluation processes")
    p.add_argument("--seed", type=int, help=f"first evaluation seed (default {EVAL_SEED}, as `generalist eval`)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for BC training (default 1: a 256-unit MLP trains fastest on one)")
    p.add_argument("--out", help="BC models, d3rlpy logs and peer_bc.json (default: a new temporary directory)")
    a = p.parse_args(argv)
    if a.episodes is not None and a.episodes < 1:
        p.error("--episodes must be at least 1")
    if a.workers < 1 or a.threads < 1:
        p.error("--workers and --threads must be at least 1")
    try:
        run(a)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
