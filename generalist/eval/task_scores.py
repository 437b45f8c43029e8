"""Per-task score entries from evaluation episodes (the rows of scores.json)."""

from __future__ import annotations

from typing import Any

import numpy as np

from generalist import envs
from generalist.episodes import EpisodeResult
from generalist.eval.scores import bootstrap_ci, normalized

EVAL_SEED = 2_000_000  # disjoint from collection (0, 1, ...) and reference (1,000,000+) seeds


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
        "lengths": [int(r.steps) for r in results],
        "seeds": [int(r.seed) for r in results],
    }
    if results and results[0].success is not None:
        entry["success_rate"] = float(np.mean([bool(r.success) for r in results]))
    return entry
