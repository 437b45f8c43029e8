"""From sampled windows to padded token tensors the model trains on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from generalist.agent.encoder import Inputs, TimestepEncoder
from generalist.agent.tokenizer import TimestepLayout
from generalist.datasets.sampler import TaskData, WindowSampler
from generalist.errors import ConfigError


def layout_for(td: TaskData, patch: int = 16, encoding: str = "tokens", frame_stack: int = 1) -> TimestepLayout:
    obs = {k: tuple(s.shape) for k, s in td.observation_space.spaces.items()}
    space = td.action_space
    discrete = int(space.n) if hasattr(space, "n") else None
    return TimestepLayout.for_spaces(obs, tuple(space.shape or ()), discrete, patch, encoding, frame_stack)


def steps_per_window(layouts: dict[str, TimestepLayout], context: int, max_timesteps: int | None = None,
                     task_timesteps: dict[str, int] | None = None) -> dict[str, int]:
    """Timesteps a training window of each task holds: as many as fill `context` slots, at most
    `task_timesteps[task]` or else `max_timesteps` (the run's memory; the acting policy keeps the same)."""
    out = {}
    for name, lay in layouts.items():
        n = context // lay.length
        if n < 1:
            raise ConfigError(f"context {context} is shorter than one timestep of {name} ({lay.length} slots)")
        cap = (task_timesteps or {}).get(name, max_timesteps)
        out[name] = min(n, cap) if cap else n
    return out


@dataclass
class Sample:
    inputs: Inputs              # the window's slots, unpadded
    task: str
    loss_weight: np.ndarray     # (slots,) float32: weight of each slot's action token in the loss
    task_id: int = 0            # the task's index for task embeddings (TimestepEncoder.task_id)


def encode_window(window: dict, encoder: TimestepEncoder, token_weights: dict[int, float] | None = None,
                  per_timestep: bool = False) -> Sample:
    """Encode one window. `token_weights` reweighs the loss of given action tokens (e.g. a discrete
    task's rare actions); others weigh 1. With `per_timestep` a timestep's action tokens share a
    weight of 1 (a 4-dimensional action then counts as much as a 1-dimensional one)."""
    w = encode_steps(window, encoder)
    weight = np.full(len(w), 1.0 / encoder.layout.n_action if per_timestep else 1.0, np.float32)
    if token_weights:
        for tok, wt in token_weights.items():
            weight[(w.tokens == tok) & w.loss_mask] *= wt
    return Sample(w, window["task"], weight, encoder.task_id)


def encode_steps(window: dict, encoder: TimestepEncoder) -> Inputs:
    """A window's slots. Under a frame stack a prompt (another episode) stacks only its own images, as the
    acting policy's prompt does, and the window's own steps continue from the images before them."""
    obs, act, n = window["observations"], window["actions"], window.get("prompt_steps", 0)
    if not (n and encoder.past_frames):
        return encoder.encode(obs, act, window.get("past_images"))
    return Inputs.concat([encoder.encode({k: v[:n] for k, v in obs.items()}, act[:n]),
                          encoder.encode({k: v[n:] for k, v in obs.items()}, act[n:], window.get("past_images"))])


def action_balance_weights(counts: np.ndarray, alpha: float) -> dict[int, float]:
    """Per-action loss weights proportional to frequency^-alpha, with mean weight 1 over the data:
    alpha 0 is plain cloning, 1 weighs every action equally in total."""
    freq = counts / counts.sum()
    w = np.where(counts > 0, np.maximum(freq, 1e-12) ** -alpha, 0.0)
    w = w / (freq * w).sum()
    return {i: float(w[i]) for i in range(len(counts)) if counts[i] > 0}


def pack(lengths: list[int], context: int) -> list[list[int]]:
    """Rows of at most `context` slots holding the given windows (first fit, longest first): windows
    of short-memory tasks share a row instead of each being padded to the context."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        if lengths[i] > context:
            raise ValueError(f"a window of {lengths[i]} slots does not fit the context of {context}")
        r = next((r for r, f in enumerate(free) if f >= lengths[i]), None)
        if r is None:
            rows.append([])
            free.append(context)
            r = len(rows) - 1
        rows[r].append(i)
        free[r] -= lengths[i]
    return rows


def collate(samples: list[Sample], context: int) -> dict[str, torch.Tensor]:
    """Pack windows into rows of `context` slots; `segments` numbers each row's windows from 1 (0 is
    padding) so that attention stays inside a window. Patches, vectors and frames are concatenated in
    the packed (row, slot) order the model fills them in."""
    rows = pack([len(s.inputs) for s in samples], context)
    order = [i for row in rows for i in row]
    shape = (len(rows), context)
    tokens, local = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    loss_mask, weight, segments = np.zeros(shape, bool), np.zeros(shape, np.float32), np.zeros(shape, np.int64)
    task_ids = np.zeros(shape, np.int64)
    for r, row in enumerate(rows):
        at = 0
        for seg, i in enumerate(row, start=1):
            s = samples[i]
            end = at + len(s.inputs)
            tokens[r, at:end], local[r, at:end] = s.inputs.tokens, s.inputs.local
            loss_mask[r, at:end], weight[r, at:end], segments[r, at:end] = s.inputs.loss_mask, s.loss_weight, seg
            task_ids[r, at:end] = s.task_id
            at = end
    ins = [samples[i].inputs for i in order]
    return {
        "tokens": torch.from_numpy(tokens),
        "local_positions": torch.from_numpy(local),
        "loss_mask": torch.from_numpy(loss_mask),
        "segments": torch.from_numpy(segments),
        "task_ids": torch.from_numpy(task_ids),
        "patches": torch.from_numpy(np.concatenate([i.patches for i in ins])),
        "patch_pos": torch.from_numpy(np.concatenate([i.patch_pos for i in ins])),
        "vectors": torch.from_numpy(np.concatenate([i.vectors for i in ins])),
        "frames": torch.from_numpy(np.concatenate([i.frames for i in ins])),
        "loss_weight": torch.from_numpy(weight),
    }


class WindowDataset(Dataset):
    """Map-style: item i is window i of the sampler's seed, so a global batch is the same whatever
    the number of ranks and DataLoader workers, and a resumed run continues the same stream."""

    def __init__(self, sampler: WindowSampler, encoders: dict[str, TimestepEncoder],
                 token_weights: dict[str, dict[int, float]] | None = None, per_timestep: bool = False):
        self.sampler, self.encoders = sampler, encoders
        self.token_weights = token_weights or {}
        self.per_timestep = per_timestep

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> Sample:
        w = self.sampler.sample_at(int(index))
        return encode_window(w, self.encoders[w["task"]], self.token_weights.get(w["task"]), self.per_timestep)


class GlobalBatchIndices(Sampler):
    """Indices of this rank's share of global batches start..steps-1 (batch b holds b*B .. b*B+B-1)."""

    def __init__(self, global_batch: int, start_step: int, steps: int, rank: int = 0, world: int = 1):
        if global_batch % world:
            raise ConfigError(f"global batch {global_batch} is not divisible by {world} processes")
        self.b, self.start, self.steps, self.rank, self.world = global_batch, start_step, steps, rank, world

    def __iter__(self):
        per = self.b // self.world
        for step in range(self.start, self.steps):
            base = step * self.b + self.rank * per
            yield from range(base, base + per)

    def __len__(self) -> int:
        return (self.steps - self.start) * (self.b // self.world)


def tokens_dataset(tasks: dict[str, TaskData], context: int, patch: int = 16) -> WindowDataset:
    """Training windows of `tasks` in Gato's token encoding, filling `context` (benchmarks use this)."""
    layouts = {t: layout_for(td, patch) for t, td in tasks.items()}
    encoders = {t: TimestepEncoder(lay, patch=patch) for t, lay in layouts.items()}
    return WindowDataset(WindowSampler(tasks, steps_per_window(layouts, context)), encoders)
