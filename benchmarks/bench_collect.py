"""Collection throughput, side by side in one run (ratios, not timed tests).

1. overhead: steps/s of `collect` (recording + compressed HDF5 + crash-safe commits) over steps/s of
   the same env + expert loop with no recording. Target >= 0.9.
2. vs Minari: our `collect` over Minari 0.5.4's DataCollector recording the same env and expert
   (needs `pip install "generalist[minari-create]"`, which pulls JAX). Target >= 1.0.

    python benchmarks/bench_collect.py [--tasks ...] [--episodes N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MINARI_DATASETS_PATH", tempfile.mkdtemp(prefix="bench-minari-"))

import gymnasium as gym  # noqa: E402

from generalist import envs  # noqa: E402
from generalist.datasets.collect import CollectConfig, collect  # noqa: E402
from generalist.episodes import run_episode  # noqa: E402
from generalist.experts import make_policy  # noqa: E402


def plain(task: str, seeds: list[int]) -> tuple[int, float]:
    """Env + expert, nothing recorded (env construction timed, as it is in `collect`)."""
    t0, steps = time.perf_counter(), 0
    env = envs.make(task)
    for s in seeds:
        steps += run_episode(env, make_policy("expert", env, seed=s), s).steps
    dt = time.perf_counter() - t0
    env.close()
    return steps, dt


def ours(task: str, seeds: list[int]) -> tuple[int, float]:
    out = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    t0 = time.perf_counter()
    w = collect(CollectConfig(tasks=[task], episodes=len(seeds), out=out, seed=seeds[0]))[task]
    dt = time.perf_counter() - t0
    shutil.rmtree(out)
    return sum(w.steps), dt


def minari_collector(task: str, seeds: list[int]) -> tuple[int, float] | None:
    try:
        import jax  # noqa: F401
        import minari
    except ImportError:
        return None
    t0, steps = time.perf_counter(), 0
    base = envs.make(task)
    expert = make_policy("expert", base)
    key = base.task.success_key
    env = minari.DataCollector(gym.wrappers.PassiveEnvChecker(base), record_infos=bool(key), jpeg_encoding=False)
    for s in seeds:
        obs, _ = env.reset(seed=s)
        expert.reset()
        while True:
            obs, _, term, trunc, _ = env.step(expert.act(obs))
            steps += 1
            if term or trunc:
                break
    name = f"{task}/bench-{int(time.time() * 1000)}-v0"
    ds = env.create_dataset(dataset_id=name, algorithm_name="expert")
    dt = time.perf_counter() - t0
    minari.delete_dataset(name) if hasattr(minari, "delete_dataset") else None
    assert ds.total_steps == steps
    return steps, dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["dmc-reacher-easy", "metaworld-reach", "atari-pong"],
                   help="tasks to measure")
    p.add_argument("--episodes", type=int, default=8, help="episodes per measurement")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats; the best of each is kept")
    a = p.parse_args()
    print(f"{'task':22} {'plain st/s':>10} {'collect st/s':>12} {'minari st/s':>11} "
          f"{'collect/plain':>13} {'collect/minari':>14}")
    for task in a.tasks:
        seeds = list(range(500, 500 + a.episodes))
        best = {"plain": 0.0, "ours": 0.0, "minari": 0.0}
        for _ in range(a.repeats):  # interleave so machine noise hits all three alike
            for name, fn in (("plain", plain), ("ours", ours), ("minari", minari_collector)):
                r = fn(task, seeds)
                if r is not None:
                    best[name] = max(best[name], r[0] / r[1])
        m = best["minari"]
        print(f"{task:22} {best['plain']:10.0f} {best['ours']:12.0f} {m if m else float('nan'):11.0f} "
              f"{best['ours'] / best['plain']:13.2f} {best['ours'] / m if m else float('nan'):14.2f}",
              flush=True)


if __name__ == "__main__":
    main()
