"""`generalist eval`: any policy through the same path, scores.json, bad input."""

from __future__ import annotations

import json

import pytest

from generalist.datasets.collect import CollectConfig, collect


def _scores(path):
    return json.loads((path / "scores.json").read_text())


def test_expert_and_random_through_the_same_path(tmp_path, cli):
    for kind in ("expert", "random"):
        res = cli("eval", "--policy", kind, "--tasks", "dmc-reacher-easy", "metaworld-reach", "--episodes", "2",
                  "--out", str(tmp_path / kind))
        assert res.returncode == 0, res.stderr[-2000:]
    e, r = _scores(tmp_path / "expert"), _scores(tmp_path / "random")
    for t in ("dmc-reacher-easy", "metaworld-reach"):
        assert e["tasks"][t]["normalized"] > 0.8 and r["tasks"][t]["normalized"] < 0.3
        for key in ("agent_mean", "agent_ci95", "expert_mean", "random_mean", "normalized", "episodes"):
            assert key in e["tasks"][t]
    assert e["tasks"]["metaworld-reach"]["success_rate"] == 1.0
    agg = e["aggregate"]
    assert {"mean", "median", "iqm", "tasks_over_50", "tasks_over_80"} <= set(agg)
    assert agg["tasks_over_50"] == 2 and set(e["domains"]) == {"dmc", "metaworld"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from generalist.agent.train import TrainConfig, train

    root = tmp_path_factory.mktemp("evdata")
    collect(CollectConfig(tasks=["dmc-reacher-easy"], episodes=2, out=root))
    run = tmp_path_factory.mktemp("evrun")
    train(TrainConfig(data=[str(root)], out=str(run), steps=2, batch=2, context=256, eval_every=100))
    return run


def test_agent_checkpoint_writes_scores(tiny_run, tmp_path, cli):
    res = cli("eval", str(tiny_run), "--episodes", "1", "--out", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr[-2000:]
    s = _scores(tmp_path / "s")
    assert set(s["tasks"]) == {"dmc-reacher-easy"} and s["tasks"]["dmc-reacher-easy"]["episodes"] == 1
    res = cli("eval", str(tiny_run), "--episodes", "1", "--out", str(tmp_path / "s"))
    assert res.returncode != 0 and "exists" in res.stderr


def test_bad_inputs(tiny_run, tmp_path, cli):
    res = cli("eval", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert res.returncode != 0 and "no checkpoint" in res.stderr
    res = cli("eval", str(tiny_run), "--tasks", "atari-pong", "--out", str(tmp_path / "o"))
    assert res.returncode != 0 and "never trained on atari-pong" in res.stderr
    assert not (tmp_path / "o").exists()
