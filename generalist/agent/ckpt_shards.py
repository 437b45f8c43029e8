"""A checkpoint's weights as bf16 shards of bounded size, and back: for copying through size limits.

A GPU machine that returns at most a few files of at most 16 MiB each (scripts/gpu_check.sh) sends
`split`'s output; `join` rebuilds from it a checkpoint that `generalist eval` loads (weights back in
their original dtype, bf16-rounded; no optimizer state, so it cannot be resumed).

    python -m generalist.agent.ckpt_shards join RETURNED_DIR RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from generalist.agent import checkpoint
from generalist.agent.checkpoint import CheckpointError
from generalist.errors import GeneralistError

SHARD_BYTES = 15 * 2**20  # under a 16 MiB limit with room for each file's header
PATTERN = "model-*-of-*.safetensors"


def split(ckpt: Path, out: Path, max_bytes: int = SHARD_BYTES, dtype: torch.dtype = torch.bfloat16) -> list[Path]:
    """Write ckpt's weights, floats cast to `dtype`, as shards of at most `max_bytes` of tensor data;
    return the files written. Nothing else is written: the first shard's metadata carries the
    checkpoint's meta.json, its step and every tensor's original dtype (fewer files to send back)."""
    ckpt, out = Path(ckpt), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = checkpoint.load_weights(ckpt)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in weights.items():
        t = t.to(dtype) if t.is_floating_point() else t
        nbytes = t.numel() * t.element_size()
        if nbytes > max_bytes:
            raise ValueError(f"tensor {name} alone is {nbytes} bytes, over the shard limit {max_bytes}")
        if size + nbytes > max_bytes and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][name] = t.contiguous()
        size += nbytes
    head = {"step": str(checkpoint.step_of(ckpt)), "meta": (ckpt / "meta.json").read_text(),
            "dtypes": json.dumps({n: str(t.dtype).removeprefix("torch.") for n, t in weights.items()})}
    files = []
    for i, shard in enumerate(shards):
        f = out / f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, f, metadata=head if i == 0 else {"step": head["step"]})
        files.append(f)
    return files


def join(shards_dir: Path, run_dir: Path) -> Path:
    """Rebuild RUN/checkpoints/step_<n>/ (float weights, meta.json, manifest) from `split`'s output."""
    files = sorted(Path(shards_dir).glob(PATTERN))
    expected = int(files[0].name.split("-of-")[1].split(".")[0]) if files else 0
    if not files or len(files) != expected:
        raise CheckpointError(f"{shards_dir} holds {len(files)} of {expected or 'the'} shards ({PATTERN}) "
                              "of a split checkpoint")
    with safe_open(files[0], "pt") as f:
        head = f.metadata() or {}
    if "meta" not in head:
        raise CheckpointError(f"{files[0]} is not the first shard of a split checkpoint (no meta)")
    weights: dict[str, torch.Tensor] = {}
    for f in files:
        weights.update(load_file(f))
    dtypes = json.loads(head["dtypes"])
    weights = {n: t.to(getattr(torch, dtypes[n])) for n, t in weights.items()}
    ckpt = Path(run_dir) / "checkpoints" / f"step_{int(head['step']):08d}"
    if ckpt.exists():
        raise CheckpointError(f"{ckpt} exists; join into a new run directory")
    ckpt.mkdir(parents=True)
    save_file(weights, ckpt / "model.safetensors", metadata={"step": head["step"]})
    (ckpt / "meta.json").write_text(head["meta"])
    checkpoint.write_manifest(ckpt)
    (ckpt.parent / checkpoint.LATEST).write_text(ckpt.name)
    return ckpt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generalist.agent.ckpt_shards", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("join", help="rebuild a loadable checkpoint in RUN_DIR from split shards")
    j.add_argument("shards_dir")
    j.add_argument("run_dir")
    args = ap.parse_args(argv)
    try:
        print(join(Path(args.shards_dir), Path(args.run_dir)))
    except GeneralistError as e:
        print(f"ckpt_shards: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
