"""Memory Maze 9x9 steps/s: upstream `memory_maze.tasks` vs generalist's MemoryMazeEnv, side by side.

Both envs run the same seed and the same random action sequence, in alternating blocks so that load
from other processes hits both alike; every frame and reward is compared, so the run also checks that
the episodes are identical. Also times reset(seed) against upstream's build-and-reset. Run on one core:

    taskset -c 0 /work/venv/bin/python benchmarks/bench_maze.py --steps 600
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from generalist.envs.maze import MemoryMazeEnv, make_upstream


def main(argv: list[str] | None = None) -> int:
    """Print steps/s of both envs, their ratio, reset times, and whether the episodes matched."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="steps per env (default 600)")
    ap.add_argument("--block", type=int, default=100, help="steps per alternating block")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    actions = np.random.default_rng(args.seed).integers(6, size=args.steps)
    t0 = time.perf_counter()
    up = make_upstream(9, args.seed)
    ts = up.reset()
    t_up_build = time.perf_counter() - t0
    ours = MemoryMazeEnv()
    t0 = time.perf_counter()
    obs, _ = ours.reset(seed=args.seed + 1)  # first reset builds
    t_ours_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    obs, _ = ours.reset(seed=args.seed)  # reseed without rebuilding
    t_ours_reset = time.perf_counter() - t0
    t0 = time.perf_counter()
    up.reset()  # upstream's own next reset, for comparison (then rebuilt below for identity)
    t_up_reset = time.perf_counter() - t0
    up.close()
    up = make_upstream(9, args.seed)
    ts = up.reset()

    identical = bool(np.array_equal(obs["image"], ts.observation["image"]))
    rate_up, rate_ours = [], []
    up_frames, up_rewards = [], []
    for start in range(0, args.steps, args.block):
        block = actions[start:start + args.block]
        t0 = time.perf_counter()
        for a in block:
            ts = up.step(int(a))
            up_frames.append(ts.observation["image"].copy())
            up_rewards.append(float(ts.reward or 0.0))
        rate_up.append(len(block) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        ours_frames, ours_rewards = [], []
        for a in block:
            o, r, *_ = ours.step(int(a))
            ours_frames.append(o["image"])
            ours_rewards.append(r)
        rate_ours.append(len(block) / (time.perf_counter() - t0))
        identical &= bool(np.array_equal(np.stack(up_frames), np.stack(ours_frames))
                          and up_rewards == ours_rewards)
        up_frames, up_rewards = [], []
    up.close()
    ours.close()

    med_up, med_ours = statistics.median(rate_up), statistics.median(rate_ours)
    print(f"steps/s  upstream {med_up:7.1f}   ours {med_ours:7.1f}   ratio {med_ours / med_up:5.2f}x"
          f"   (median of {len(rate_up)} blocks of {args.block} steps, 64x64, seed {args.seed})")
    print(f"reset    upstream build+reset {t_up_build:5.2f}s, reset {t_up_reset:5.2f}s;"
          f"   ours build+reset {t_ours_build:5.2f}s, reset(seed) {t_ours_reset:5.2f}s")
    print(f"episodes identical (every frame and reward): {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
