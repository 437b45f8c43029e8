"""The prepared GPU check (scripts/gpu_check.sh): its dry run on CPU, the FLOPs count, and the
checkpoint it returns in shards, rebuilt here and evaluated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import torch_only_site

from generalist.agent import checkpoint, ckpt_shards
from generalist.agent.flops import block_params, peak_bf16, step_flops
from generalist.agent.model import SIZES, GatoModel
from generalist.datasets.collect import CollectConfig, collect

REPO = Path(__file__).resolve().parents[1]
RETURN_LIMIT = 16 * 2**20  # bytes per file a lent device sends back
RETURN_FILES = 8


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    collect(CollectConfig(tasks=["dmc-cartpole-swingup", "metaworld-reach"], episodes=2, out=root))
    return root


def _check(data: Path, tmp: Path, *flags: str, torch_only: bool = False) -> subprocess.CompletedProcess:
    """scripts/gpu_check.sh --dry-run; torch_only: under `python -S` with only the device's packages."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp / "out")}
    if torch_only:
        python = tmp / "python-S"
        python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
        python.chmod(0o755)
        env.update(PYTHON=str(python), PYTHONPATH=str(torch_only_site(tmp / "site")))
    return subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--data", str(data),
                           "--work", str(tmp / "work"), *flags], capture_output=True, text=True, env=env,
                          timeout=900, cwd=tmp)


def _returned(out: Path) -> list[Path]:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= RETURN_FILES and all(p.stat().st_size <= RETURN_LIMIT for p in files), files
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)
    return files


def test_dry_run_then_eval_the_returned_checkpoint(data, tmp_path, cli):
    """The dry run where only the GPU machine's packages exist, then, here, eval of what it returned."""
    res = _check(data, tmp_path, "--modes", "eager", torch_only=True)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "out"
    _returned(out)
    result = json.loads((out / "gpu_check.json").read_text())
    (run,) = result["runs"]
    assert run["config"] == "tiny" and run["mode"] == "eager" and run["steps_measured"] == 3
    for key in ("tokens_per_s", "step_s_median", "dataloader_wait_share", "model_tflops_per_s"):
        assert run[key] > 0, key
    assert 0 < run["dataloader_wait_share"] < 1 and run["mfu"] is None  # no GPU peak on a CPU
    assert "tokens/s" in (out / "gpu_check.txt").read_text()

    # here: rebuild the checkpoint from its shards; its weights are the trained ones, bf16-rounded
    joined = tmp_path / "returned-run"
    res = subprocess.run([sys.executable, "-m", "generalist.agent.ckpt_shards", "join", str(out / "checkpoint"),
                          str(joined)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    trained = checkpoint.load_weights(checkpoint.latest(tmp_path / "work" / "tiny-eager"))
    back = checkpoint.load_weights(checkpoint.resolve(joined))
    assert back.keys() == trained.keys()
    for name, t in trained.items():
        assert back[name].dtype == t.dtype
        torch.testing.assert_close(back[name], t.to(torch.bfloat16).to(t.dtype), rtol=0, atol=0)
    res = cli("eval", str(joined), "--out", str(tmp_path / "eval"), "--tasks", "metaworld-reach", "--episodes", "1",
              "--no-videos", "--workers", "1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "metaworld-reach" in json.loads((tmp_path / "eval" / "scores.json").read_text())["tasks"]


@pytest.mark.slow
def test_dry_run_with_compile(data, tmp_path):
    """The whole dry run, `--compile` included (compiling takes ~1 minute on this CPU)."""
    res = _check(data, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["runs"]
    assert [(r["config"], r["mode"]) for r in runs] == [("tiny", "eager"), ("tiny", "compile")]
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text())["returned_checkpoint"]["from"] == "tiny-compile"
    _returned(tmp_path / "out")


def test_refuses_without_data_or_gpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    res = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--data", str(tmp_path / "none")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "no datasets" in res.stderr and "Traceback" not in res.stderr
    if not torch.cuda.is_available():
        res = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--data", str(tmp_path)],
                             capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 2 and "no CUDA device" in res.stderr and "Traceback" not in res.stderr


def test_flops_formula_counts_the_model():
    for name, cfg in SIZES.items():
        model = GatoModel(cfg)
        assert block_params(cfg) == sum(p.numel() for p in model.blocks.parameters()), name
    tiny = SIZES["tiny"]
    d, n_layer = tiny.n_embd, tiny.n_layer
    # one slot, no action token: the blocks (6N) plus attention over a 24-slot row (12 L d T)
    assert step_flops(tiny, 24, 1, 0) == 6 * block_params(tiny) + 12 * n_layer * d * 24
    assert step_flops(tiny, 24, 0, 1) == 6 * d * tiny.vocab_size  # the head, on action slots only
    assert peak_bf16("NVIDIA H200") == pytest.approx(989.4e12)
    assert peak_bf16("NVIDIA H100 PCIe") == pytest.approx(756e12)
    assert peak_bf16("NVIDIA GeForce GTX 280") is None


def test_shards_respect_the_limit_and_round_trip(tmp_path):
    model = GatoModel(SIZES["tiny"])
    ck = tmp_path / "run" / "checkpoints" / "step_00000007"
    ck.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, ck / "model.safetensors")
    (ck / "meta.json").write_text(json.dumps({"step": 7}))
    files = ckpt_shards.split(ck, tmp_path / "shards", max_bytes=2**21)
    assert len(files) > 3 and all(f.stat().st_size <= 2**21 + 2**16 for f in files)
    joined = ckpt_shards.join(tmp_path / "shards", tmp_path / "back")
    assert joined.name == "step_00000007" and checkpoint.problem(joined) is None
    assert checkpoint.resolve(tmp_path / "back") == joined
    assert json.loads((joined / "meta.json").read_text()) == {"step": 7}
    with pytest.raises(checkpoint.CheckpointError):
        ckpt_shards.join(tmp_path / "shards", tmp_path / "back")  # never overwrites
    files[-1].unlink()
    with pytest.raises(checkpoint.CheckpointError, match="shards"):
        ckpt_shards.join(tmp_path / "shards", tmp_path / "other")
