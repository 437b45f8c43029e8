"""Bad input and faults through the real CLI: exit 2, one line, no traceback, existing bytes unchanged.

Every case runs `python -m generalist` in a subprocess as a user would, on small real datasets
(cartpole, 1000 steps an episode) and a tiny model trained for a few steps.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import run_cli

from generalist.datasets.layout import dataset_dir
from generalist.lock import LOCK_FILE, WriterLock

TASK = "dmc-cartpole-swingup"
TINY_TRAIN = ("--steps", "3", "--ckpt-every", "1", "--eval-every", "3", "--context", "64", "--batch", "4")


# ---------------------------------------------------------------- helpers
def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root` (the writer lock aside: it holds only a PID)."""
    root = Path(root)
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def refused(res: subprocess.CompletedProcess, *needles: str, only_line: bool = True) -> str:
    """Assert exit 2 with one `generalist: error:` line holding every needle, and no traceback."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [ln for ln in res.stderr.replace("\r", "\n").splitlines() if "generalist: error:" in ln]
    assert len(errors) == 1, res.stderr[-2000:]
    line = errors[0][errors[0].index("generalist: error:"):]
    if only_line:  # a refusal before any work: nothing else on stderr
        assert res.stderr.strip() == line, res.stderr[-2000:]
    for n in needles:
        assert n in line, (n, line)
    return line


def ds_of(root: Path) -> Path:
    return dataset_dir(root, TASK)


def main_file(root: Path) -> Path:
    return ds_of(root) / "data" / "main_data.hdf5"


def made(path: Path, *args: str) -> Path:
    """`path`, after `generalist ARGS` built it successfully."""
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A packed 3-episode dataset (seeds 0..2), copied by each test that changes it."""
    root = tmp_path_factory.mktemp("ds")
    return made(root, "collect", TASK, "--episodes", "3", "--out", str(root))


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> Path:
    """A tiny run with checkpoints at steps 1, 2, 3."""
    run = tmp_path_factory.mktemp("run") / "run"
    return made(run, "train", "--data", str(dataset), "--out", str(run), *TINY_TRAIN)


@pytest.fixture
def data(dataset, tmp_path) -> Path:
    return Path(shutil.copytree(dataset, tmp_path / "data"))


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


# ---------------------------------------------------------------- existing data is never overwritten
def test_collect_refuses_existing_dataset(data):
    before = snapshot(data)
    refused(run_cli("collect", TASK, "--episodes", "1", "--out", str(data)), "already exists", "--resume")
    assert snapshot(data) == before


def test_dataset_without_metadata_is_refused_not_overwritten_nor_skipped(data, tmp_path):
    (ds_of(data) / "data" / "metadata.json").unlink()
    before = snapshot(data)
    refused(run_cli("collect", TASK, "--episodes", "1", "--out", str(data)), "no metadata.json")
    refused(run_cli("collect", TASK, "--episodes", "4", "--out", str(data), "--resume"), "metadata.json is missing")
    refused(run_cli("datasets", "info", str(data)), "metadata.json is missing", only_line=False)
    refused(run_cli("train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY_TRAIN),
            "metadata.json is missing")
    res = run_cli("datasets", "check", str(data))
    assert res.returncode == 1 and "BAD" in res.stdout and "metadata.json is missing" in res.stdout
    assert snapshot(data) == before


def test_parts_alone_mean_a_dataset(data):
    """Only parts/ left (a crash before the first index): still a dataset, never overwritten."""
    d = ds_of(data) / "data"
    (d / "parts").mkdir()
    shutil.move(d / "main_data.hdf5", d / "parts" / "episode_000000.hdf5")
    (d / "metadata.json").unlink()
    before = snapshot(data)
    refused(run_cli("collect", TASK, "--episodes", "1", "--out", str(data)), "no metadata.json")
    assert snapshot(data) == before


def test_garbage_metadata_names_the_file(data, tmp_path):
    meta = ds_of(data) / "data" / "metadata.json"
    meta.write_text('{"dataset_id": garbage')
    before = snapshot(data)
    for args in (("datasets", "info", str(data)),
                 ("train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY_TRAIN),
                 ("collect", TASK, "--episodes", "4", "--out", str(data), "--resume")):
        refused(run_cli(*args), str(meta), "not valid JSON", only_line=False)
    res = run_cli("datasets", "check", str(data))
    assert res.returncode == 1 and "not valid JSON" in res.stdout
    assert snapshot(data) == before


def test_truncated_hdf5(data, tmp_path):
    main = main_file(data)
    os.truncate(main, main.stat().st_size // 3)
    before = snapshot(data)
    refused(run_cli("datasets", "info", str(data)), str(main), "truncated", only_line=False)
    refused(run_cli("train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY_TRAIN), str(main), "truncated")
    refused(run_cli("collect", TASK, "--episodes", "4", "--out", str(data), "--resume"), "cannot resume")
    res = run_cli("datasets", "check", str(data))
    assert res.returncode == 1 and "does not open" in res.stdout
    assert snapshot(data) == before


# ---------------------------------------------------------------- what a window reads is checked
@pytest.mark.parametrize("encoding, workers", [("tokens", "0"), ("vector", "0"), ("tokens", "1")])
def test_train_refuses_nan_observations(data, tmp_path, encoding, workers):
    with h5py.File(main_file(data), "r+") as f:
        for name in f:
            f[name]["observations/state"][...] = np.nan
    before = snapshot(data)
    res = run_cli("train", "--data", str(data), "--out", str(tmp_path / "r"), "--obs-encoding", encoding,
                  "--workers", workers, *TINY_TRAIN)
    refused(res, f"task {TASK}, episode", "observations/state holds NaN", only_line=False)
    assert snapshot(data) == before
    assert not list((tmp_path / "r").glob("checkpoints/step_*"))


def test_train_refuses_actions_shorter_than_total_steps(data, tmp_path):
    with h5py.File(main_file(data), "r+") as f:
        for name in f:
            f[name]["actions"].resize((0, 1))
    res = run_cli("train", "--data", str(data), "--out", str(tmp_path / "r"), *TINY_TRAIN)
    refused(res, f"task {TASK}, episode", "actions has 0 rows where total_steps=1000", only_line=False)


# ---------------------------------------------------------------- options refused up front
@pytest.mark.parametrize("args, needle", [
    (("collect", TASK, "--episodes", "2", "--seed", "-5"), "--seed"),
    (("collect", TASK, "--episodes", "2", "--workers", "0"), "--workers"),
])
def test_collect_options_refused_before_anything_is_written(tmp_path, args, needle):
    refused(run_cli(*args, "--out", str(tmp_path / "o")), needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, value", [("--ckpt-every", "0"), ("--eval-every", "0"), ("--seed", "-5"),
                                         ("--keep-last", "-1"), ("--steps", "0")])
def test_train_options_refused(dataset, tmp_path, flag, value):
    refused(run_cli("train", "--data", str(dataset), "--out", str(tmp_path / "r"), flag, value), flag)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag, value", [("--workers", "0"), ("--seed", "-5"), ("--episodes", "0"), ("--prompt", "-1")])
def test_eval_options_refused(tmp_path, flag, value):
    refused(run_cli("eval", "--policy", "random", "--tasks", TASK, "--out", str(tmp_path / "e"), flag, value), flag)
    assert not (tmp_path / "e").exists()


# ---------------------------------------------------------------- --out that cannot be a directory
@pytest.mark.parametrize("under", [False, True])
def test_out_is_a_file_or_under_one(tmp_path, dataset, trained, under):
    f = tmp_path / "a_file"
    f.write_text("keep me\n")
    out = f / "sub" if under else f
    want = "which is a file" if under else "is a file, not a directory"
    for args in (("collect", TASK, "--episodes", "1", "--out", str(out)),
                 ("eval", str(trained), "--episodes", "1", "--out", str(out), "--no-videos"),
                 ("train", "--data", str(dataset), "--out", str(out), *TINY_TRAIN),
                 ("run", "--out", str(out))):
        refused(run_cli(*args), want, only_line=args[0] != "train")
    assert f.read_text() == "keep me\n"


def _tmpfs(path: Path, size: str, read_only: bool = False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    if os.geteuid() != 0 or not _tmpfs(mnt, "300k"):
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_is_a_sentence_and_keeps_finished_episodes(small_disk):
    res = run_cli("collect", TASK, "--episodes", "8", "--out", str(small_disk))
    refused(res, "free some space", only_line=False)
    ok = run_cli("datasets", "check", str(small_disk))
    assert ok.returncode == 0, ok.stdout  # what was committed before the disk filled is whole


def test_read_only_file_system(tmp_path):
    mnt = tmp_path / "ro"
    if os.geteuid() != 0 or not _tmpfs(mnt, "1m", read_only=True):
        pytest.skip("needs root to mount a read-only tmpfs")
    try:
        refused(run_cli("collect", TASK, "--episodes", "1", "--out", str(mnt / "d")), "read-only")
        refused(run_cli("eval", "--policy", "random", "--tasks", TASK, "--episodes", "1",
                        "--out", str(mnt / "e")), "read-only")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# ---------------------------------------------------------------- one writer per directory
@pytest.mark.parametrize("command", ["collect", "train", "eval", "run"])
def test_second_writer_is_refused_naming_the_holder(tmp_path, dataset, trained, command):
    out = tmp_path / "out"
    target = {"collect": ds_of(out), "train": out, "eval": out, "run": out}[command]
    args = {"collect": ("collect", TASK, "--episodes", "1", "--out", str(out)),
            "train": ("train", "--data", str(dataset), "--out", str(out), *TINY_TRAIN),
            "eval": ("eval", str(trained), "--episodes", "1", "--out", str(out), "--no-videos"),
            "run": ("run", "--out", str(out))}[command]
    with WriterLock(target, "test"):
        before = snapshot(out)
        refused(run_cli(*args), f"being written by process {os.getpid()}", only_line=command != "train")
        assert snapshot(out) == before


def test_datasets_check_says_a_dataset_is_being_written(data):
    with WriterLock(ds_of(data), "test"):
        res = run_cli("datasets", "check", str(data))
    assert res.returncode == 0 and f"busy {ds_of(data)}: being written by process {os.getpid()}" in res.stdout
    assert "BAD" not in res.stdout


def _seeds(root: Path) -> list[int]:
    with h5py.File(main_file(root), "r") as f:
        return sorted(int(f[n].attrs["seed"]) for n in f)


@pytest.mark.parametrize("trial", range(10))
def test_two_collects_racing_on_one_dataset(data, trial):
    """Two `collect --resume` at once on a 3-episode dataset: one may be refused, nothing is lost."""
    cmd = [sys.executable, "-m", "generalist", "collect", TASK, "--episodes", "5", "--out", str(data), "--resume"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode in (0, 2), err[-2000:]
        assert "Traceback" not in err
        if p.returncode == 2:
            assert "is being written by process" in err
    assert 0 in [p.returncode for p in procs]
    assert _seeds(data) == list(range(5))
    res = run_cli("datasets", "check", str(data))
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout


# ---------------------------------------------------------------- checkpoints
def test_damaged_latest_checkpoint_falls_back(run_copy, dataset, tmp_path):
    latest = run_copy / "checkpoints" / "step_00000003"
    os.truncate(latest / "model.safetensors", 1000)
    res = run_cli("eval", str(run_copy), "--episodes", "1", "--out", str(tmp_path / "e"), "--no-videos")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"checkpoint {latest} is damaged" in res.stderr
    scores = json.loads((tmp_path / "e" / "scores.json").read_text())
    assert scores["checkpoint"].endswith("step_00000002")
    refused(run_cli("eval", str(latest), "--episodes", "1", "--out", str(tmp_path / "e2"), "--no-videos"),
            "is damaged")
    res = run_cli("train", "--data", str(dataset), "--out", str(run_copy), "--steps", "4", "--ckpt-every", "1",
                  "--eval-every", "4", "--context", "64", "--batch", "4", "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    kept = sorted(p.name for p in (run_copy / "checkpoints").glob("step_*"))
    assert kept == ["step_00000002", "step_00000003", "step_00000004"]  # --keep-last 3 by default


def test_every_checkpoint_damaged(run_copy, tmp_path, dataset):
    for ck in (run_copy / "checkpoints").glob("step_*"):
        os.truncate(ck / "model.safetensors", 10)
    refused(run_cli("eval", str(run_copy), "--episodes", "1", "--out", str(tmp_path / "e"), "--no-videos"),
            "every checkpoint", only_line=False)
    before = snapshot(run_copy)
    refused(run_cli("train", "--data", str(dataset), "--out", str(run_copy), *TINY_TRAIN), "already holds a run",
            only_line=False)
    assert snapshot(run_copy) == before


def test_keep_last(dataset, tmp_path):
    run = made(tmp_path / "r", "train", "--data", str(dataset), "--out", str(tmp_path / "r"), *TINY_TRAIN,
               "--keep-last", "1")
    assert [p.name for p in (run / "checkpoints").glob("step_*")] == ["step_00000003"]


# ---------------------------------------------------------------- evaluation does not waste time
def test_eval_rerun_keeps_finished_tasks(tmp_path):
    out = tmp_path / "e"
    args = ("eval", "--policy", "random", "--tasks", TASK, "--episodes", "2", "--out", str(out), "--no-videos")
    assert run_cli(*args).returncode == 0
    kept = out / "partial" / "random" / f"{TASK}.json"
    rows = json.loads(kept.read_text())
    assert [r["seed"] for r in rows] == [2_000_000, 2_000_001]
    for r in rows:  # a marker: a rerun that reuses the file reports these returns
        r["ret"] = 123.0
    kept.write_text(json.dumps(rows))
    (out / "scores.json").unlink()
    assert run_cli(*args).returncode == 0
    assert json.loads((out / "scores.json").read_text())["tasks"][TASK]["agent_mean"] == 123.0
    (out / "scores.json").unlink()
    refused(run_cli(*args[:-3], "--seed", "7", "--out", str(out), "--no-videos"), "other settings")


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid` (read from /proc)."""
    parent_of = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent_of[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parent_of.items() if p in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("settle", [0.0, 3.0])  # kill while workers start, and once they run episodes
def test_killed_eval_leaves_no_workers(tmp_path, settle):
    proc = subprocess.Popen([sys.executable, "-m", "generalist", "eval", "--policy", "random", "--tasks", TASK,
                             "--episodes", "40", "--workers", "2", "--out", str(tmp_path / "e"), "--no-videos"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    kids: set[int] = set()
    while time.time() < deadline and len(kids) < 3:  # 2 workers and the resource tracker
        kids = _children(proc.pid)
        time.sleep(0.1)
    assert len(kids) >= 2, kids
    time.sleep(settle)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)]


# ---------------------------------------------------------------- bugs are not user errors
@pytest.mark.parametrize("bug", [ValueError("a bug"), KeyError("a bug"), FileNotFoundError(2, "a bug")])
def test_programming_errors_keep_their_traceback(monkeypatch, bug):
    """The CLI turns only GeneralistError and user-fixable OS errors into one line; a bug propagates."""
    from generalist import cli

    def broken(args):
        raise bug

    monkeypatch.setattr(cli, "cmd_envs", broken)
    with pytest.raises(type(bug)):
        cli.main(["envs"])
