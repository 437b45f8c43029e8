"""Minari 0.5's on-disk layout, so that `minari.load_dataset` reads what we write.

    ROOT/<task>/<name>-v<N>/data/main_data.hdf5   episode_<i>/ groups
    ROOT/<task>/<name>-v<N>/data/metadata.json    dataset_id, counts, serialized spaces, env_spec

Space serialization matches `minari.serialization.serialize_space` (we don't import Minari: it is
an optional dependency).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

MAIN_FILE = "main_data.hdf5"
METADATA_FILE = "metadata.json"
PARTS_DIR = "parts"          # crash-safe episode files of a run in progress (see writer.py)
MINARI_VERSION = "0.5.4"     # the Minari release whose layout this matches
DEFAULT_NAME = "expert-v0"


def dataset_dir(root: Path, task: str, name: str = DEFAULT_NAME) -> Path:
    return Path(root) / task / name


def data_dir(ds_dir: Path) -> Path:
    return Path(ds_dir) / "data"


def serialize_space(space: gym.Space) -> dict[str, Any]:
    """Minari's JSON form of a Box / Discrete / Dict space."""
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "subspaces": {k: serialize_space(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "dtype": "int64", "start": int(space.start), "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "dtype": str(space.dtype), "shape": list(space.shape),
                "low": _jsonable(space.low), "high": _jsonable(space.high)}
    raise TypeError(f"cannot serialize {space!r}")


def _jsonable(a: np.ndarray) -> Any:
    # Minari writes Box bounds with json.dumps, which emits Infinity for inf; json.loads reads it back.
    return a.tolist()


def deserialize_space(d: dict[str, Any] | str) -> gym.Space:
    """Inverse of serialize_space (accepts the JSON string Minari stores, too)."""
    if isinstance(d, str):
        d = json.loads(d)
    if d["type"] == "Dict":
        return gym.spaces.Dict({k: deserialize_space(v) for k, v in d["subspaces"].items()})
    if d["type"] == "Discrete":
        return gym.spaces.Discrete(d["n"], start=d.get("start", 0))
    if d["type"] == "Box":
        return gym.spaces.Box(np.array(d["low"], dtype=d["dtype"]), np.array(d["high"], dtype=d["dtype"]),
                              tuple(d["shape"]), d["dtype"])
    raise ValueError(f"unsupported space type {d['type']!r}")


def read_metadata(ds_dir: Path) -> dict[str, Any]:
    with open(data_dir(ds_dir) / METADATA_FILE) as f:
        return json.load(f)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary name, fsync, then rename over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def find_datasets(path: Path) -> list[Path]:
    """Dataset directories at or under `path` (a dataset dir, its data dir, its main file, or a root)."""
    path = Path(path)
    if path.is_file() and path.name in (MAIN_FILE, METADATA_FILE):
        path = path.parent
    if path.name == "data" and (path / METADATA_FILE).exists():
        return [path.parent]
    if (path / "data" / METADATA_FILE).exists():
        return [path]
    return sorted(p.parent.parent for p in path.glob("**/data/" + METADATA_FILE))
