"""Crash-safe writing of episodes in Minari's HDF5 layout.

Why not append to one HDF5 file? A process killed mid-write (SIGKILL, OOM, a pre-empted node) can
leave an HDF5 file that no longer opens, losing every episode in it. Instead, during a run:

1. each finished episode is written to its own file, `data/parts/<tmp>`, then renamed to
   `data/parts/episode_<id>.hdf5` (rename is atomic);
2. `data/main_data.hdf5` is a small index whose `episode_<i>` entries are HDF5 external links into
   those files; it is rewritten under a temporary name and renamed over the old one after each
   episode, then `metadata.json` likewise. Readers (h5py, Minari) follow external links
   transparently, so at any moment the dataset opens and holds every committed episode.
3. when the run completes, the episodes are copied (compressed chunks as they are) into one
   self-contained `main_data.hdf5`, renamed into place, and the parts are removed.

Resuming a completed dataset hard-links its single file into `parts/` first, so no step ever leaves
the dataset without a valid `main_data.hdf5`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from generalist.datasets.layout import (
    DEFAULT_NAME,
    MAIN_FILE,
    METADATA_FILE,
    MINARI_VERSION,
    PARTS_DIR,
    DatasetError,
    data_dir,
    has_episode_data,
    read_metadata,
    serialize_space,
    write_json_atomic,
)
from generalist.errors import GeneralistError
from generalist.fs import atomic_path, require_free_space

IMAGE_CHUNK_FRAMES = 16   # frames per chunk: windows of consecutive steps read few chunks
IMAGE_CODEC = ("gzip", 1)  # measured on real frames: see README "Storage"; readable by any HDF5 tool


class DatasetExistsError(GeneralistError):
    """A dataset is already at the destination and resuming was not asked for."""


class DatasetMismatchError(GeneralistError):
    """--resume against a dataset made for another task, seed or spaces."""


def exists_message(ds_dir: Path) -> str:
    """Why collection without --resume refuses `ds_dir` (a dataset, or the remains of one, is there)."""
    if not (data_dir(ds_dir) / METADATA_FILE).exists():
        return (f"{data_dir(ds_dir)} holds episode data but no metadata.json (a damaged dataset); it is "
                "never overwritten: restore metadata.json, move it away, or choose another --out")
    return (f"a dataset already exists at {ds_dir}; pass --resume to complete it, "
            "or choose another --out (existing data is never overwritten)")


@dataclass
class Episode:
    """One finished episode's arrays: observations have N+1 entries, the rest N."""

    observations: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(len(self.rewards))


def _create(group: h5py.Group, name: str, data: np.ndarray) -> None:
    if data.dtype == np.uint8 and data.ndim == 4:  # image stack (N+1, H, W, C)
        chunks = (min(IMAGE_CHUNK_FRAMES, len(data)),) + data.shape[1:]
        group.create_dataset(name, data=data, chunks=chunks, compression=IMAGE_CODEC[0],
                             compression_opts=IMAGE_CODEC[1])
    else:
        group.create_dataset(name, data=data, maxshape=(None,) + data.shape[1:],
                             chunks=(min(4096, max(1, len(data))),) + data.shape[1:])


def write_episode_file(path: Path, ep: Episode) -> None:
    """Write one episode as group `/episode` of a new HDF5 file (fsynced before returning).

    Free space is checked first against the uncompressed size: HDF5 crashes the process (SIGSEGV)
    when the disk fills mid-write."""
    arrays = [*ep.observations.values(), ep.actions, ep.rewards, ep.terminations, ep.truncations,
              *ep.infos.values()]
    require_free_space(path.parent, sum(a.nbytes for a in arrays), "an episode")
    with h5py.File(path, "w") as f:
        g = f.create_group("episode")
        obs = g.create_group("observations")
        for k, v in ep.observations.items():
            _create(obs, k, v)
        _create(g, "actions", ep.actions)
        _create(g, "rewards", ep.rewards)
        _create(g, "terminations", ep.terminations)
        _create(g, "truncations", ep.truncations)
        if ep.infos:
            infos = g.create_group("infos")
            for k, v in ep.infos.items():
                _create(infos, k, v)
        g.attrs["total_steps"] = ep.steps
        for k, v in ep.attrs.items():
            g.attrs[k] = v
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


class DatasetWriter:
    """Owns one dataset directory during a collection run (single writer: the parent process)."""

    def __init__(self, ds_dir: Path, task: str, observation_space: gym.Space, action_space: gym.Space,
                 seed: int, expert: str, env_spec_json: str | None = None, resume: bool = False,
                 action_noise: float = 0.0):
        self.ds_dir = Path(ds_dir)
        self.data = data_dir(self.ds_dir)
        self.parts = self.data / PARTS_DIR
        self.main = self.data / MAIN_FILE
        self.task, self.seed, self.expert = task, seed, expert
        self.entries: list[tuple[str, str]] = []  # (file relative to data/, object path)
        self.seeds: list[int] = []
        self.steps: list[int] = []
        meta = {
            "dataset_id": f"{task}/{self.ds_dir.name}",
            "total_episodes": 0,
            "total_steps": 0,
            "data_format": "hdf5",
            "jpeg_encoding": False,
            # Minari stores each space as a JSON string inside the JSON file
            "observation_space": json.dumps(serialize_space(observation_space)),
            "action_space": json.dumps(serialize_space(action_space)),
            "minari_version": MINARI_VERSION,
            "algorithm_name": expert,
            "generalist": {"task": task, "expert": expert, "seed": seed},
        }
        if action_noise:  # absent means 0: noise-free datasets stay as they always were
            meta["generalist"]["action_noise"] = float(action_noise)
        if env_spec_json is not None:
            meta["env_spec"] = env_spec_json
        exists = has_episode_data(self.ds_dir)  # whole, or damaged (e.g. metadata.json lost)
        if exists and not resume:
            raise DatasetExistsError(exists_message(self.ds_dir))
        if exists:
            try:
                self._open_existing(meta)
            except (OSError, KeyError) as e:  # a truncated file or an index linking nowhere
                raise DatasetError(f"cannot resume {self.ds_dir}: its episodes do not read back "
                                   f"({str(e).splitlines()[0]}); `generalist datasets check {self.ds_dir}` "
                                   "says what is broken") from None
        else:
            self.parts.mkdir(parents=True, exist_ok=True)
            self._meta = meta
            self._consolidated = False
            self._write_index()

    # ------------------------------------------------------------------ reopen
    def _open_existing(self, meta: dict[str, Any]) -> None:
        old = read_metadata(self.ds_dir)
        ours = old.get("generalist", {})
        for key in ("task", "seed"):
            if ours.get(key) != meta["generalist"][key]:
                raise DatasetMismatchError(
                    f"{self.ds_dir} was collected with {key}={ours.get(key)!r}, not "
                    f"{meta['generalist'][key]!r}; resume with the same --seed, or use another --out"
                )
        old_noise, noise = ours.get("action_noise", 0.0), meta["generalist"].get("action_noise", 0.0)
        if old_noise != noise:
            raise DatasetMismatchError(
                f"{self.ds_dir} was collected with --action-noise {old_noise:g}, not {noise:g}; "
                "resume with the same --action-noise, or use another --out")
        for key in ("observation_space", "action_space"):
            if old.get(key) != meta[key]:
                raise DatasetMismatchError(f"{self.ds_dir}: stored {key} differs from the task's; "
                                           "it was made by another version of the env")
        self._meta = dict(old)
        # Episodes whose writing was interrupted, and an index or metadata rewrite cut short
        # (this run holds the dataset's lock, so no other writer owns these).
        for tmp in [*self.parts.glob("*.tmp"), *self.data.glob("*.tmp")]:
            tmp.unlink()
        with h5py.File(self.main, "r") as f:
            names = sorted(f.keys(), key=lambda n: int(n.split("_")[1]))
            consolidated = any(isinstance(f.get(n, getlink=True), h5py.HardLink) for n in names)
        self._consolidated = consolidated
        if consolidated:
            self.entries = [(MAIN_FILE, f"/{n}") for n in names]
        else:
            with h5py.File(self.main, "r") as f:
                for n in names:
                    link = f.get(n, getlink=True)
                    self.entries.append((link.filename, link.path))
        if consolidated:  # parts left by a crash between packing and cleaning up are copies
            shutil.rmtree(self.parts, ignore_errors=True)
        linked = {e[0] for e in self.entries}
        # Episodes renamed into place whose index update was cut short by a crash.
        for p in sorted(self.parts.glob("episode_*.hdf5")):
            rel = f"{PARTS_DIR}/{p.name}"
            if rel not in linked:
                self.entries.append((rel, "/episode"))
        for rel, obj in self.entries:
            with h5py.File(self.data / rel, "r") as f:
                self.seeds.append(int(f[obj].attrs["seed"]))
                self.steps.append(int(f[obj].attrs["total_steps"]))
        if len(self.entries) != len(names):
            self._unpack()
            self._write_index()

    # ------------------------------------------------------------------ writing
    def new_part_path(self) -> Path:
        """A temporary file name for a worker to write one episode into."""
        self.parts.mkdir(parents=True, exist_ok=True)
        return self.parts / f"{uuid.uuid4().hex}.tmp"

    def _unpack(self) -> None:
        """Before adding to a packed dataset: hard-link its file into parts/ and index it by links."""
        if not self._consolidated:
            return
        base = f"base_{uuid.uuid4().hex[:8]}.hdf5"
        self.parts.mkdir(parents=True, exist_ok=True)
        os.link(self.main, self.parts / base)
        self.entries = [(f"{PARTS_DIR}/{base}", obj) if rel == MAIN_FILE else (rel, obj)
                        for rel, obj in self.entries]
        self._consolidated = False

    def commit(self, tmp: Path) -> int:
        """Make a fully written episode file part of the dataset; returns its episode id."""
        self._unpack()
        ep_id = len(self.entries)
        with h5py.File(tmp, "r+") as f:
            f["episode"].attrs["id"] = ep_id
            seed, steps = int(f["episode"].attrs["seed"]), int(f["episode"].attrs["total_steps"])
        final = self.parts / f"episode_{ep_id:06d}.hdf5"
        if final.exists():  # an orphan from a crashed run would be linked at reopen; never clobber
            final = self.parts / f"episode_{ep_id:06d}_{uuid.uuid4().hex[:6]}.hdf5"
        os.replace(tmp, final)
        self.entries.append((f"{PARTS_DIR}/{final.name}", "/episode"))
        self.seeds.append(seed)
        self.steps.append(steps)
        self._write_index()
        return ep_id

    def _write_index(self) -> None:
        with atomic_path(self.main) as tmp, h5py.File(tmp, "w", track_order=True) as f:
            for i, (rel, obj) in enumerate(self.entries):
                f[f"episode_{i}"] = h5py.ExternalLink(rel, obj)
        self._meta.update(total_episodes=len(self.entries), total_steps=int(sum(self.steps)))
        write_json_atomic(self.data / METADATA_FILE, self._meta)

    def finalize(self) -> None:
        """Copy every episode into one self-contained main_data.hdf5 and drop the parts."""
        if self._consolidated:
            return
        require_free_space(self.data, sum((self.data / rel).stat().st_size for rel, _ in self.entries),
                           "packing the dataset into one file")
        with atomic_path(self.main) as tmp:
            with h5py.File(tmp, "w", track_order=True) as dst:
                for i, (rel, obj) in enumerate(self.entries):
                    with h5py.File(self.data / rel, "r") as src:
                        src.copy(src[obj], dst, name=f"episode_{i}")
                        dst[f"episode_{i}"].attrs["id"] = i
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        self.entries = [(MAIN_FILE, f"/episode_{i}") for i in range(len(self.entries))]
        self._consolidated = True
        shutil.rmtree(self.parts, ignore_errors=True)
        self._meta.update(dataset_size=round(self.main.stat().st_size / 2**20, 3))
        write_json_atomic(self.data / METADATA_FILE, self._meta)


__all__ = ["DEFAULT_NAME", "DatasetExistsError", "DatasetMismatchError", "DatasetWriter", "Episode",
           "write_episode_file"]
