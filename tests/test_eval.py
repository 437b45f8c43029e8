"""`generalist eval`: any policy through the same path, scores.json, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generalist.datasets.collect import CollectConfig, collect


def _scores(path):
    return json.loads((path / "scores.json").read_text())


def test_expert_and_random_through_the_same_path(tmp_path, cli):
    for kind in ("expert", "random"):
        res = cli("eval", "--policy", kind, "--tasks", "dmc-reacher-easy", "metaworld-reach", "--episodes", "2",
                  "--no-videos", "--out", str(tmp_path / kind))
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


def test_agent_checkpoint_writes_scores_and_report(tiny_run, tmp_path, cli):
    out = tmp_path / "s"
    res = cli("eval", str(tiny_run), "--episodes", "2", "--workers", "2", "--video-frames", "20", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    s = _scores(out)
    t = s["tasks"]["dmc-reacher-easy"]
    assert set(s["tasks"]) == {"dmc-reacher-easy"} and t["episodes"] == 2 and t["seeds"] == [2_000_000, 2_000_001]
    assert len(t["expert_returns"]) == 50 and len(t["random_returns"]) == 50  # the stored references
    # the report: markdown pointing at files that exist, charts, one GIF of agent | expert
    md = (out / "report.md").read_text()
    assert "| dmc-reacher-easy | dmc |" in md
    for rel in ("report_files/normalized.png", "report_files/returns.png", "videos/dmc-reacher-easy.gif"):
        assert rel in md and (out / rel).stat().st_size > 1000
    from PIL import Image

    gif = Image.open(out / "videos" / "dmc-reacher-easy.gif")
    assert gif.n_frames == s["videos"]["dmc-reacher-easy"]["frames"] == 20
    assert gif.size == (2 * 128 + 4, 128)  # agent and expert side by side
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and page.count("data:image/gif;base64,") == 1
    assert "src=\"http" not in page and "src=\"report_files" not in page  # self-contained
    # never overwritten; `generalist report` rebuilds from scores.json
    res = cli("eval", str(tiny_run), "--episodes", "1", "--out", str(out))
    assert res.returncode != 0 and "exists" in res.stderr
    (out / "report.html").unlink()
    assert cli("report", str(out)).returncode == 0 and (out / "report.html").exists()


def test_workers_give_the_same_episodes(tmp_path):
    from generalist.eval.evaluate import EvalConfig, evaluate

    kw = dict(policy="random", tasks=["dmc-cartpole-swingup", "metaworld-reach"], episodes=3, videos=False)
    one = evaluate(EvalConfig(out=str(tmp_path / "one"), workers=1, **kw))
    two = evaluate(EvalConfig(out=str(tmp_path / "two"), workers=2, **kw))
    for t in kw["tasks"]:
        assert one["tasks"][t]["returns"] == two["tasks"][t]["returns"]
        assert one["tasks"][t]["seeds"] == two["tasks"][t]["seeds"] == [2_000_000, 2_000_001, 2_000_002]


def test_episode_jobs_cover_every_seed_once():
    from generalist.episodes import expert_factory
    from generalist.eval.evaluate import episode_jobs

    jobs = episode_jobs(["a", "b", "c"], {"agent": expert_factory("random")}, episodes=7, seed=10, workers=4)
    assert len(jobs) >= 4  # enough chunks to keep 4 processes busy
    for t in "abc":
        seeds = sorted(s for j in jobs if j.task == t for s in j.seeds)
        assert seeds == list(range(10, 17))


@pytest.fixture(scope="module")
def wandb_report(tiny_run, tmp_path_factory):
    """One in-process evaluation with W&B offline on: its report and its W&B run."""
    import os

    from generalist.eval.evaluate import EvalConfig, evaluate

    os.environ["WANDB_MODE"] = "offline"
    out = tmp_path_factory.mktemp("wb") / "w"
    evaluate(EvalConfig(out=str(out), run=str(tiny_run), episodes=1, video_frames=10, wandb="offline"))
    return out


def test_report_opens_in_headless_chromium(wandb_report, tmp_path):
    """A real browser loads report.html offline: no script error, every chart and GIF decodes, the table shows."""
    import os
    import shutil

    from generalist.eval.html_check import check

    if not (shutil.which("chromium") or os.environ.get("GENERALIST_REQUIRE_CHROMIUM")):
        pytest.skip("chromium not installed (CI installs it and sets GENERALIST_REQUIRE_CHROMIUM=1)")
    out = wandb_report
    res = check(out / "report.html", screenshot=tmp_path / "shot.png")
    assert res["ok"], res["problems"]
    assert res["images_loaded"] == res["images_total"] == 3 and res["table_rows"]["tasks"] == 1
    assert res["script_errors"] == 0 and (tmp_path / "shot.png").stat().st_size > 10_000
    # and the check does fail on a broken page
    broken = tmp_path / "broken.html"
    broken.write_text((out / "report.html").read_text().replace("data:image/gif;base64,", "data:image/gif;base64,xx")
                      .replace("</body>", "<script>undefined_function()</script></body>"))
    bad = check(broken)
    assert not bad["ok"] and bad["script_errors"] == 1 and bad["images_loaded"] == 2


def test_wandb_gets_the_table_charts_and_videos(wandb_report):
    out = wandb_report
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = {p.name for p in (runs[0] / "files" / "media").rglob("*") if p.is_file()}
    assert any(n.startswith("dmc-reacher-easy") and n.endswith(".gif") for n in media)
    assert any(n.startswith("normalized_chart") for n in media) and any(n.startswith("returns_chart") for n in media)
    assert any(n.startswith("tasks_") and n.endswith(".table.json") for n in media)


def test_bad_inputs(tiny_run, tmp_path, cli):
    res = cli("eval", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert res.returncode != 0 and "no checkpoint" in res.stderr
    res = cli("eval", str(tiny_run), "--tasks", "atari-pong", "--out", str(tmp_path / "o"))
    assert res.returncode != 0 and "never trained on atari-pong" in res.stderr
    res = cli("eval", str(tiny_run), "--seed", "1", "--out", str(tmp_path / "o"))
    assert res.returncode != 0 and "seeds 1.. were used to collect the training data" in res.stderr
    assert not (tmp_path / "o").exists()


def test_sampled_agent_is_reproducible_with_any_worker_count(tiny_run, tmp_path):
    """--temperature samples action tokens from a generator seeded by each episode's seed."""
    from generalist.eval.evaluate import EvalConfig, evaluate

    kw = dict(run=str(tiny_run), tasks=["dmc-reacher-easy"], episodes=2, videos=False, temperature=1.0)
    one = evaluate(EvalConfig(out=str(tmp_path / "one"), workers=1, **kw))
    two = evaluate(EvalConfig(out=str(tmp_path / "two"), workers=2, **kw))
    greedy = evaluate(EvalConfig(out=str(tmp_path / "g"), workers=1, **{**kw, "temperature": 0.0}))
    rets = one["tasks"]["dmc-reacher-easy"]["returns"]
    assert rets == two["tasks"]["dmc-reacher-easy"]["returns"]
    assert rets != greedy["tasks"]["dmc-reacher-easy"]["returns"]


def test_prompted_agent_starts_from_a_held_out_demonstration(tiny_run, tmp_path, cli):
    """--prompt N: each episode's context starts with the last N steps of a held-out expert episode."""
    from generalist import envs
    from generalist.datasets.sampler import demonstration
    from generalist.eval.evaluate import _agent, _demonstrations

    env = envs.make("dmc-reacher-easy")
    agent = _agent(str(tiny_run), env, 7, prompt=3)
    td = _demonstrations(str(tiny_run), "dmc-reacher-easy")
    obs, actions = demonstration(td, 3, 7)
    assert len(actions) == 3 and len(agent.prompt) == 3
    want = agent.encoder.encode(obs, actions)
    got = type(want).concat(agent.prompt)
    np.testing.assert_array_equal(got.tokens, want.tokens)
    agent.reset()  # an episode's reset keeps the prompt
    agent.act(env.reset(seed=0)[0])
    assert len(agent.fed) == len(want) + agent.layout.length - agent.layout.n_action
    env.close()
    out = tmp_path / "p"
    res = cli("eval", str(tiny_run), "--episodes", "2", "--no-videos", "--prompt", "3", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert _scores(out)["tasks"]["dmc-reacher-easy"]["prompt_steps"] == 3
    for bad in (["--prompt", "-1"], ["--prompt", "2", "--policy", "expert", "--tasks", "dmc-reacher-easy"]):
        res = cli("eval", str(tiny_run), *bad, "--out", str(tmp_path / "q"))
        assert res.returncode == 2 and "--prompt" in res.stderr and "Traceback" not in res.stderr
