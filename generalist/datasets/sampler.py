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

from generalist.datasets.layout import (
    METADATA_FILE,
    DatasetError,
    data_dir,
    deserialize_space,
    episode_group,
    find_datasets,
    open_main,
    read_metadata,
)

__all__ = ["DatasetError", "TaskData", "WindowSampler", "open_tasks", "train_arrays"]


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
        ours = meta.get("generalist")
        task = (ours.get("task") if isinstance(ours, dict) else None) or str(meta.get("dataset_id", "")).split("/")[0]
        if not task:
            raise DatasetError(f"{data_dir(p) / METADATA_FILE} names no task (generalist.task or dataset_id); "
                               "restore it or move the dataset away")
        if task in tasks:
            raise DatasetError(f"two datasets for task {task!r}: {tasks[task].path} and {p}; pass one")
        with open_main(p) as f:
            lengths = np.array([_total_steps(episode_group(f, i, p), p, i) for i in range(len(f))], dtype=np.int64)
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
    with open_main(td.path) as f:
        for ep in td.train_ids:
            g = episode_group(f, int(ep), td.path)
            field = key if key == "actions" else f"observations/{key}"
            yield checked(td, int(ep), field, _field(g, field, td, int(ep))[: td.lengths[ep]: stride])


def _total_steps(g: h5py.Group, path: Path, i: int) -> int:
    try:
        n = int(g.attrs["total_steps"])
    except (KeyError, ValueError, TypeError):
        raise DatasetError(f"dataset {path}: episode_{i} has no valid total_steps attribute") from None
    if n < 0:
        raise DatasetError(f"dataset {path}: episode_{i} has total_steps={n}")
    return n


def _field(g: h5py.Group, field: str, td: TaskData, ep: int) -> h5py.Dataset:
    try:
        return g[field]
    except (KeyError, OSError):
        raise DatasetError(f"task {td.task}, episode {ep}: {field} is missing ({td.path})") from None


def checked(td: TaskData, ep: int, field: str, a: np.ndarray, length: int | None = None) -> np.ndarray:
    """`a` unchanged, or DatasetError naming task, episode and field when it holds NaN/inf or has
    fewer than `length` rows (what a window asked for against the episode's total_steps)."""
    if length is not None and len(a) != length:
        raise DatasetError(f"task {td.task}, episode {ep}: {field} has {len(a)} rows where total_steps="
                           f"{td.lengths[ep]} needs {length} ({td.path}); the dataset is damaged")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise DatasetError(f"task {td.task}, episode {ep}: {field} holds NaN or inf ({td.path}); "
                           "the dataset is damaged")
    return a


def demonstration(td: TaskData, steps: int, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The last `steps` timesteps of a held-out episode (the `index`-th, cyclically; a training episode
    when none is held out): a demonstration prompt, as Gato puts ahead of its context."""
    ids = td.val_ids if len(td.val_ids) else td.train_ids
    ep = int(ids[index % len(ids)])
    end = int(td.lengths[ep])
    start = max(0, end - steps)
    with open_main(td.path) as f:
        return read_rows(td, episode_group(f, ep, td.path), ep, start, end)


def read_rows(td: TaskData, g: h5py.Group, ep: int, start: int, stop: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Observations and actions of steps start..stop-1 of episode group `g`, checked (lengths, NaN/inf)."""
    obs = {k: checked(td, ep, f"observations/{k}", _field(g, f"observations/{k}", td, ep)[start:stop], stop - start)
           for k in td.observation_space.spaces}
    return obs, checked(td, ep, "actions", _field(g, "actions", td, ep)[start:stop], stop - start)


class WindowSampler:
    """Draws (task, observations, actions) windows; task-balanced unless weights are given
    (a task missing from `weights` keeps weight 1)."""

    def __init__(self, tasks: dict[str, TaskData], steps_per_window: dict[str, int],
                 weights: dict[str, float] | None = None, prompt_prob: float = 0.25,
                 split: str = "train", seed: int = 0, past_images: dict[str, int] | None = None):
        self.tasks = tasks
        # per task: how many images before a window's first step it carries (a frame stack's history)
        self.past_images = past_images or {}
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
            f = self._files[task] = open_main(self.tasks[task].path)
        return f

    def _ids(self, task: str) -> np.ndarray:
        td = self.tasks[task]
        ids = td.train_ids if self.split == "train" else td.val_ids
        if len(ids) == 0:
            raise DatasetError(f"task {task!r} has no {self.split} episodes")
        return ids

    def _read(self, task: str, ep: int, start: int, stop: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Observations and actions of steps start..stop-1, checked (lengths, NaN/inf) as they are read."""
        td = self.tasks[task]
        keys = list(td.observation_space.spaces)
        if "image" not in keys:  # whole episode, checked once against total_steps (N+1 observations)
            whole = self._episodes.get((task, ep))
            if whole is None:
                g = episode_group(self._file(task), ep, td.path)
                n = int(td.lengths[ep])
                obs = {k: checked(td, ep, f"observations/{k}", _field(g, f"observations/{k}", td, ep)[()], n + 1)
                       for k in keys}
                whole = self._episodes[(task, ep)] = (obs, checked(td, ep, "actions", _field(g, "actions", td, ep)[()], n))
            return {k: v[start:stop] for k, v in whole[0].items()}, whole[1][start:stop]
        return read_rows(td, episode_group(self._file(task), ep, td.path), ep, start, stop)  # images: the window's frames

    def sample(self) -> dict:
        """A window from the sampler's own random stream."""
        return self._sample(self.rng)

    def sample_at(self, index: int) -> dict:
        """The window number `index` of this sampler's seed: the same on any rank, worker or resume."""
        return self._sample(np.random.default_rng([self.seed, index]))

    def _sample(self, rng: np.random.Generator) -> dict:
        """One window: {'task', 'observations': {k: (T, ...)}, 'actions': (T, ...), 'prompt_steps',
        'past_images', 'episode', 'start'}: past_images are the images just before the (non-prompt) window
        in its episode (None at the episode's start or without a frame stack)."""
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
        lead = min(self.past_images.get(task, 0), start)
        obs, act = self._read(task, ep, start - lead, min(length, start + n_main))
        past = None
        if lead:
            past, obs, act = obs["image"][:lead], {k: v[lead:] for k, v in obs.items()}, act[lead:]
        if n_prompt:
            other = int(rng.choice(ids[ids != ep]))
            olen = int(lengths[other])
            n_prompt = min(n_prompt, olen)
            # Gato's prompts: the end of a demonstration episode (where the goal is reached)
            pobs, pact = self._read(task, other, olen - n_prompt, olen)
            obs = {k: np.concatenate([pobs[k], obs[k]]) for k in obs}
            act = np.concatenate([pact, act])
        return {"task": task, "observations": obs, "actions": act, "prompt_steps": n_prompt, "past_images": past,
                "episode": ep, "start": start}

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
