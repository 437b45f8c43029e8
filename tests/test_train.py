"""The training job: learns, checkpoints, resumes after SIGKILL, DDP on gloo matches one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from generalist.agent import checkpoint
from generalist.datasets.collect import CollectConfig, collect
from generalist.datasets.layout import serialize_space

TRAIN = ["--context", "256", "--batch", "4", "--eval-every", "5", "--lr", "3e-3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    collect(CollectConfig(tasks=["dmc-reacher-easy", "metaworld-reach", "memorymaze-9x9"], episodes=2,
                          out=root))
    return root


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_learns_and_checkpoints(data, tmp_path, cli):
    run = tmp_path / "run"
    res = cli("train", "--data", str(data), "--out", str(run), "--steps", "30", "--ckpt-every", "15", *TRAIN)
    assert res.returncode == 0, res.stderr[-2000:]
    m = _metrics(run)
    assert [r["step"] for r in m] == list(range(1, 31))
    first, last = sum(r["loss"] for r in m[:3]) / 3, sum(r["loss"] for r in m[-3:]) / 3
    assert last < first - 1.0, (first, last)  # from ~ln(2049)=7.6 down
    assert "val_loss" in m[-1] and "val_action_acc" in m[-1]
    ck = checkpoint.latest(run)
    assert ck.name == "step_00000030"
    assert {p.name for p in ck.iterdir()} == {"model.safetensors", "train_state.pt", "meta.json", "manifest.json"}
    meta = checkpoint.load_meta(ck)
    assert set(meta["data"]) == {"dmc-reacher-easy", "metaworld-reach", "memorymaze-9x9"}
    assert (run / "checkpoints" / "step_00000015").exists()


def test_refuses_existing_run_and_mismatched_resume(data, tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", "--data", str(data), "--out", str(run), "--steps", "2", *TRAIN).returncode == 0
    res = cli("train", "--data", str(data), "--out", str(run), "--steps", "4", *TRAIN)
    assert res.returncode != 0 and "--resume" in res.stderr
    res = cli("train", "--data", str(data), "--out", str(run), "--steps", "4", "--config", "small", "--resume", *TRAIN)
    assert res.returncode != 0 and "different model" in res.stderr
    sub = tmp_path / "subset"
    shutil.copytree(data / "dmc-reacher-easy", sub / "dmc-reacher-easy")
    res = cli("train", "--data", str(sub), "--out", str(run), "--steps", "4", "--resume", *TRAIN)
    assert res.returncode != 0 and "different data" in res.stderr


def test_bad_data_inputs(data, tmp_path, cli):
    res = cli("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r1"))
    assert res.returncode != 0 and "does not exist" in res.stderr
    (tmp_path / "empty").mkdir()
    res = cli("train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r2"))
    assert res.returncode != 0 and "no dataset" in res.stderr
    bad = tmp_path / "bad"
    shutil.copytree(data / "dmc-reacher-easy", bad / "dmc-reacher-easy")
    meta_path = bad / "dmc-reacher-easy/expert-v0/data/metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["observation_space"] = json.dumps(serialize_space(gym.spaces.Dict(
        {"state": gym.spaces.Box(-np.inf, np.inf, (7,), np.float32)})))
    meta_path.write_text(json.dumps(meta))
    res = cli("train", "--data", str(bad), "--out", str(tmp_path / "r3"))
    assert res.returncode != 0 and "dmc-reacher-easy" in res.stderr and "space" in res.stderr


def test_sigkill_then_resume(data, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "generalist", "train", "--data", str(data), "--out", str(run),
            "--steps", "16", "--ckpt-every", "4", *TRAIN]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while checkpoint.latest(run) is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ck = checkpoint.latest(run)
    step = checkpoint.load_meta(ck)["step"]
    assert step >= 4 and step < 16
    res = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert checkpoint.load_meta(checkpoint.latest(run))["step"] == 16
    steps = [r["step"] for r in _metrics(run)]
    assert steps[-1] == 16 and steps.count(step + 1) >= 1


def test_ddp_gloo_two_processes_match_one(data, tmp_path):
    """Same global batch: 2 ranks x 2 windows follow the curve of 1 process x 4 windows."""
    common = ["--data", str(data), "--steps", "5", "--eval-every", "100", "--context", "256", "--batch", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "generalist", "train", "--out", str(tmp_path / "one"), *common],
                         capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "generalist", "train", "--out", str(tmp_path / "two"), *common],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    a = [r["loss"] for r in _metrics(tmp_path / "one")]
    b = [r["loss"] for r in _metrics(tmp_path / "two")]
    assert len(a) == len(b) == 5
    for x, y in zip(a, b, strict=True):
        assert abs(x - y) < 1e-3 * max(1.0, abs(x)), (a, b)


def test_validation_is_per_task(data, tmp_path):
    from generalist.agent.train import TrainConfig, train

    logs = []
    train(TrainConfig(data=[str(data)], out=str(tmp_path / "r"), steps=2, batch=2, context=256, eval_every=2,
                      val_batches=1), on_log=logs.append)
    accs = {k: v for k, v in logs[-1].items() if k.startswith("val/") and k.endswith("/loss")}
    assert set(accs) == {f"val/{t}/loss" for t in ("dmc-reacher-easy", "metaworld-reach", "memorymaze-9x9")}
    assert len(set(accs.values())) == 3  # each task scored on its own held-out windows


def test_dataloader_workers_and_wandb_offline(data, tmp_path, cli):
    run = tmp_path / "run"
    res = cli("train", "--data", str(data), "--out", str(run), "--steps", "3", "--workers", "2",
              "--wandb", "offline", *TRAIN, env={"WANDB_MODE": "offline"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(_metrics(run)) == 3
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))


def test_balance_tasks_evens_out_gradient_norms(data, tmp_path):
    """--balance-tasks 1: each task's loss scale times its measured gradient norm is the same for every task,
    and a resumed run continues the balancer's measurements."""
    from generalist.agent.train import TrainConfig, train

    logs = []
    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "r"), steps=2, batch=4, context=256, eval_every=2,
                      ckpt_every=2, val_batches=1, balance_tasks=1.0)
    train(cfg, on_log=logs.append)
    tasks = ("dmc-reacher-easy", "metaworld-reach", "memorymaze-9x9")
    norms = [logs[-1][f"balance/{t}/grad_norm"] for t in tasks]
    evened = [logs[-1][f"balance/{t}/scale"] * n for t, n in zip(tasks, norms, strict=True)]
    assert max(norms) > 1.5 * min(norms)  # the tasks' gradients differ in size ...
    np.testing.assert_allclose(evened, evened[0], rtol=1e-4)  # ... and the scales even them out
    state = checkpoint.load_train_state(checkpoint.latest(tmp_path / "r"))
    assert state["extra"]["balancer"]["measured"] == 1
    train(TrainConfig(**{**cfg.__dict__, "steps": 4}), resume=True, on_log=logs.append)
    assert checkpoint.load_train_state(checkpoint.latest(tmp_path / "r"))["extra"]["balancer"]["measured"] == 1


def test_task_balancer_scales():
    from generalist.agent.balance import TaskBalancer

    b = TaskBalancer({}, 16, alpha=1.0, max_scale=3.0)
    b.load_state_dict({"norms": {0: 1.0, 1: 4.0, 2: 100.0}, "measured": 1})
    # geometric mean of the norms is (400)^(1/3) = 7.37: scales 7.37, 1.84, 0.074 -> clipped to [1/3, 3]
    np.testing.assert_allclose(b.scale.tolist(), [3.0, 400 ** (1 / 3) / 4, 1 / 3], rtol=1e-6)


def test_per_shape_input_encoders(data, tmp_path):
    """--input-encoders per-shape: one state projection per state size (reacher 6, Meta-World 39), the maze's
    frames their own conv encoder; stored in the checkpoint and loaded back; refused with Gato's tokens."""
    from generalist.agent.config import ModelConfig
    from generalist.agent.model import GatoModel
    from generalist.agent.train import TrainConfig, train
    from generalist.errors import ConfigError

    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "r"), steps=2, batch=4, context=256, eval_every=2,
                      ckpt_every=2, val_batches=1, obs_encoding="vector", input_encoders="per-shape")
    train(cfg)
    ck = checkpoint.latest(tmp_path / "r")
    meta = checkpoint.load_meta(ck)
    # tasks in sorted order: dmc-reacher-easy, memorymaze-9x9, metaworld-reach
    assert meta["model"]["state_encoders"] == [0, 0, 1] and meta["model"]["frame_encoders"] == [0, 0, 0]
    model = GatoModel(ModelConfig(**meta["model"]))
    model.load_state_dict(checkpoint.load_weights(ck))  # strict: the stored weights are the per-shape ones
    assert len(model.vector_embed) == 2 and len(model.frame_embed) == 1
    # the teacher-forced confusion script plays recorded maze steps through this checkpoint's acting path
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from action_confusion import confusion

    table = confusion(ck, data, "memorymaze-9x9", steps=12, episode=-1)
    assert table.shape == (6, 6) and table.sum() == 12
    with pytest.raises(ConfigError, match="per-shape needs --obs-encoding vector"):
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "t"), "obs_encoding": "tokens"}))


def test_weight_average_follows_the_formula():
    import torch

    from generalist.agent.ema import WeightAverage

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    avg, expect = WeightAverage(model, decay=0.9), 0.0
    for n in range(1, 30):
        with torch.no_grad():
            model.weight.fill_(float(n))
        avg.update(model)
        d = min(0.9, (1 + n) / (10 + n))
        expect = d * expect + (1 - d) * n
    np.testing.assert_allclose(avg.model.weight.detach().numpy(), expect, rtol=1e-6)
    assert not avg.model.weight.requires_grad


def test_ema_checkpoint_acts_with_the_average_and_resumes(data, tmp_path):
    """--ema: model.safetensors holds the average (what eval plays), train_state.pt the optimizer's weights; a run
    resumed at step 2 ends with the same average and weights as one trained to step 4 in one go."""
    import torch

    from generalist.agent.train import TrainConfig, train
    from generalist.errors import ConfigError

    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "a"), steps=4, batch=4, context=256, eval_every=2,
                      ckpt_every=2, val_batches=1, obs_encoding="vector", ema=0.5, lr=3e-3)
    train(cfg)
    train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "b"), "steps": 2}))
    train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "b")}), resume=True)
    ends = []
    for run in ("a", "b"):
        ck = checkpoint.latest(tmp_path / run)
        avg, state = checkpoint.load_weights(ck), checkpoint.load_train_state(ck)
        online = state["extra"]["online_weights"]
        assert state["extra"]["ema_updates"] == 4
        assert any(not torch.equal(avg[k], online[k]) for k in avg)  # the average is not the last weights
        ends.append((avg, online))
    for k in ends[0][0]:
        torch.testing.assert_close(ends[0][0][k], ends[1][0][k])
        torch.testing.assert_close(ends[0][1][k], ends[1][1][k])
    with pytest.raises(ConfigError, match="--ema"):
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "b"), "steps": 6, "ema": 0.0}), resume=True)
