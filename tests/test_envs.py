"""Every suite task: builds, resets, steps, passes gymnasium's checker; the CLI lists it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import sampled
from gymnasium.utils.env_checker import check_env

from generalist import envs
from generalist.datasets.layout import serialize_space


@pytest.mark.parametrize("task", sampled(envs.task_names()))
def test_reset_and_step(task):
    env = envs.make(task)
    try:
        # the registry declares the spaces without a simulator (training compares datasets with them)
        spec = envs.get_task(task)
        assert serialize_space(env.observation_space) == serialize_space(spec.observation_space)
        assert serialize_space(env.action_space) == serialize_space(spec.action_space)
        assert env.action_space is not spec.action_space  # seeding an env's space leaves the spec's alone
        obs, _ = env.reset(seed=3)
        assert env.observation_space.contains(obs)
        for _ in range(10):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)
            assert isinstance(r, float) and isinstance(term, bool) and isinstance(trunc, bool)
        for k, sub in env.observation_space.spaces.items():
            assert k in ("image", "state")
            assert sub.dtype == (np.uint8 if k == "image" else np.float32)
        if hasattr(env.action_space, "low"):
            assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
        # privileged state exists for the expert and never leaks into the observation
        priv = env.privileged()
        assert priv and not set(priv) & set(obs)
    finally:
        env.close()


@pytest.mark.parametrize("task", sampled(envs.task_names()))
def test_gymnasium_env_checker(task):
    env = envs.make(task)
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


@pytest.mark.parametrize("task", ["atari-pong", "dmc-walker-walk", "metaworld-push"])
def test_same_seed_same_episode(task):
    def roll(seed):
        env = envs.make(task)
        env.action_space.seed(0)
        obs, _ = env.reset(seed=seed)
        out = [next(iter(obs.values())).copy()]
        for _ in range(20):
            out.append(next(iter(env.step(env.action_space.sample())[0].values())).copy())
        env.close()
        return np.stack(out)

    np.testing.assert_array_equal(roll(5), roll(5))
    assert not np.array_equal(roll(5), roll(6))


def test_metaworld_reports_success():
    env = envs.make("metaworld-reach")
    env.reset(seed=0)
    info = env.step(env.action_space.sample())[4]
    assert "success" in info and isinstance(info["success"], bool)


def test_cli_envs_json(cli):
    res = cli("envs", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == set(envs.task_names())
    pong = rows["atari-pong"]
    assert pong["observation"] == {"image": {"shape": [84, 84, 1], "dtype": "uint8"}}
    assert pong["action"] == {"type": "discrete", "n": 6}
    walker = rows["dmc-walker-walk"]
    assert walker["action"]["type"] == "continuous" and walker["action"]["shape"] == [6]
    assert rows["memorymaze-9x9"]["observation"]["image"]["shape"] == [64, 64, 3]
    assert rows["metaworld-reach"]["observation"]["state"]["shape"] == [39]
    for r in rows.values():
        assert r["max_episode_steps"] > 0 and r["expert"] and r["domain"]


def test_cli_unknown_task_lists_known(cli):
    res = cli("envs", "atari-nope")
    assert res.returncode != 0
    assert "unknown task 'atari-nope'" in res.stderr and "atari-pong" in res.stderr
