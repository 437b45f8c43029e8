"""Datasets: Minari-layout round trip, check, refusal to overwrite, bad input, resume, SIGKILL safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from generalist.datasets.collect import CollectConfig, collect
from generalist.datasets.inspect import check, info
from generalist.datasets.layout import dataset_dir

TASK = "dmc-reacher-easy"  # 1000 steps per episode, ~1 s per episode here


def _seeds(ds: Path) -> list[int]:
    with h5py.File(ds / "data" / "main_data.hdf5", "r") as f:
        return [int(f[f"episode_{i}"].attrs["seed"]) for i in range(len(f))]


def test_round_trip_minari_layout(tmp_path):
    collect(CollectConfig(tasks=[TASK, "metaworld-reach"], episodes=2, out=tmp_path, seed=7))
    ds = dataset_dir(tmp_path, TASK)
    data = ds / "data"
    assert sorted(p.name for p in data.iterdir()) == ["main_data.hdf5", "metadata.json"]
    meta = json.loads((data / "metadata.json").read_text())
    assert meta["dataset_id"] == f"{TASK}/expert-v0"
    assert meta["total_episodes"] == 2 and meta["total_steps"] == 2000
    with h5py.File(data / "main_data.hdf5", "r") as f:
        assert sorted(f) == ["episode_0", "episode_1"]
        g = f["episode_1"]
        assert dict(g.attrs)["id"] == 1 and g.attrs["seed"] == 8 and g.attrs["total_steps"] == 1000
        assert g["observations/state"].shape == (1001, 6) and g["observations/state"].dtype == np.float32
        assert g["actions"].shape == (1000, 2) and g["rewards"].shape == (1000,)
        assert g["truncations"][-1] and not g["terminations"][()].any()
        assert np.isclose(g["rewards"][()].sum(), g.attrs["return"])
    with h5py.File(dataset_dir(tmp_path, "metaworld-reach") / "data/main_data.hdf5", "r") as f:
        assert f["episode_0/infos/success"].dtype == bool and f["episode_0/infos/success"][()].any()
    assert check(ds).ok
    i = info(ds)
    assert i["episodes"] == 2 and i["steps"] == 2000 and i["return_mean"] > 900


def test_minari_reads_what_we_write(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    collect(CollectConfig(tasks=["atari-pong", TASK], episodes=1, out=tmp_path))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    ds = minari.load_dataset("atari-pong/expert-v0")
    ep = next(ds.iterate_episodes())
    assert ep.observations["image"].shape[1:] == (84, 84, 1)
    assert len(ep.observations["image"]) == len(ep.actions) + 1
    assert ds.total_episodes == 1 and ds.total_steps == len(ep.actions)
    env = minari.load_dataset(f"{TASK}/expert-v0").recover_environment()
    assert env.reset(seed=0)[0]["state"].shape == (6,)


def test_images_chunked_and_compressed(tmp_path):
    collect(CollectConfig(tasks=["atari-pong"], episodes=1, out=tmp_path))
    with h5py.File(dataset_dir(tmp_path, "atari-pong") / "data/main_data.hdf5", "r") as f:
        img = f["episode_0/observations/image"]
        assert img.compression == "gzip" and img.chunks[1:] == (84, 84, 1)
        stored = img.id.get_storage_size()
        assert stored * 10 < img.nbytes  # Pong frames compress > 10x


def test_refuses_to_overwrite(tmp_path, cli):
    collect(CollectConfig(tasks=[TASK], episodes=1, out=tmp_path))
    before = (dataset_dir(tmp_path, TASK) / "data/main_data.hdf5").read_bytes()
    res = cli("collect", TASK, "--episodes", "2", "--out", str(tmp_path))
    assert res.returncode != 0 and "--resume" in res.stderr and "already exists" in res.stderr
    assert (dataset_dir(tmp_path, TASK) / "data/main_data.hdf5").read_bytes() == before


def test_unknown_task_writes_nothing(tmp_path, cli):
    out = tmp_path / "out"
    res = cli("collect", TASK, "atari-nope", "--episodes", "1", "--out", str(out))
    assert res.returncode != 0
    assert "unknown task 'atari-nope'" in res.stderr and "atari-pong" in res.stderr
    assert not out.exists()


def test_resume_completes_without_duplicates(tmp_path):
    collect(CollectConfig(tasks=[TASK], episodes=2, out=tmp_path, seed=100))
    collect(CollectConfig(tasks=[TASK], episodes=4, out=tmp_path, seed=100, resume=True))
    ds = dataset_dir(tmp_path, TASK)
    assert sorted(_seeds(ds)) == [100, 101, 102, 103]
    assert check(ds).ok and info(ds)["packed"]
    with pytest.raises(Exception, match="seed"):
        collect(CollectConfig(tasks=[TASK], episodes=5, out=tmp_path, seed=0, resume=True))


def test_resume_removes_cut_short_rewrites(tmp_path):
    """A kill during the index or metadata rewrite leaves `*.tmp` beside them; resuming removes them."""
    collect(CollectConfig(tasks=[TASK], episodes=1, out=tmp_path, seed=0))
    data = dataset_dir(tmp_path, TASK) / "data"
    (data / "main_data.hdf5.tmp").write_bytes(b"half an index")
    (data / "metadata.json.tmp").write_text("{")
    collect(CollectConfig(tasks=[TASK], episodes=2, out=tmp_path, seed=0, resume=True))
    assert sorted(_seeds(data.parent)) == [0, 1] and check(data.parent).ok
    assert not [p.name for p in data.rglob("*.tmp")]


def test_check_names_broken_episode(tmp_path, cli):
    collect(CollectConfig(tasks=[TASK], episodes=2, out=tmp_path))
    main = dataset_dir(tmp_path, TASK) / "data/main_data.hdf5"
    with h5py.File(main, "r+") as f:
        f["episode_1/observations/state"][5, 0] = np.nan
        del f["episode_0/rewards"]
        f["episode_0"].create_dataset("rewards", data=np.zeros(999))
    res = cli("datasets", "check", str(tmp_path))
    assert res.returncode == 1
    assert "episode_1: observations/state holds NaN" in res.stdout
    assert "episode_0: attr total_steps=1000 but 999 rewards" in res.stdout


def test_datasets_info_cli(tmp_path, cli):
    collect(CollectConfig(tasks=[TASK], episodes=2, out=tmp_path))
    res = cli("datasets", "info", str(tmp_path), "--json")
    assert res.returncode == 0
    (row,) = json.loads(res.stdout)
    assert row["episodes"] == 2 and row["steps"] == 2000 and row["size_mb"] > 0
    res = cli("datasets", "info", str(tmp_path / "nothing-here"))
    assert res.returncode != 0 and "no dataset found" in res.stderr


def _committed(ds: Path) -> int:
    try:
        return json.loads((ds / "data/metadata.json").read_text())["total_episodes"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("kill_after", [0.0, 0.35, 0.7])
def test_sigkill_then_resume(tmp_path, kill_after):
    """Kill a 2-worker run at an arbitrary moment; what is left opens, and --resume completes it."""
    n = 6
    ds = dataset_dir(tmp_path, TASK)
    proc = subprocess.Popen([sys.executable, "-m", "generalist", "collect", TASK, "--episodes", str(n),
                             "--out", str(tmp_path), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _committed(ds) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(kill_after)  # land anywhere: mid-episode, mid-write, mid-commit
    committed = _committed(ds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert committed >= 2
    rep = check(ds)
    assert rep.ok, rep.problems
    seeds = _seeds(ds)
    assert len(seeds) >= committed and len(set(seeds)) == len(seeds)
    res = subprocess.run([sys.executable, "-m", "generalist", "collect", TASK, "--episodes", str(n),
                          "--out", str(tmp_path), "--resume"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert sorted(_seeds(ds)) == list(range(n))
    assert check(ds).ok
    assert not (ds / "data/parts").exists()
    left = [str(p.relative_to(ds)) for p in (ds / "data").rglob("*.tmp")]
    assert not left, f"temporary files left after the resume: {left}"
    os.sync()


def test_collect_logs_to_wandb_offline(tmp_path, cli):
    res = subprocess.run([sys.executable, "-m", "generalist", "collect", TASK, "--episodes", "1", "--out",
                          str(tmp_path / "d"), "--wandb", "offline"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env={**os.environ, "WANDB_MODE": "offline"})
    assert res.returncode == 0, res.stderr
    assert "collected 1 episodes" in res.stdout
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert runs and runs[0].stat().st_size > 0


def test_bad_episode_count_writes_nothing(tmp_path, cli):
    res = cli("collect", TASK, "--episodes", "0", "--out", str(tmp_path / "o"))
    assert res.returncode != 0 and "--episodes" in res.stderr
    assert not (tmp_path / "o").exists()
