"""Training windows over many datasets at once, read lazily from HDF5.

A sample is a window of consecutive timesteps of one episode, long enough to fill the context
(the caller says how many context slots one timestep of each task takes). With probability
`prompt_prob` (Gato: 0.25) the window is preceded by a prompt: the last timesteps of another
episode of the same task. Only the slices a window needs are read; file handles are opened
lazily per process, so the sampler works inside DataLoader workers and its memory does not grow
with dataset size (only the per-episode lengths are indexed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from generalist.datasets.layout import MAIN_FILE, data_dir, deserialize_space, find_datasets, read_metadata


class DatasetError(ValueError):
    """A data path or dataset that cannot be trained on; the message says why."""


@dataclass
class TaskData:
    """One task's dataset: its spaces and episode index (lengths only)."""

    task: str
    path: Path
    observation_space: object
    action_space: object
    lengths: np.ndarray          # steps per episode, indexed by episode id
    train_ids: np.ndarray
    val_ids: np.ndarray


def open_tasks(roots: list[Path], val_fraction: float = 0.1, seed: int = 0) -> dict[str, TaskData]:
    """Index every dataset under `roots`; a held-out split by episode (at least one if >= 2 episodes)."""
    found: list[Path] = []
    for r in roots:
        if not Path(r).exists():
            raise DatasetError(f"data path {r} does not exist")
        hits = find_datasets(Path(r))
        if not hits:
            raise DatasetError(f"no dataset under {r} (expected <task>/<name>/data/metadata.json, "
                               "as written by `generalist collect`)")
        found += hits
    tasks: dict[str, TaskData] = {}
    for p in found:
        meta = read_metadata(p)
        task = meta.get("generalist", {}).get("task") or meta["dataset_id"].split("/")[0]
        if task in tasks:
            raise DatasetError(f"two datasets for task {task!r}: {tasks[task].path} and {p}; pass one")
        with h5py.File(data_dir(p) / MAIN_FILE, "r") as f:
            lengths = np.array([int(f[f"episode_{i}"].attrs["total_steps"]) for i in range(len(f))])
        if len(lengths) == 0 or lengths.sum() == 0:
            raise DatasetError(f"dataset {p} holds no episodes")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(lengths))
        n_val = int(round(val_fraction * len(lengths))) if len(lengths) >= 2 else 0
        if val_fraction > 0 and len(lengths) >= 2:
            n_val = max(1, n_val)
        try:
            spaces = deserialize_space(meta["observation_space"]), deserialize_space(meta["action_space"])
        except (KeyError, ValueError, TypeError) as e:
            raise DatasetError(f"dataset {p}: metadata.json spaces cannot be read ({e})") from None
        tasks[task] = TaskData(task, p, *spaces, lengths, np.sort(order[n_val:]), np.sort(order[:n_val]))
    return tasks


def train_arrays(td: TaskData, key: str, stride: int = 1):
    """Yield `key` ("actions" or an observation such as "state") of each training episode, every
    `stride`-th step (statistics a trainer needs, e.g. normalization and action frequencies)."""
    with h5py.File(data_dir(td.path) / MAIN_FILE, "r") as f:
        for ep in td.train_ids:
            g = f[f"episode_{ep}"]
            yield (g[key] if key == "actions" else g["observations"][key])[: td.lengths[ep]: stride]


def demonstration(td: TaskData, steps: int, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The last `steps` timesteps of a held-out episode (the `index`-th, cyclically; a training episode
    when none is held out): a demonstration prompt, as Gato puts ahead of its context."""
    ids = td.val_ids if len(td.val_ids) else td.train_ids
    ep = int(ids[index % len(ids)])
    end = int(td.lengths[ep])
    start = max(0, end - steps)
    with h5py.File(data_dir(td.path) / MAIN_FILE, "r") as f:
        g = f[f"episode_{ep}"]
        return {k: g["observations"][k][start:end] for k in g["observations"]}, g["actions"][start:end]


class WindowSampler:
    """Draws (task, observations, actions) windows; task-balanced unless weights are given
    (a task missing from `weights` keeps weight 1)."""

    def __init__(self, tasks: dict[str, TaskData], steps_per_window: dict[str, int],
                 weights: dict[str, float] | None = None, prompt_prob: float = 0.25,
                 split: str = "train", seed: int = 0):
        self.tasks = tasks
        self.names = sorted(tasks)
        self.steps = steps_per_window
        w = np.array([(weights or {}).get(t, 1.0) for t in self.names], dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError("task weights must be non-negative and not all zero")
        self.p = w / w.sum()
        self.prompt_prob = prompt_prob
        self.split = split
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._files: dict[str, h5py.File] = {}
        # State-only episodes are small (a 1000-step Meta-World episode is ~160 kB): each is read whole
        # on first use and kept, which made window reads ~10x faster than per-window HDF5 slicing.
        self._episodes: dict[tuple[str, int], tuple[dict[str, np.ndarray], np.ndarray]] = {}

    def _file(self, task: str) -> h5py.File:
        f = self._files.get(task)
        if f is None:  # opened lazily: h5py handles cannot cross process boundaries
            f = self._files[task] = h5py.File(data_dir(self.tasks[task].path) / MAIN_FILE, "r")
        return f

    def _ids(self, task: str) -> np.ndarray:
        td = self.tasks[task]
        ids = td.train_ids if self.split == "train" else td.val_ids
        if len(ids) == 0:
            raise DatasetError(f"task {task!r} has no {self.split} episodes")
        return ids

    def _read(self, task: str, ep: int, start: int, stop: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if "image" not in self.tasks[task].observation_space.spaces:
            whole = self._episodes.get((task, ep))
            if whole is None:
                g = self._file(task)[f"episode_{ep}"]
                whole = self._episodes[(task, ep)] = ({k: g["observations"][k][()] for k in g["observations"]},
                                                      g["actions"][()])
            return {k: v[start:stop] for k, v in whole[0].items()}, whole[1][start:stop]
        g = self._file(task)[f"episode_{ep}"]  # images: read only the window's frames
        obs = {k: g["observations"][k][start:stop] for k in g["observations"]}
        return obs, g["actions"][start:stop]

    def sample(self) -> dict:
        """A window from the sampler's own random stream."""
        return self._sample(self.rng)

    def sample_at(self, index: int) -> dict:
        """The window number `index` of this sampler's seed: the same on any rank, worker or resume."""
        return self._sample(np.random.default_rng([self.seed, index]))

    def _sample(self, rng: np.random.Generator) -> dict:
        """One window: {'task', 'observations': {k: (T, ...)}, 'actions': (T, ...), 'prompt_steps'}."""
        task = self.names[rng.choice(len(self.names), p=self.p)]
        ids = self._ids(task)
        lengths = self.tasks[task].lengths
        ep = int(rng.choice(ids))
        want = self.steps[task]
        n_prompt = 0
        if self.prompt_prob > 0 and len(ids) > 1 and rng.random() < self.prompt_prob:
            n_prompt = int(rng.integers(1, max(2, want // 4) + 1))  # up to a quarter of the window
        n_main = want - n_prompt
        length = int(lengths[ep])
        start = int(rng.integers(0, max(1, length - n_main + 1)))
        obs, act = self._read(task, ep, start, min(length, start + n_main))
        if n_prompt:
            other = int(rng.choice(ids[ids != ep]))
            olen = int(lengths[other])
            n_prompt = min(n_prompt, olen)
            # Gato's prompts: the end of a demonstration episode (where the goal is reached)
            pobs, pact = self._read(task, other, olen - n_prompt, olen)
            obs = {k: np.concatenate([pobs[k], obs[k]]) for k in obs}
            act = np.concatenate([pact, act])
        return {"task": task, "observations": obs, "actions": act, "prompt_steps": n_prompt}

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._episodes.clear()

    def __getstate__(self):  # picklable for DataLoader workers: drop open handles and cached episodes
        state = self.__dict__.copy()
        state["_files"] = {}
        state["_episodes"] = {}
        return state
