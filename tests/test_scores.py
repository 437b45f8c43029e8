"""Normalized-score and interval math against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from generalist.eval.scores import aggregate, bootstrap_ci, iqm, normalized


def test_normalized_hand_cases():
    assert normalized(10.0, 20.0, 0.0) == 0.5
    assert normalized(-21.0, 19.0, -21.0) == 0.0          # random-level Pong
    assert normalized(19.0, 19.0, -21.0) == 1.0           # expert-level
    assert normalized(0.0, 19.0, -21.0) == pytest.approx(21 / 40)
    assert normalized(30.0, 20.0, 10.0) == 2.0            # above expert is allowed
    with pytest.raises(ValueError):
        normalized(1.0, 2.0, 2.0)


def test_iqm_hand_cases():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)   # keeps 3..6
    assert iqm([0, 0, 10, 10]) == pytest.approx(5.0)            # keeps the middle two
    assert iqm([1, 2, 3]) == pytest.approx(2.0)                 # n < 4: nothing dropped
    assert iqm([100, 1, 2, 3, 4, 5, 6, -100]) == pytest.approx(3.5)


def test_bootstrap_interval_properties():
    x = np.random.default_rng(1).normal(5.0, 1.0, 200)
    lo, hi = bootstrap_ci(x, np.mean, n=2000)
    assert lo < x.mean() < hi
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)  # close to the normal-theory width
    assert bootstrap_ci(np.full(10, 3.0)) == (3.0, 3.0)


def test_aggregate_counts_and_stats():
    s = {"a": 1.0, "b": 0.85, "c": 0.5, "d": 0.2, "e": -0.1}
    agg = aggregate(s)
    assert agg["tasks"] == 5 and agg["tasks_over_50"] == 3 and agg["tasks_over_80"] == 2
    assert agg["mean"] == pytest.approx(0.49)
    assert agg["median"] == pytest.approx(0.5)
    assert agg["iqm"] == pytest.approx(np.mean([0.85, 0.5, 0.2]))
    lo, hi = agg["mean_ci95"]
    assert lo <= agg["mean"] <= hi
