"""Score math: expert-normalized scores, bootstrap intervals, and Gato-style aggregates.

normalized = (agent - random) / (expert - random), per task, from mean returns; aggregates over tasks:
mean, median, IQM (mean of the middle 50%), and the count of tasks at >= 50% and >= 80% of expert.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def normalized(agent: float, expert: float, random: float) -> float:
    """(agent - random) / (expert - random); 1.0 is expert level, 0.0 is random."""
    if expert == random:
        raise ValueError("expert and random means are equal: the normalized score is undefined")
    return (agent - random) / (expert - random)


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: drop the lowest and highest 25% (floor of n/4 each), average the rest."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    k = len(x) // 4
    return float(x[k:len(x) - k].mean())


def bootstrap_ci(values: np.ndarray, stat: Callable[[np.ndarray], float] = np.mean, n: int = 2000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over resamples (with replacement) of `values`."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n, len(x)))
    stats = np.array([stat(x[i]) for i in idx])
    a = (1 - level) / 2
    return float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a))


def aggregate(scores: dict[str, float], n_boot: int = 2000, seed: int = 0) -> dict[str, object]:
    """Mean, median and IQM of normalized scores (with bootstrap 95% intervals over tasks), and
    Gato's headline counts: tasks at >= 50% and >= 80% of expert."""
    x = np.array(list(scores.values()), dtype=np.float64)
    out: dict[str, object] = {"tasks": len(x)}
    for name, fn in (("mean", np.mean), ("median", np.median), ("iqm", iqm)):
        out[name] = float(fn(x)) if len(x) else float("nan")
        out[f"{name}_ci95"] = list(bootstrap_ci(x, fn, n_boot, seed=seed))
    out["tasks_over_50"] = int((x >= 0.5).sum())
    out["tasks_over_80"] = int((x >= 0.8).sum())
    return out
