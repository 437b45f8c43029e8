"""Agent-side measurements, side by side in one run (ratios, not timed tests).

1. per-action latency of the acting policy at a full context: KV cache vs full recomputation;
2. training tokens/s of a model size on this machine (CPU, or CUDA with bf16 when present);
3. sampler throughput (tokens/s, one process) vs what training consumes;
4. sampler memory: peak RSS reading from N vs 10N episodes (must not grow with dataset size).

    python benchmarks/bench_agent.py --data ROOT [--config tiny] [--context 1024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from generalist import envs
from generalist.agent.data import collate, tokens_dataset
from generalist.agent.model import SIZES, GatoModel, ModelConfig
from generalist.agent.policy import AgentPolicy
from generalist.agent.train import action_loss
from generalist.datasets.sampler import open_tasks


def latency(config: str, context: int, task: str, n: int = 20) -> dict[str, float]:
    torch.manual_seed(0)
    model = GatoModel(ModelConfig(**{**SIZES[config].to_dict(), "max_seq_len": context})).eval()
    env = envs.make(task)
    sp = env.action_space
    from generalist.agent.tokenizer import TimestepLayout
    obs_shapes = {k: tuple(s.shape) for k, s in env.observation_space.spaces.items()}
    lay = TimestepLayout.for_spaces(obs_shapes, tuple(sp.shape or ()), int(sp.n) if hasattr(sp, "n") else None)
    meta = {"layouts": {task: asdict(lay)}}
    out = {}
    for name, cached in (("cached", True), ("recompute", False)):
        pol = AgentPolicy(model, meta, task, context=context, use_cache=cached)
        obs, _ = env.reset(seed=0)
        # fill the context to just below a roll-over, then time steps at a full context
        fill = (context // lay.length) - n - 1
        for _ in range(max(0, fill)):
            obs, *_ = env.step(pol.act(obs))
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            a = pol.act(obs)
            times.append(time.perf_counter() - t0)
            obs, *_ = env.step(a)
        out[name] = 1000 * float(np.median(times))
    env.close()
    return out


def train_rate(config: str, context: int, data: Path, batch: int, steps: int = 4) -> float:
    ds = tokens_dataset(open_tasks([data]), context)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = GatoModel(ModelConfig(**{**SIZES[config].to_dict(), "max_seq_len": context})).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev == "cuda" else torch.autocast("cpu", enabled=False)
    batches = [collate([ds[i * batch + j] for j in range(batch)], context) for i in range(steps + 1)]
    t0 = 0.0
    for i, b in enumerate(batches):
        if i == 1:
            t0 = time.perf_counter()
        b = {k: v.to(dev) for k, v in b.items()}
        with amp:
            loss, _, _, n = action_loss(model, b)
        opt.zero_grad()
        (loss / max(n, 1)).backward()
        opt.step()
    if dev == "cuda":
        torch.cuda.synchronize()
    return steps * batch * context / (time.perf_counter() - t0)


def sampler_rate(context: int, data: Path, n: int = 400) -> float:
    ds = tokens_dataset(open_tasks([data]), context)
    t0 = time.perf_counter()
    for i in range(n):
        ds[i]
    return n * context / (time.perf_counter() - t0)


RSS_CHILD = """
import resource, sys
from pathlib import Path
from generalist.agent.data import tokens_dataset
from generalist.datasets.sampler import open_tasks
ds = tokens_dataset(open_tasks([Path(sys.argv[1])]), 1024)
for i in range(int(sys.argv[2])):
    ds[i]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def rss(episodes: int, samples: int = 1500) -> dict[str, float]:
    from generalist.datasets.collect import CollectConfig, collect

    out = {}
    for n in (episodes, 10 * episodes):
        root = Path(tempfile.mkdtemp(prefix="bench-rss-"))
        collect(CollectConfig(tasks=["dmc-reacher-easy"], episodes=n, out=root, workers=2))
        kb = subprocess.run([sys.executable, "-c", RSS_CHILD, str(root), str(samples)], capture_output=True,
                            text=True, check=True).stdout.strip().splitlines()[-1]
        out[f"{n}_episodes_rss_mb"] = int(kb) / 1024
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root to sample from (e.g. from `generalist collect`)")
    p.add_argument("--config", default="tiny", choices=list(SIZES), help="model size")
    p.add_argument("--context", type=int, default=1024, help="context in slots")
    p.add_argument("--batch", type=int, default=8, help="training batch for the throughput measurement")
    p.add_argument("--rss-episodes", type=int, default=20, help="N for the N vs 10N memory check (0: skip)")
    a = p.parse_args()
    res: dict = {"device": "cuda" if torch.cuda.is_available() else "cpu", "threads": torch.get_num_threads()}
    for task in ("dmc-walker-walk", "atari-breakout"):
        lat = latency(a.config, a.context, task)
        res[f"latency_ms_{task}"] = lat
        print(f"act {task:16} {a.config}: cached {lat['cached']:.1f} ms, recompute {lat['recompute']:.1f} ms "
              f"-> {lat['recompute'] / lat['cached']:.1f}x faster with the KV cache", flush=True)
    tr = train_rate(a.config, a.context, Path(a.data), a.batch)
    sr = sampler_rate(a.context, Path(a.data))
    res.update(train_tokens_per_s=tr, sampler_tokens_per_s=sr)
    print(f"train {a.config}: {tr:.0f} tokens/s; sampler (1 process): {sr:.0f} tokens/s "
          f"-> {sr / tr:.1f}x what training consumes", flush=True)
    if a.rss_episodes:
        r = rss(a.rss_episodes)
        res.update(r)
        vals = list(r.values())
        print(f"sampler peak RSS: {vals[0]:.0f} MB with {a.rss_episodes} episodes, {vals[1]:.0f} MB with "
              f"{10 * a.rss_episodes} -> ratio {vals[1] / vals[0]:.2f}", flush=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
