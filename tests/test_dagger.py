"""DAgger collection (`collect --driver RUN`): a trained agent drives, the expert labels every state it visits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_action_noise import _episode, _replay

from generalist import envs
from generalist.agent import checkpoint
from generalist.agent.train import TrainConfig, train
from generalist.datasets.collect import CollectConfig, collect
from generalist.datasets.layout import dataset_dir

TASK = "dmc-cartpole-swingup"


@pytest.fixture(scope="module")
def driver_run(tmp_path_factory) -> tuple[Path, Path]:
    """Two expert episodes and an agent trained on them for one step (it plays badly: what DAgger is for)."""
    root = tmp_path_factory.mktemp("dagger")
    collect(CollectConfig(tasks=[TASK], episodes=2, out=root / "data"))
    train(TrainConfig(data=[str(root / "data")], out=str(root / "run"), steps=1, batch=2, context=16,
                      obs_encoding="vector", hide_actions=True, max_timesteps=1, prompt_prob=0.0, eval_every=1000))
    return root / "data", root / "run"


def test_driven_episodes_are_added_and_labelled_by_the_expert(driver_run, tmp_path):
    data, run = driver_run
    out = tmp_path / "data"
    collect(CollectConfig(tasks=[TASK], episodes=2, out=out))
    assert run_cli("collect", TASK, "--episodes", "3", "--out", str(out), "--resume", "--driver", str(run)).returncode == 0
    ds = dataset_dir(out, TASK)
    expert_ep, ep = _episode(ds, 1), _episode(ds, 2)
    assert "infos/executed_action" not in expert_ep and ep["attrs"]["seed"] == 2
    assert ep["attrs"]["driver"] == str(checkpoint.latest(run)) and ep["attrs"]["driver_prob"] == 1.0
    labels, executed, acted = ep["actions"], ep["infos/executed_action"], ep["infos/agent_acted"]
    assert (acted == 1.0).all() and np.mean(np.abs(executed - labels) > 0.05) > 0.3  # the agent drove, not the expert
    env = envs.make(TASK)
    try:  # the executed (agent's) actions reproduce the observations, and a fresh expert gives every label
        _replay(env, 2, {"state": ep["observations/state"]}, labels, executed)
    finally:
        env.close()


def test_driver_prob_mixes_agent_and_expert(driver_run, tmp_path):
    data, run = driver_run
    assert run_cli("collect", TASK, "--episodes", "1", "--out", str(tmp_path), "--driver", str(run),
                   "--driver-prob", "0.5", "--seed", "7").returncode == 0
    ep = _episode(dataset_dir(tmp_path, TASK))
    acted = ep["infos/agent_acted"].astype(bool)
    assert 0.35 < acted.mean() < 0.65
    np.testing.assert_array_equal(ep["infos/executed_action"][~acted], ep["actions"][~acted])


def test_lockstep_driving_records_what_one_by_one_does(driver_run, tmp_path):
    """Driven episodes played at once (one batched forward pass of the driver a step, rows dropped as episodes
    end) record the same steps, labels and coins as played one at a time."""
    from generalist.agent.policy import driver_for

    data, run = driver_run
    driver, name = driver_for(run, [TASK])
    for n in (1, 3):
        collect(CollectConfig(tasks=[TASK], episodes=3, out=tmp_path / str(n), seed=20, driver=driver, driver_name=name,
                              driver_prob=0.7, lockstep=n))
    for k in range(3):
        one, three = _episode(dataset_dir(tmp_path / "1", TASK), k), _episode(dataset_dir(tmp_path / "3", TASK), k)
        assert one["attrs"]["seed"] == three["attrs"]["seed"] == 20 + k
        for key in ("actions", "observations/state", "infos/executed_action", "infos/agent_acted", "rewards"):
            np.testing.assert_allclose(one[key], three[key], rtol=1e-6, err_msg=key)


@pytest.mark.parametrize("extra,message", [
    (["--driver-prob", "0"], "--driver-prob must be in (0, 1]"),
    (["--action-noise", "0.2"], "--driver and --action-noise are exclusive"),
    (["--driver", "NOWHERE"], "no checkpoint at NOWHERE")])
def test_bad_driver_input_writes_nothing(driver_run, tmp_path, extra, message):
    data, run = driver_run
    args = ["collect", TASK, "--episodes", "1", "--out", str(tmp_path / "out"), "--driver", str(run), *extra]
    r = run_cli(*args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_driver_must_know_the_task(driver_run, tmp_path):
    data, run = driver_run
    r = run_cli("collect", "metaworld-reach", "--episodes", "1", "--out", str(tmp_path / "out"), "--driver", str(run))
    assert r.returncode == 2 and "never trained on metaworld-reach" in r.stderr
    assert not (tmp_path / "out").exists()
