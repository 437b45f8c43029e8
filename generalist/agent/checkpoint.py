"""Atomic checkpoints: weights (safetensors), optimizer/scheduler/RNG state, config, data spec."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

LATEST = "latest"


def save(run_dir: Path, step: int, model: torch.nn.Module, optimizer, scheduler, meta: dict[str, Any]) -> Path:
    """Write RUN/checkpoints/step_<n>/ under a temporary name, rename it, then point `latest` at it."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, tmp / "model.safetensors", metadata={"step": str(step)})
    torch.save({
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        "step": step,
    }, tmp / "train_state.pt")
    (tmp / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=1))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = root / (LATEST + ".tmp")
    pointer.write_text(final.name)
    os.replace(pointer, root / LATEST)
    return final


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = Path(run_dir) / "checkpoints"
    ptr = root / LATEST
    if ptr.exists() and (root / ptr.read_text().strip() / "model.safetensors").exists():
        return root / ptr.read_text().strip()
    done = sorted(p for p in root.glob("step_*") if (p / "meta.json").exists())
    return done[-1] if done else None


def step_of(ckpt: Path) -> int:
    """The optimizer step a checkpoint directory was saved at (step_00000700 -> 700)."""
    return int(Path(ckpt).name.split("_")[-1])


def resolve(path: Path) -> Path:
    """A run directory or a checkpoint directory -> the checkpoint directory."""
    path = Path(path)
    if (path / "model.safetensors").exists():
        return path
    ck = latest(path)
    if ck is None:
        raise FileNotFoundError(f"no checkpoint at {path} (expected RUN/checkpoints/step_*/model.safetensors)")
    return ck


def load_meta(ckpt: Path) -> dict[str, Any]:
    return json.loads((Path(ckpt) / "meta.json").read_text())


def load_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_file(Path(ckpt) / "model.safetensors")


def load_train_state(ckpt: Path) -> dict[str, Any]:
    return torch.load(Path(ckpt) / "train_state.pt", weights_only=False)


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
