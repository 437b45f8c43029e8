"""The suite's breadth: MT50 as upstream lists it, every maze size, task patterns and domains."""

from __future__ import annotations

import json

import pytest

from generalist import envs
from generalist.envs import maze, meta_world


def test_mt50_is_upstreams_task_list():
    import metaworld
    from metaworld.policies import ENV_POLICY_MAP

    upstream = {k.removesuffix("-v3-goal-observable") for k in metaworld.ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE}
    assert set(meta_world.MT50) == upstream == {k.removesuffix("-v3") for k in ENV_POLICY_MAP}
    assert len(meta_world.MT50) == 50
    # the original five first (the suites and old checkpoints know them), then the rest
    assert envs.task_names("metaworld")[:5] == ["metaworld-reach", "metaworld-push", "metaworld-pick-place",
                                                "metaworld-door-open", "metaworld-drawer-open"]
    assert len(envs.task_names("metaworld")) == 50


def test_every_maze_size_with_upstreams_episode_length():
    names = envs.task_names("memorymaze")
    assert names == ["memorymaze-9x9", "memorymaze-11x11", "memorymaze-13x13", "memorymaze-15x15"]
    assert [envs.get_task(n).max_episode_steps for n in names] == [1000, 2000, 3000, 4000]
    assert maze.EPISODE_STEPS == {9: 1000, 11: 2000, 13: 3000, 15: 4000}


def test_select_patterns():
    assert len(envs.select(["metaworld-*"])) == 50
    assert envs.select(["memorymaze-1?x1?"]) == ["memorymaze-11x11", "memorymaze-13x13", "memorymaze-15x15"]
    # order as given, each task once
    assert envs.select(["dmc-walker-walk", "dmc-walker-*", "dmc-cartpole-*"]) == [
        "dmc-walker-walk", "dmc-cartpole-swingup", "dmc-cartpole-balance"]
    assert envs.select(["metaworld-*"], among=["metaworld-reach", "atari-pong"]) == ["metaworld-reach"]
    with pytest.raises(envs.UnknownTaskError, match="no task matches 'dmc-\\*' among metaworld-reach, atari-pong"):
        envs.select(["dmc-*"], among=["metaworld-reach", "atari-pong"])
    with pytest.raises(envs.UnknownTaskError, match="no task matches 'atari-zork\\*'"):
        envs.select(["atari-zork*"])
    with pytest.raises(envs.UnknownTaskError, match="unknown task 'metaworld-reech'"):
        envs.select(["metaworld-reech"])
    with pytest.raises(envs.UnknownTaskError, match="unknown domain"):
        envs.task_names("robots")


def test_cli_patterns_and_domain(cli):
    res = cli("envs", "--domain", "memorymaze", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["name"] for r in json.loads(res.stdout)] == envs.task_names("memorymaze")
    res = cli("envs", "metaworld-door-*", "--json")
    assert [r["name"] for r in json.loads(res.stdout)] == ["metaworld-door-open", "metaworld-door-close",
                                                           "metaworld-door-lock", "metaworld-door-unlock"]
    res = cli("collect", "atari-zork*", "--episodes", "1", "--out", "/nonexistent/x")
    assert res.returncode == 2 and "no task matches 'atari-zork*'" in res.stderr
    assert "Traceback" not in res.stderr
