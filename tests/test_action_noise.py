"""DART noise in collection: labels stay the expert's, the env executes perturbed actions, reproducibly."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

from generalist import cli, envs
from generalist.datasets.collect import CollectConfig, collect
from generalist.datasets.inspect import check
from generalist.datasets.layout import dataset_dir
from generalist.datasets.noise import check_action_noise
from generalist.datasets.recorder import record_episode
from generalist.datasets.writer import DatasetMismatchError
from generalist.experts import make_policy

TASK, SEED, SIGMA = "dmc-cartpole-swingup", 5, 0.3


def _episode(ds: Path, i: int = 0) -> dict[str, np.ndarray]:
    """Every array of episode `i`, by its path in the group, plus its attributes under 'attrs'."""
    out: dict = {}
    with h5py.File(ds / "data/main_data.hdf5", "r") as f:
        g = f[f"episode_{i}"]
        g.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out["attrs"] = dict(g.attrs)
    return out


def _replay(env, seed: int, obs: dict[str, np.ndarray], labels: np.ndarray, executed: np.ndarray) -> None:
    """Step `env` with the executed actions: the observations recur and a fresh expert gives the labels."""
    expert = make_policy("expert", env, seed=seed)
    o, _ = env.reset(seed=seed)
    expert.reset()
    for t in range(len(labels)):
        for k, v in obs.items():
            np.testing.assert_array_equal(o[k], v[t], err_msg=f"observation {k} at step {t}")
        np.testing.assert_array_equal(np.asarray(expert.act(o), dtype=labels.dtype), labels[t],
                                      err_msg=f"label at step {t}")
        a = executed[t]
        o = env.step(int(a) if labels.ndim == 1 else a)[0]


@pytest.fixture(scope="module")
def noisy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("noisy")
    collect(CollectConfig(tasks=[TASK], episodes=1, out=root, seed=SEED, action_noise=SIGMA))
    return root


def test_labels_are_the_experts_and_executed_actions_are_perturbed(noisy_root):
    ds = dataset_dir(noisy_root, TASK)
    ep = _episode(ds)
    labels, executed, noise = ep["actions"], ep["infos/executed_action"], ep["infos/action_noise"]
    assert executed.shape == labels.shape == (1000, 1) and executed.dtype == labels.dtype == np.float32
    assert noise.shape == (1000,) and noise.dtype == np.float32
    assert np.allclose(noise, np.linalg.norm(executed - labels, axis=1))
    assert (np.abs(executed) <= 1).all() and np.mean(executed != labels) > 0.5  # some clipped at ±1
    assert ep["attrs"]["action_noise"] == SIGMA and ep["attrs"]["seed"] == SEED
    meta = json.loads((ds / "data/metadata.json").read_text())
    assert meta["generalist"]["action_noise"] == SIGMA
    env = envs.make(TASK)
    try:
        _replay(env, SEED, {"state": ep["observations/state"]}, labels, executed)
    finally:
        env.close()


def test_same_seed_same_noisy_episode(noisy_root, tmp_path):
    """Re-run in a worker process (the pool path): the same episode, noise included."""
    collect(CollectConfig(tasks=[TASK], episodes=1, out=tmp_path, seed=SEED, action_noise=SIGMA, workers=2))
    a, b = _episode(dataset_dir(noisy_root, TASK)), _episode(dataset_dir(tmp_path, TASK))
    assert a.keys() == b.keys()
    for k in a:
        if k != "attrs":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a["attrs"]["return"] == b["attrs"]["return"]


def test_noisy_dataset_checks_and_loads_in_minari(noisy_root, monkeypatch, capsys):
    ds = dataset_dir(noisy_root, TASK)
    assert check(ds).ok
    assert cli.main(["datasets", "check", str(noisy_root)]) == 0
    minari = pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(noisy_root))
    ep = next(minari.load_dataset(f"{TASK}/expert-v0").iterate_episodes())
    assert ep.infos["executed_action"].shape == ep.actions.shape == (1000, 1)
    assert ep.infos["action_noise"].shape == (1000,)


def test_resume_needs_the_same_noise(noisy_root, capsys):
    with pytest.raises(DatasetMismatchError, match="--action-noise 0.3, not 0.1"):
        collect(CollectConfig(tasks=[TASK], episodes=2, out=noisy_root, seed=SEED, resume=True, action_noise=0.1))
    assert cli.main(["collect", TASK, "--episodes", "2", "--out", str(noisy_root), "--seed", str(SEED),
                     "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("generalist: error:") and "--action-noise 0.3, not 0" in err
    # the same level resumes (nothing left to do here)
    collect(CollectConfig(tasks=[TASK], episodes=1, out=noisy_root, seed=SEED, resume=True, action_noise=SIGMA))
    assert len(_episode(dataset_dir(noisy_root, TASK))["actions"]) == 1000


def test_zero_noise_writes_no_noise_infos(tmp_path):
    collect(CollectConfig(tasks=[TASK], episodes=1, out=tmp_path, seed=SEED, action_noise=0.0))
    ds = dataset_dir(tmp_path, TASK)
    ep = _episode(ds)
    assert not any(k.startswith("infos") for k in ep) and "action_noise" not in ep["attrs"]
    assert "action_noise" not in json.loads((ds / "data/metadata.json").read_text())["generalist"]
    with pytest.raises(DatasetMismatchError, match="--action-noise 0, not 0.3"):
        collect(CollectConfig(tasks=[TASK], episodes=1, out=tmp_path, seed=SEED, resume=True, action_noise=SIGMA))


def test_discrete_noise_on_pong(monkeypatch):
    """80 steps of Pong (episodes are ~7,800): random actions replace the expert's with probability 0.5."""
    env = envs.make("atari-pong")
    step, n = env.step, [0]

    def short_step(a):
        o, r, term, trunc, info = step(a)
        n[0] += 1
        return o, r, term, trunc or n[0] % 80 == 0, info

    monkeypatch.setattr(env, "step", short_step)
    try:
        ep, _ = record_episode(env, make_policy("expert", env, seed=SEED), SEED, action_noise=0.5)
        again, _ = record_episode(env, make_policy("expert", env, seed=SEED), SEED, action_noise=0.5)
        labels, executed, drawn = ep.actions, ep.infos["executed_action"], ep.infos["action_noise"]
        assert ep.steps == 80 and executed.dtype == labels.dtype == np.int64 and drawn.dtype == np.float32
        assert set(np.unique(drawn)) == {0.0, 1.0} and 0.25 < drawn.mean() < 0.75
        assert (executed[drawn == 0] == labels[drawn == 0]).all() and (executed != labels).any()
        assert ((executed >= 0) & (executed < env.action_space.n)).all() and ep.attrs["action_noise"] == 0.5
        for k in ("executed_action", "action_noise"):
            np.testing.assert_array_equal(ep.infos[k], again.infos[k])
        np.testing.assert_array_equal(ep.actions, again.actions)
        monkeypatch.undo()  # replay with the real step (the episode is cut by our step count only)
        _replay(env, SEED, ep.observations, labels, executed)
    finally:
        env.close()


def test_bad_noise_levels_refused(tmp_path, capsys):
    check_action_noise(1.5, gym.spaces.Box(-1, 1, (2,)))
    for sigma, space in [(-0.1, gym.spaces.Box(-1, 1, (2,))), (float("nan"), None), (1.5, gym.spaces.Discrete(6))]:
        with pytest.raises(ValueError, match="--action-noise"):
            check_action_noise(sigma, space)
    out = tmp_path / "o"
    for task, sigma, msg in [(TASK, "-0.1", "must be >= 0"), ("atari-pong", "1.5", "probability")]:
        assert cli.main(["collect", task, "--episodes", "1", "--out", str(out), "--action-noise", sigma]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("generalist: error: --action-noise") and msg in err
    assert not out.exists()
