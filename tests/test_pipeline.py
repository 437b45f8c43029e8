"""`generalist run`: collect -> train -> eval -> report, and finishing an interrupted run by rerunning it."""

from __future__ import annotations

import json
import shutil

import pytest
from test_action_noise import _episode

from generalist import pipeline
from generalist.agent import checkpoint
from generalist.pipeline import Dagger, RunConfig, RunError, Suite


@pytest.fixture
def mini_suite(monkeypatch):
    suite = Suite(description="test-sized", episodes={"dmc-reacher-easy": 2, "metaworld-reach": 2},
                  action_noise={"metaworld-reach": 0.2},
                  train=dict(config="tiny", steps=4, batch=2, context=24, warmup=1, eval_every=2, ckpt_every=2,
                             obs_encoding="vector", max_timesteps=4, action_loss="hlgauss", hide_actions=True),
                  eval_episodes=1, video_frames=5, dagger={"dmc-reacher-easy": Dagger(1, steps=2, batch=2, rounds=2)})
    monkeypatch.setitem(pipeline.SUITES, "mini", suite)
    return suite


def test_run_end_to_end_then_resume(mini_suite, tmp_path):
    out = tmp_path / "r"
    summary = pipeline.run(RunConfig(out=str(out), suite="mini", workers=1), log=lambda m: None)
    assert set(summary["normalized"]) == {"dmc-reacher-easy", "metaworld-reach"}
    assert (out / "eval" / "report.html").exists() and (out / "eval" / "videos" / "metaworld-reach.gif").exists()
    assert json.loads((out / "run.json").read_text())["report"]["html"] == str(out / "eval" / "report.html")
    for t in mini_suite.episodes:
        assert (out / "data" / t / "expert-v0" / "data" / "main_data.hdf5").exists()
    noise = {t: json.loads((out / "data" / t / "expert-v0" / "data" / "metadata.json").read_text())["generalist"]
             .get("action_noise", 0.0) for t in mini_suite.episodes}
    assert noise == {"dmc-reacher-easy": 0.0, "metaworld-reach": 0.2}  # the suite's DART noise, per task
    # two DAgger rounds: a reacher-only driver trained for 2 steps on the 2 expert episodes drove a third one,
    # labelled by the expert; a second driver, trained on those 3, drove a fourth
    dagger = out / "dagger" / "dmc-reacher-easy"
    drivers = [checkpoint.latest(dagger / f"round-{k}") for k in (1, 2)]
    assert [checkpoint.step_of(d) for d in drivers] == [2, 2] and checkpoint.load_meta(drivers[0])["train"]["batch"] == 2
    assert [checkpoint.load_meta(d)["data"]["dmc-reacher-easy"]["episodes"] for d in drivers] == [2, 3]
    eps = [_episode(out / "data" / "dmc-reacher-easy" / "expert-v0", i) for i in range(4)]
    assert "driver" not in eps[1]["attrs"] and [e["attrs"]["driver"] for e in eps[2:]] == [str(d) for d in drivers]
    assert eps[3]["attrs"]["seed"] == 3 and all((e["infos/agent_acted"] == 1.0).all() for e in eps[2:])
    assert json.loads((out / "run" / "checkpoints" / "step_00000004" / "meta.json").read_text())["data"][
        "dmc-reacher-easy"]["episodes"] == 4  # training read the aggregated dataset
    assert (out / "run" / "checkpoints" / "step_00000004").exists()

    # a second run reuses everything: no new episodes, no training, the scores kept
    data_mtimes = {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*.hdf5")}
    scores_mtime = (out / "eval" / "scores.json").stat().st_mtime_ns
    again = pipeline.run(RunConfig(out=str(out), suite="mini", workers=1), log=lambda m: None)
    assert again["aggregate"] == summary["aggregate"]
    assert {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*.hdf5")} == data_mtimes
    assert (out / "eval" / "scores.json").stat().st_mtime_ns == scores_mtime

    # an interrupted run (killed after the step-2 checkpoint, before evaluation) is finished by rerunning it
    ck = out / "run" / "checkpoints"
    shutil.rmtree(ck / "step_00000004")
    (ck / "latest").write_text("step_00000002")
    shutil.rmtree(out / "eval")
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    (out / "run" / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n")
    pipeline.run(RunConfig(out=str(out), suite="mini", workers=1), log=lambda m: None)
    steps = [json.loads(x)["step"] for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4] and (ck / "step_00000004").exists()
    assert (out / "eval" / "scores.json").exists()

    with pytest.raises(RunError, match="holds a `mini` run"):
        pipeline.run(RunConfig(out=str(out), suite="quick"), log=lambda m: None)


def test_bad_input(cli, tmp_path):
    res = cli("run", "--suite", "nope", "--out", str(tmp_path / "x"))
    assert res.returncode != 0 and "invalid choice" in res.stderr
    res = cli("run", "--workers", "0", "--out", str(tmp_path / "x"))
    assert res.returncode != 0 and "--workers must be at least 1" in res.stderr
    assert not (tmp_path / "x").exists()


def test_suites_cover_every_domain():
    from generalist import envs

    domains = {t.domain for t in envs.TASKS.values()}
    for name, suite in pipeline.SUITES.items():
        assert {envs.get_task(t).domain for t in suite.episodes} == domains, name
    assert set(pipeline.SUITES["full"].episodes) == set(envs.TASKS)


@pytest.mark.parametrize("suite", ["quick", "full"])
def test_torchrun_line_trains_exactly_what_run_would(suite):
    """The multi-GPU recipe in the README (`--until collect`, then torchrun) must match the suite's config."""
    import shlex

    from generalist.agent.train import TrainConfig
    from generalist.cli import build_parser, train_config

    cfg = RunConfig(out="runs/x", suite=suite)
    line = shlex.split(pipeline.train_command(cfg, nproc=4))
    assert line[:4] == ["torchrun", "--nproc_per_node=4", "-m", "generalist"]
    got = train_config(build_parser().parse_args(line[4:]))
    want = TrainConfig(data=[f"runs/x/data/{t}/expert-v0" for t in pipeline.SUITES[suite].episodes],
                       out="runs/x/run", **pipeline.SUITES[suite].train)
    assert got == want


def test_until_collect_stops_after_the_datasets(mini_suite, tmp_path):
    logs = []
    summary = pipeline.run(RunConfig(out=str(tmp_path), suite="mini", workers=1, until="collect"), log=logs.append)
    assert "report" not in summary and not (tmp_path / "run").exists()
    assert any("torchrun --nproc_per_node=8 -m generalist train" in m for m in logs)
    assert len(list((tmp_path / "data").rglob("main_data.hdf5"))) == 2


def test_dagger_rounds_are_checked():
    with pytest.raises(ValueError, match="at least 1"):
        Dagger(24, rounds=0)
    with pytest.raises(ValueError, match="does not collect: atari-pong"):
        Suite(description="x", episodes={"metaworld-reach": 1}, dagger={"atari-pong": Dagger(1)})
    with pytest.raises(ValueError, match="dagger and action_noise on the same task: metaworld-reach"):
        Suite(description="x", episodes={"metaworld-reach": 1}, action_noise={"metaworld-reach": 0.2},
              dagger={"metaworld-reach": Dagger(1)})
