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
import h5py
import numpy as np

from generalist.errors import GeneralistError
from generalist.fs import atomic_path

MAIN_FILE = "main_data.hdf5"
METADATA_FILE = "metadata.json"
PARTS_DIR = "parts"          # crash-safe episode files of a run in progress (see writer.py)
MINARI_VERSION = "0.5.4"     # the Minari release whose layout this matches
DEFAULT_NAME = "expert-v0"


class DatasetError(GeneralistError, ValueError):
    """A data path or dataset that cannot be read or trained on; the message says why."""


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
    """metadata.json as a dict, or DatasetError naming the file when it is missing or not JSON."""
    path = data_dir(ds_dir) / METADATA_FILE
    try:
        with open(path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: the dataset is damaged (its episodes are in "
                           f"{data_dir(ds_dir)}); restore the file or move the dataset away") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path} is not valid JSON ({e}); restore it or move the dataset away") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path} holds a JSON {type(meta).__name__}, not an object; restore it "
                           "or move the dataset away")
    return meta


def has_episode_data(ds_dir: Path) -> bool:
    """Whether a dataset (whole or damaged) is at `ds_dir`: metadata.json, main_data.hdf5 or parts/."""
    d = data_dir(ds_dir)
    return any((d / n).exists() or (d / n).is_symlink() for n in (METADATA_FILE, MAIN_FILE, PARTS_DIR))


def open_main(ds_dir: Path) -> h5py.File:
    """main_data.hdf5 opened for reading, or DatasetError naming the file when it is missing or damaged."""
    path = data_dir(ds_dir) / MAIN_FILE
    if not path.exists():
        raise DatasetError(f"{path} is missing: the dataset is damaged; move it away and collect again")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path} cannot be read ({_first_line(e)}): truncated or damaged; "
                           "move it away and collect again") from None


def episode_group(f: h5py.File, i: int, ds_dir: Path) -> h5py.Group:
    """Group episode_<i> of an open main file, or DatasetError when it (or the file it links to) is broken."""
    try:
        return f[f"episode_{i}"]
    except (KeyError, OSError) as e:
        raise DatasetError(f"{data_dir(ds_dir) / MAIN_FILE}: episode_{i} cannot be read ({_first_line(e)}); "
                           "`generalist datasets check` lists what is broken") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary name, fsync, then rename over `path`."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def find_datasets(path: Path) -> list[Path]:
    """Dataset directories at or under `path` (a dataset dir, its data dir, its main file, or a root).

    A dataset is any `data/` holding metadata.json, main_data.hdf5 or parts/: one that lost its
    metadata is found too, so that readers report it instead of skipping it."""
    path = Path(path)
    if path.is_file() and path.name in (MAIN_FILE, METADATA_FILE):
        path = path.parent
    if path.name == "data" and has_episode_data(path.parent):
        return [path.parent]
    if has_episode_data(path):
        return [path]
    found = {p.parent.parent for n in (METADATA_FILE, MAIN_FILE, PARTS_DIR) for p in path.glob(f"**/data/{n}")}
    return sorted(found)
