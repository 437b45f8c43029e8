"""Acting: a policy made from a checkpoint that plays any task it was trained on.

It keeps a rolling context of recent timesteps (after an optional demonstration prompt) and
decodes each action token greedily, restricted to the task's valid token range, with the KV
cache: a step feeds only the new slots. When the context is full, the oldest half of the history
is dropped and the cache rebuilt once from what remains, so the cache always matches its context
exactly (no stale keys) and rebuilds are rare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generalist.agent import checkpoint
from generalist.agent.model import GatoModel, KVCache, ModelConfig
from generalist.agent.tokenizer import (
    CONTINUOUS_OFFSET,
    HIDDEN_TOKEN,
    N_BINS,
    PATCH_TOKEN,
    SEPARATOR,
    TimestepLayout,
    decode_continuous_action,
    encode_continuous_action,
    encode_continuous_observation,
    encode_discrete,
    image_to_patches,
)


class UnknownTaskForCheckpoint(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class _Slots:
    tokens: list[int]
    local: list[int]
    patches: np.ndarray   # (n, C, p, p)
    patch_pos: np.ndarray  # (n, 2)


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[GatoModel, dict[str, Any]]:
    """The model and metadata of a run directory or checkpoint directory."""
    ck = checkpoint.resolve(Path(path))
    meta = checkpoint.load_meta(ck)
    model = GatoModel(ModelConfig(**meta["model"]))
    model.load_state_dict(checkpoint.load_weights(ck))
    return model.to(device).eval(), meta


class AgentPolicy:
    """`reset()` / `act(obs)` for one task, like the experts; no privileged input."""

    name = "agent"

    def __init__(self, model: GatoModel, meta: dict[str, Any], task: str, context: int | None = None,
                 use_cache: bool = True, device: str | torch.device = "cpu"):
        if task not in meta["layouts"]:
            raise UnknownTaskForCheckpoint(
                f"the checkpoint was never trained on {task!r}; it knows: {', '.join(sorted(meta['layouts']))}")
        self.model, self.task, self.device = model, task, torch.device(device)
        self.layout = TimestepLayout(**meta["layouts"][task])
        self.patch = model.cfg.patch_size
        self.context = context or model.cfg.max_seq_len
        self.use_cache = use_cache
        # a run trained with hidden actions must act the same way: the model never sees action tokens
        self.hide_actions = bool(meta.get("train", {}).get("hide_actions", False))
        if self.layout.length > self.context:
            raise ValueError(f"context {self.context} cannot hold one timestep ({self.layout.length} slots)")
        self.prompt: list[_Slots] = []
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: Path, task: str, **kwargs) -> AgentPolicy:
        model, meta = load_model(path, kwargs.get("device", "cpu"))
        return cls(model, meta, task, **kwargs)

    # ------------------------------------------------------------------ prompting
    def set_prompt(self, observations: dict[str, np.ndarray], actions: np.ndarray) -> None:
        """Demonstration timesteps (e.g. the end of an expert episode) kept at the front of the context."""
        self.prompt = [self._timestep({k: v[i] for k, v in observations.items()}, actions[i])
                       for i in range(len(actions))]
        max_prompt = (self.context // self.layout.length) // 2
        self.prompt = self.prompt[-max_prompt:]
        self.reset()

    # ------------------------------------------------------------------ slots
    def _obs_slots(self, obs: dict[str, np.ndarray]) -> _Slots:
        lay = self.layout
        tokens: list[int] = []
        patches = np.zeros((0, 3, self.patch, self.patch), np.float32)
        pos = np.zeros((0, 2), np.int64)
        if lay.n_patches:
            img = obs["image"]
            c = img.shape[-1]
            patches = image_to_patches(img, self.patch).reshape(-1, self.patch, self.patch, c).transpose(0, 3, 1, 2)
            if c == 1:  # as in training's collate: grayscale patches go to 3 channels
                patches = np.repeat(patches, 3, axis=1)
            grid_w = -(-img.shape[1] // self.patch)
            idx = np.arange(lay.n_patches)
            pos = np.stack([idx // grid_w, idx % grid_w], 1)
            tokens += [PATCH_TOKEN] * lay.n_patches
        if lay.n_state:
            tokens += encode_continuous_observation(np.asarray(obs["state"]).reshape(-1)).tolist()
        tokens.append(SEPARATOR)
        return _Slots(tokens, list(range(len(tokens))), np.ascontiguousarray(patches, np.float32), pos)

    def _action_tokens(self, action) -> list[int]:
        if self.layout.discrete_actions is not None:
            return encode_discrete(np.array([int(action)])).tolist()
        return encode_continuous_action(np.asarray(action).reshape(-1)).tolist()

    def _shown(self, tokens: list[int]) -> list[int]:
        """Action tokens as the model is shown them (HIDDEN_TOKEN when the run hid actions)."""
        return [HIDDEN_TOKEN] * len(tokens) if self.hide_actions else tokens

    def _timestep(self, obs, action) -> _Slots:
        s = self._obs_slots(obs)
        a = self._shown(self._action_tokens(action))
        n = len(s.tokens)
        return _Slots(s.tokens + a, s.local + list(range(n, n + len(a))), s.patches, s.patch_pos)

    # ------------------------------------------------------------------ acting
    def reset(self) -> None:
        self.history: list[_Slots] = []
        self.cache = None
        self.cached_len = 0
        self.pending: _Slots | None = None  # slots not yet fed to the cache (last action token)

    def _run(self, parts: list[_Slots], cache):
        tokens = torch.tensor([t for p in parts for t in p.tokens], device=self.device)[None]
        local = torch.tensor([t for p in parts for t in p.local], device=self.device)[None]
        patches = torch.from_numpy(np.concatenate([p.patches for p in parts])).to(self.device)
        pos = torch.from_numpy(np.concatenate([p.patch_pos for p in parts])).to(self.device)
        if cache is None and self.use_cache:
            cache = KVCache(self.model.cfg, 1, self.device, next(self.model.parameters()).dtype)
        logits, cache = self.model(tokens, local, patches, pos, cache, last_only=True)
        return logits[0, -1], cache, tokens.shape[1]

    def _valid_range(self) -> tuple[int, int]:
        if self.layout.discrete_actions is not None:
            return 0, self.layout.discrete_actions
        return CONTINUOUS_OFFSET, CONTINUOUS_OFFSET + N_BINS

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> Any:
        lay = self.layout
        cur = self._obs_slots(obs)
        # The new timestep must fit: drop the oldest half of the history when it would not.
        used = sum(len(p.tokens) for p in self.prompt + self.history)
        if used + lay.length > self.context:
            keep = max(0, (self.context - sum(len(p.tokens) for p in self.prompt)) // lay.length // 2)
            self.history = self.history[len(self.history) - keep:] if keep else []
            self.cache, self.pending = None, None
        if self.cache is None or not self.use_cache:
            logits, self.cache, self.cached_len = self._run(self.prompt + self.history + [cur], None)
        else:
            new = ([self.pending] if self.pending else []) + [cur]
            logits, self.cache, n = self._run(new, self.cache)
            self.cached_len += n
        lo, hi = self._valid_range()
        out: list[int] = []
        for k in range(lay.n_action):
            tok = lo + int(torch.argmax(logits[lo:hi]))
            out.append(tok)
            if k + 1 < lay.n_action:
                step = _Slots(self._shown([tok]), [len(cur.tokens) + k], np.zeros((0, 3, self.patch, self.patch), np.float32),
                              np.zeros((0, 2), np.int64))
                if self.use_cache:
                    logits, self.cache, n = self._run([step], self.cache)
                    self.cached_len += n
                else:
                    partial = _Slots(cur.tokens + self._shown(out), cur.local + list(range(len(cur.tokens), len(cur.tokens) + len(out))),
                                     cur.patches, cur.patch_pos)
                    logits, _, _ = self._run(self.prompt + self.history + [partial], None)
        n_obs = len(cur.tokens)
        last = _Slots(self._shown([out[-1]]), [n_obs + lay.n_action - 1], np.zeros((0, 3, self.patch, self.patch), np.float32),
                      np.zeros((0, 2), np.int64))
        self.pending = last
        self.history.append(_Slots(cur.tokens + self._shown(out), cur.local + list(range(n_obs, n_obs + len(out))),
                                   cur.patches, cur.patch_pos))
        if lay.discrete_actions is not None:
            return int(out[0])
        return decode_continuous_action(np.array(out))
