"""Evaluation rollouts: any policy (agent, expert, random) through the same episode loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from generalist import envs
from generalist.eval.scores import bootstrap_ci, normalized
from generalist.experts import make_policy, reference
from generalist.experts.rollout import EpisodeResult, run_episode

EVAL_SEED = 2_000_000  # disjoint from collection (0, 1, ...) and reference (1,000,000+) seeds


def make_eval_policy(kind: str, env, checkpoint: Path | None, seed: int):
    """'agent' (needs a checkpoint), 'expert' or 'random' for `env`'s task."""
    if kind == "agent":
        from generalist.agent.policy import AgentPolicy

        if checkpoint is None:
            raise ValueError("--policy agent needs a run directory or checkpoint")
        return AgentPolicy.from_checkpoint(checkpoint, env.task.name)
    return make_policy(kind, env, seed=seed)


def evaluate_task(task: str, kind: str, episodes: int, seed: int = EVAL_SEED, checkpoint: Path | None = None,
                  progress=None) -> list[EpisodeResult]:
    """`episodes` episodes of one policy on seeds seed..seed+episodes-1."""
    env = envs.make(task)
    try:
        policy = make_eval_policy(kind, env, checkpoint, seed)
        out = []
        for s in range(seed, seed + episodes):
            out.append(run_episode(env, policy, s))
            if progress is not None:
                progress(out[-1])
        return out
    finally:
        env.close()


def task_scores(task: str, results: list[EpisodeResult], expert_mean: float, random_mean: float) -> dict[str, Any]:
    """The per-task entry of scores.json."""
    rets = np.array([r.ret for r in results], dtype=np.float64)
    entry: dict[str, Any] = {
        "domain": envs.get_task(task).domain,
        "agent_mean": float(rets.mean()),
        "agent_ci95": list(bootstrap_ci(rets)),
        "expert_mean": float(expert_mean),
        "random_mean": float(random_mean),
        "normalized": normalized(float(rets.mean()), expert_mean, random_mean),
        "episodes": len(results),
        "episode_length_mean": float(np.mean([r.steps for r in results])),
        "returns": [round(float(r), 4) for r in rets],
    }
    if results and results[0].success is not None:
        entry["success_rate"] = float(np.mean([bool(r.success) for r in results]))
    return entry


def references(task: str) -> tuple[float, float]:
    """Expert and random means stored in the package (measured by `generalist experts score --save`)."""
    ref = reference.load().get(task)
    if not ref or "expert" not in ref or "random" not in ref:
        raise KeyError(f"no reference scores for {task}; run `generalist experts score {task} --save` "
                       "or pass --refresh-reference")
    return ref["expert"]["mean"], ref["random"]["mean"]
