"""Atomic checkpoints: weights (safetensors), optimizer/scheduler/RNG state, config, data spec.

Each checkpoint holds a manifest of its files' sizes and SHA-256 sums, written before the
directory is renamed into place. Loading verifies it; a damaged newest checkpoint (a truncated
copy, a full disk) is skipped with a warning for the newest intact one. Only the last K are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from generalist.agent.config import KEEP_LAST
from generalist.errors import GeneralistError
from generalist.fs import atomic_path, require_free_space

LATEST = "latest"
MANIFEST = "manifest.json"


class CheckpointError(GeneralistError):
    """No intact checkpoint where one was asked for."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(ckpt: Path) -> dict[str, dict[str, Any]]:
    return {f.name: {"size": f.stat().st_size, "sha256": _sha256(f)} for f in sorted(ckpt.iterdir())
            if f.is_file() and f.name != MANIFEST}


def write_manifest(ckpt: Path) -> None:
    """Record the size and SHA-256 of every file of a checkpoint directory (what `problem` verifies)."""
    (Path(ckpt) / MANIFEST).write_text(json.dumps(_manifest(Path(ckpt)), indent=1))


def save(run_dir: Path, step: int, model: torch.nn.Module, optimizer, scheduler, meta: dict[str, Any],
         keep_last: int = KEEP_LAST, extra: dict[str, Any] | None = None) -> Path:
    """Write RUN/checkpoints/step_<n>/ under a temporary name, rename it, point `latest` at it, then
    delete all but the newest `keep_last` checkpoints (0 keeps every one). `extra`: more training state
    a resumed run needs (kept in train_state.pt)."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    weights = sum(t.numel() * t.element_size() for t in state.values())
    require_free_space(root, 3 * weights, "a checkpoint (weights and two AdamW moments)")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(state, tmp / "model.safetensors", metadata={"step": str(step)})
    torch.save({
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        "step": step,
        "extra": extra or {},
    }, tmp / "train_state.pt")
    (tmp / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=1))
    write_manifest(tmp)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    with atomic_path(root / LATEST) as pointer:
        pointer.write_text(final.name)
    if keep_last > 0:
        for old in all_checkpoints(run_dir)[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def all_checkpoints(run_dir: Path) -> list[Path]:
    """Every checkpoint directory of a run, intact or not, oldest first."""
    return sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*") if p.is_dir())


def problem(ckpt: Path) -> str | None:
    """What is wrong with a checkpoint directory (a missing, resized or altered file), or None if intact.

    Checkpoints written before manifests existed are only checked for their files."""
    ckpt = Path(ckpt)
    try:
        listed = json.loads((ckpt / MANIFEST).read_text())
    except FileNotFoundError:
        missing = [n for n in ("model.safetensors", "meta.json") if not (ckpt / n).is_file()]
        return f"{', '.join(missing)} missing" if missing else None
    except (OSError, ValueError):
        return f"{MANIFEST} does not read"
    for name, want in listed.items():
        f = ckpt / name
        if not f.is_file():
            return f"{name} missing"
        if f.stat().st_size != want["size"]:
            return f"{name} has {f.stat().st_size} bytes, {want['size']} were written"
        if _sha256(f) != want["sha256"]:
            return f"{name} differs from what was written (checksum)"
    return None


def latest(run_dir: Path, warn: bool = True) -> Path | None:
    """The newest intact checkpoint of a run, or None; damaged newer ones are skipped with a warning."""
    for ck in reversed(all_checkpoints(run_dir)):
        why = problem(ck)
        if why is None:
            return ck
        if warn:
            print(f"generalist: warning: checkpoint {ck} is damaged ({why}); trying an older one",
                  file=sys.stderr, flush=True)
    return None


def step_of(ckpt: Path) -> int:
    """The optimizer step a checkpoint directory was saved at (step_00000700 -> 700)."""
    return int(Path(ckpt).name.split("_")[-1])


def resolve(path: Path) -> Path:
    """A run directory or a checkpoint directory -> the checkpoint directory."""
    path = Path(path)
    if (path / "model.safetensors").exists() or (path / MANIFEST).exists():
        why = problem(path)
        if why is not None:
            raise CheckpointError(f"checkpoint {path} is damaged ({why}); give its run directory to use "
                                  "the newest intact one")
        return path
    ck = latest(path)
    if ck is None:
        if all_checkpoints(path):
            raise CheckpointError(f"every checkpoint in {path}/checkpoints is damaged; retrain (or "
                                  "restore one from a copy)")
        raise CheckpointError(f"no checkpoint at {path} (expected RUN/checkpoints/step_*/model.safetensors)")
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
