"""How timesteps become model inputs: one encoder for training windows and for acting.

A timestep is laid out as [observation slots] [separator] [action tokens]. The observation slots
depend on the run's encoding (`TimestepLayout.encoding`):
- "tokens", Gato's: one slot per 16x16 image patch and one mu-law token per state value;
- "vector", JAT's: one slot for the whole image (a small conv encoder embeds it) and one slot for
  the whole state vector, normalized (per-task z-score from dataset statistics, or mu-law) and
  embedded by a learned linear map.
Action tokens are Gato's in both. Training (`agent/data.py`) and acting (`agent/policy.py`) both
call `TimestepEncoder.encode`, and both hide actions through `shown_tokens`, so what the model is
fed for a recorded step is the same on either side (tests/test_parity.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generalist.agent.tokenizer import (
    CONTINUOUS_OFFSET,
    FRAME_TOKEN,
    HIDDEN_TOKEN,
    N_BINS,
    PATCH_TOKEN,
    SEPARATOR,
    VECTOR_TOKEN,
    TimestepLayout,
    decode_continuous_action,
    encode_continuous_action,
    encode_continuous_observation,
    encode_discrete,
    image_to_patches,
    mu_law,
)

OBS_NORMS = ("zscore", "mulaw")
ZSCORE_CLIP = 10.0


@dataclass
class Inputs:
    """Model inputs for consecutive slots; the embeddings that fill special slots in slot order."""

    tokens: np.ndarray      # (S,) int64: targets; PATCH/VECTOR/FRAME_TOKEN where an embedding goes
    local: np.ndarray       # (S,) int64: place of the slot inside its timestep
    loss_mask: np.ndarray   # (S,) bool: action tokens
    patches: np.ndarray     # (N, 3, p, p) float32, for PATCH_TOKEN slots
    patch_pos: np.ndarray   # (N, 2) int64: row, column of each patch
    vectors: np.ndarray     # (M, D) float32, for VECTOR_TOKEN slots
    frames: np.ndarray      # (K, frame_channels, F, F) uint8, for FRAME_TOKEN slots

    def __len__(self) -> int:
        return len(self.tokens)

    @staticmethod
    def concat(parts: list[Inputs]) -> Inputs:
        return Inputs(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def slots(self, start: int, stop: int) -> Inputs:
        """Slots start..stop-1 that hold plain tokens (no embedding rows are sliced)."""
        special = np.isin(self.tokens[start:stop], (PATCH_TOKEN, VECTOR_TOKEN, FRAME_TOKEN))
        if special.any():
            raise ValueError("slots() only slices plain-token slots")
        return Inputs(self.tokens[start:stop], self.local[start:stop], self.loss_mask[start:stop],
                      *(getattr(self, f)[:0] for f in _FIELDS[3:]))

    def head(self, n: int) -> Inputs:
        """The first n slots; the dropped ones must hold plain tokens (embedding rows stay whole)."""
        self.slots(n, len(self))  # refuses a dropped image/vector slot
        return Inputs(self.tokens[:n], self.local[:n], self.loss_mask[:n], *(getattr(self, f) for f in _FIELDS[3:]))


_FIELDS = ("tokens", "local", "loss_mask", "patches", "patch_pos", "vectors", "frames")


def shown_tokens(tokens: np.ndarray, loss_mask: np.ndarray, hide_actions: bool) -> np.ndarray:
    """The tokens the model is fed: with hidden actions every action slot is HIDDEN_TOKEN (the model
    still predicts the real token there). Works on numpy arrays and torch tensors alike."""
    if not hide_actions:
        return tokens
    if isinstance(tokens, np.ndarray):
        return np.where(loss_mask, HIDDEN_TOKEN, tokens)
    return tokens.masked_fill(loss_mask, HIDDEN_TOKEN)


@dataclass(frozen=True)
class ObsNorm:
    """How a state vector is scaled before the linear embedding of the "vector" encoding."""

    kind: str = "zscore"
    mean: tuple[float, ...] = field(default_factory=tuple)
    std: tuple[float, ...] = field(default_factory=tuple)

    @classmethod
    def fit(cls, states: np.ndarray, kind: str) -> ObsNorm:
        """Statistics of a task's training states (rows are timesteps); constant dimensions get std 1."""
        if kind not in OBS_NORMS:
            raise ValueError(f"unknown observation normalization {kind!r}; choose from {', '.join(OBS_NORMS)}")
        if kind == "mulaw":
            return cls(kind)
        x = np.asarray(states, np.float64)
        std = x.std(0)
        std = np.where(std < 1e-6, 1.0, std)
        return cls(kind, tuple(map(float, x.mean(0))), tuple(map(float, std)))

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.kind == "mulaw":
            return np.clip(mu_law(x), -1.0, 1.0).astype(np.float32)
        z = (x - np.asarray(self.mean)) / np.asarray(self.std)
        return np.clip(z, -ZSCORE_CLIP, ZSCORE_CLIP).astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> ObsNorm:
        return cls(d["kind"], tuple(d.get("mean", ())), tuple(d.get("std", ())))


class TimestepEncoder:
    """Observations and actions of one task -> `Inputs`, for training windows and for acting alike."""

    def __init__(self, layout: TimestepLayout, norm: ObsNorm | None = None, patch: int = 16,
                 state_dim: int = 64, frame_size: int = 84, task_id: int = 0, frame_channels: int = 3):
        self.layout, self.patch = layout, patch
        self.task_id = task_id  # this task's row of the model's task embeddings (when it has them)
        self.norm = norm or ObsNorm("mulaw")
        self.state_dim, self.frame_size, self.frame_channels = state_dim, frame_size, frame_channels
        if layout.encoding == "vector" and layout.state_size > state_dim:
            raise ValueError(f"state of {layout.state_size} values exceeds the model's state_dim {state_dim}")

    @property
    def obs_slots(self) -> int:
        """Observation slots plus the separator: where the first action token goes."""
        return self.layout.length - self.layout.n_action

    # ------------------------------------------------------------------ parts
    def action_tokens(self, actions: np.ndarray) -> np.ndarray:
        """(T, ...) actions -> (T, n_action) tokens."""
        t = len(actions)
        if self.layout.discrete_actions is not None:
            return encode_discrete(np.asarray(actions).reshape(t, 1))
        return encode_continuous_action(np.asarray(actions).reshape(t, -1))

    def decode_action(self, tokens: list[int]):
        if self.layout.discrete_actions is not None:
            return int(tokens[0])
        return decode_continuous_action(np.array(tokens))

    def valid_range(self) -> tuple[int, int]:
        """The token range an action token of this task is decoded from."""
        if self.layout.discrete_actions is not None:
            return 0, self.layout.discrete_actions
        return CONTINUOUS_OFFSET, CONTINUOUS_OFFSET + N_BINS

    def _empty(self) -> tuple[np.ndarray, ...]:
        """No patches, vectors or frames, in this encoder's shapes."""
        p, f = self.patch, self.frame_size
        return (np.zeros((0, 3, p, p), np.float32), np.zeros((0, 2), np.int64),
                np.zeros((0, self.state_dim), np.float32), np.zeros((0, self.frame_channels, f, f), np.uint8))

    def action_inputs(self, tokens: list[int]) -> Inputs:
        """The first len(tokens) action slots of a timestep (acting decodes them one at a time)."""
        k = len(tokens)
        return Inputs(np.asarray(tokens, np.int64), np.arange(self.obs_slots, self.obs_slots + k),
                      np.ones(k, bool), *self._empty())

    @property
    def past_frames(self) -> int:
        """Images before a window's first timestep that its first frame slot stacks (frame_stack - 1)."""
        return self.layout.frame_stack - 1 if self.layout.n_frames else 0

    def frames(self, images: np.ndarray, past: np.ndarray | None = None) -> np.ndarray:
        """(T, H, W, C) uint8 -> (T, frame_channels, F, F) uint8 (any dtype keeps its own), zero-padded bottom/right. With a frame stack
        of K, timestep t's channels are images t-K+1..t (oldest first; `past` holds the images before the
        first, and where fewer than K-1 are known the earliest is repeated, as at an episode's start). The
        K*C channels are tiled to the model's frame_channels: one grayscale image fills all 3 channels."""
        t, h, w, c = images.shape
        f, k = self.frame_size, self.layout.frame_stack
        if h > f or w > f:
            raise ValueError(f"image {h}x{w} is larger than the model's frame size {f}")
        if k > 1:
            seq = images if past is None or not len(past) else np.concatenate([past[-(k - 1):], images])
            seq = np.concatenate([np.repeat(seq[:1], t + k - 1 - len(seq), axis=0), seq])  # (T+K-1, H, W, C)
            images = np.concatenate([seq[i:i + t] for i in range(k)], axis=-1)           # (T, H, W, K*C)
        chans = np.arange(self.frame_channels) % images.shape[-1]
        out = np.zeros((t, self.frame_channels, f, f), images.dtype)
        out[:, :, :h, :w] = np.moveaxis(images, -1, 1)[:, chans]
        return out

    def _patches(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t, h, w, c = images.shape
        p = self.patch
        patches = image_to_patches(images, p).reshape(-1, p, p, c).transpose(0, 3, 1, 2)
        if c == 1:  # one patch embedding serves all tasks
            patches = np.repeat(patches, 3, axis=1)
        grid_w = -(-w // p)
        idx = np.tile(np.arange(self.layout.n_patches), t)
        return np.ascontiguousarray(patches, np.float32), np.stack([idx // grid_w, idx % grid_w], 1)

    # ------------------------------------------------------------------ the one entry point
    def encode(self, observations: dict[str, np.ndarray], actions: np.ndarray | None,
               past_images: np.ndarray | None = None) -> Inputs:
        """T timesteps of observations and T actions -> their slots. With `actions` of length T-1
        (or None for T = 1) the last timestep stops after its separator: the prefix an acting policy
        feeds before decoding that step's action. `past_images`: the episode's images before the first
        timestep, for a frame stack (none: the first timestep starts the episode)."""
        lay = self.layout
        t = len(next(iter(observations.values())))
        n_act = 0 if actions is None else len(actions)
        if n_act not in (t, t - 1):
            raise ValueError(f"{t} observations need {t} or {t - 1} actions, got {n_act}")
        cols = []
        patches, patch_pos, vectors, frames = self._empty()
        if lay.n_frames:
            cols.append(np.full((t, 1), FRAME_TOKEN, np.int64))
            frames = self.frames(np.asarray(observations["image"][:t]),
                                  None if past_images is None else np.asarray(past_images))
        if lay.n_patches:
            cols.append(np.full((t, lay.n_patches), PATCH_TOKEN, np.int64))
            patches, patch_pos = self._patches(np.asarray(observations["image"][:t]))
        if lay.n_state:
            state = np.asarray(observations["state"][:t]).reshape(t, -1)
            if lay.encoding == "vector":
                cols.append(np.full((t, 1), VECTOR_TOKEN, np.int64))
                vectors = np.zeros((t, self.state_dim), np.float32)
                vectors[:, : state.shape[1]] = self.norm.apply(state)
            else:
                cols.append(encode_continuous_observation(state))
        cols.append(np.full((t, 1), SEPARATOR, np.int64))
        obs = np.concatenate(cols, axis=1)                       # (T, obs_slots)
        act = self.action_tokens(actions) if n_act else np.zeros((0, lay.n_action), np.int64)
        if n_act < t:  # the last timestep is a prefix: no action slots
            act = np.concatenate([act, np.full((1, lay.n_action), -99, np.int64)])
        grid = np.concatenate([obs, act], axis=1)
        mask = np.zeros(grid.shape, bool)
        mask[:, obs.shape[1]:] = True
        local = np.broadcast_to(np.arange(lay.length), grid.shape)
        keep = np.ones(grid.shape, bool)
        if n_act < t:
            keep[-1, obs.shape[1]:] = False
        return Inputs(grid[keep], local[keep].copy(), mask[keep], patches, patch_pos, vectors, frames)


def encoders_for(meta: dict[str, Any], model_cfg) -> dict[str, TimestepEncoder]:
    """Each task's encoder as a checkpoint's metadata defines it (training and acting both use this)."""
    norms = meta.get("obs_norm", {})
    ids = {t: i for i, t in enumerate(task_order(meta))}
    return {t: TimestepEncoder(TimestepLayout(**lay), ObsNorm.from_dict(norms[t]) if t in norms else None,
                               model_cfg.patch_size, model_cfg.state_dim, model_cfg.frame_size, ids[t],
                               model_cfg.frame_channels)
            for t, lay in meta["layouts"].items()}


def task_order(meta: dict[str, Any]) -> list[str]:
    """The run's tasks in the order of the model's task embeddings (sorted names)."""
    return sorted(meta["layouts"])


def shape_groups(shapes: list[tuple[int, ...] | None]) -> list[int]:
    """Per-shape input encoders: for each task's observation shape (None: the task has no such input)
    the index of the encoder it uses; equal shapes share one, numbered in order of first appearance."""
    first: dict[tuple[int, ...], int] = {}
    return [first.setdefault(tuple(s), len(first)) if s is not None else 0 for s in shapes]
