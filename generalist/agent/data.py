"""From sampled windows to padded token tensors the model trains on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from generalist.agent.tokenizer import TimestepLayout, tokenize
from generalist.datasets.sampler import TaskData, WindowSampler


def layout_for(td: TaskData, patch: int = 16) -> TimestepLayout:
    obs = {k: tuple(s.shape) for k, s in td.observation_space.spaces.items()}
    space = td.action_space
    discrete = int(space.n) if hasattr(space, "n") else None
    return TimestepLayout.for_spaces(obs, tuple(space.shape or ()), discrete, patch)


def steps_per_window(tasks: dict[str, TaskData], context: int, patch: int = 16) -> dict[str, int]:
    out = {}
    for name, td in tasks.items():
        n = context // layout_for(td, patch).length
        if n < 1:
            raise ValueError(f"context {context} is shorter than one timestep of {name} "
                             f"({layout_for(td, patch).length} slots)")
        out[name] = n
    return out


@dataclass
class Sample:
    tokens: np.ndarray          # (context,)
    local_positions: np.ndarray
    loss_mask: np.ndarray
    patches: np.ndarray         # (n, C, p, p)
    patch_pos: np.ndarray       # (n, 2)
    task: str


def encode_window(window: dict, layout: TimestepLayout, context: int, patch: int = 16) -> Sample:
    """Tokenize one window and pad it to `context` slots (padding carries no loss)."""
    w = tokenize(window["observations"], window["actions"], layout, patch)
    n = len(w.tokens)
    pad = context - n
    tokens = np.concatenate([w.tokens, np.zeros(pad, np.int64)])
    local = np.concatenate([w.local_positions, np.zeros(pad, np.int64)])
    mask = np.concatenate([w.loss_mask, np.zeros(pad, bool)])
    if layout.n_patches:
        img = window["observations"]["image"]
        c = img.shape[-1]
        patches = w.patches.reshape(-1, patch, patch, c).transpose(0, 3, 1, 2)
        grid_w = -(-img.shape[2] // patch)
        idx = np.tile(np.arange(layout.n_patches), len(window["actions"]))
        pos = np.stack([idx // grid_w, idx % grid_w], 1)
    else:
        patches, pos = np.zeros((0, 3, patch, patch), np.float32), np.zeros((0, 2), np.int64)
    return Sample(tokens, local, mask, np.ascontiguousarray(patches, dtype=np.float32), pos, window["task"])


def collate(samples: list[Sample]) -> dict[str, torch.Tensor]:
    """Stack token tensors; concatenate patches in (batch, slot) order. Gray patches go to 3 channels."""
    patches = [np.repeat(s.patches, 3, axis=1) if s.patches.shape[1] == 1 else s.patches for s in samples]
    return {
        "tokens": torch.from_numpy(np.stack([s.tokens for s in samples])),
        "local_positions": torch.from_numpy(np.stack([s.local_positions for s in samples])),
        "loss_mask": torch.from_numpy(np.stack([s.loss_mask for s in samples])),
        "patches": torch.from_numpy(np.concatenate(patches)),
        "patch_pos": torch.from_numpy(np.concatenate([s.patch_pos for s in samples])),
    }


class WindowDataset(Dataset):
    """Map-style: item i is window i of the sampler's seed, so a global batch is the same whatever
    the number of ranks and DataLoader workers, and a resumed run continues the same stream."""

    def __init__(self, sampler: WindowSampler, layouts: dict[str, TimestepLayout], context: int,
                 patch: int = 16):
        self.sampler, self.layouts, self.context, self.patch = sampler, layouts, context, patch

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> Sample:
        w = self.sampler.sample_at(int(index))
        return encode_window(w, self.layouts[w["task"]], self.context, self.patch)


class GlobalBatchIndices(Sampler):
    """Indices of this rank's share of global batches start..steps-1 (batch b holds b*B .. b*B+B-1)."""

    def __init__(self, global_batch: int, start_step: int, steps: int, rank: int = 0, world: int = 1):
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} is not divisible by {world} processes")
        self.b, self.start, self.steps, self.rank, self.world = global_batch, start_step, steps, rank, world

    def __iter__(self):
        per = self.b // self.world
        for step in range(self.start, self.steps):
            base = step * self.b + self.rank * per
            yield from range(base, base + per)

    def __len__(self) -> int:
        return (self.steps - self.start) * (self.b // self.world)
