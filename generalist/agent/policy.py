"""Acting: a policy made from a checkpoint that plays any task it was trained on.

It keeps a rolling context of recent timesteps (after an optional demonstration prompt) and
decodes each action token greedily, restricted to the task's valid token range, with the KV
cache: a step feeds only the new slots. When the context is full, the oldest half of the history
is dropped and the cache rebuilt once from what remains, so the cache always matches its context
exactly (no stale keys) and rebuilds are rare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generalist.agent import checkpoint
from generalist.agent.data import steps_per_window
from generalist.agent.encoder import Inputs, encoders_for, shown_tokens
from generalist.agent.model import GatoModel, KVCache, ModelConfig
from generalist.agent.tokenizer import N_BINS, bin_centres, bin_values
from generalist.errors import GeneralistError

_BIN_CENTRES = torch.tensor(bin_centres(np.arange(N_BINS)), dtype=torch.float64)


class UnknownTaskForCheckpoint(GeneralistError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[GatoModel, dict[str, Any]]:
    """The model and metadata of a run directory or checkpoint directory."""
    ck = checkpoint.resolve(Path(path))
    meta = checkpoint.load_meta(ck)
    model = GatoModel(ModelConfig(**meta["model"]))
    model.load_state_dict(checkpoint.load_weights(ck))
    return model.to(device).eval(), meta


@dataclass
class _Row:
    """One episode's acting state: its prompt, the timesteps it played, the slots not yet fed to the cache."""

    prompt: list[Inputs]
    rng: torch.Generator
    history: list[Inputs] = field(default_factory=list)
    pending: Inputs | None = None  # slots not yet fed to the cache (last action token)
    past_images: list[np.ndarray] = field(default_factory=list)  # the latest images, for a frame stack


class AgentPolicy:
    """`reset()` / `act(obs)` for one task, like the experts; no privileged input.

    It also plays several episodes of its task in lockstep (`start(n)`, then `act_batch` with one observation
    per episode, `keep` when some end): one batched forward pass a step for all of them, which divides the
    model's per-call overhead, the bulk of an acting step on a CPU, by their number."""

    name = "agent"

    def __init__(self, model: GatoModel, meta: dict[str, Any], task: str, context: int | None = None,
                 use_cache: bool = True, device: str | torch.device = "cpu", temperature: float = 0.0):
        if task not in meta["layouts"]:
            raise UnknownTaskForCheckpoint(
                f"the checkpoint was never trained on {task!r}; it knows: {', '.join(sorted(meta['layouts']))}")
        self.model, self.task, self.device = model, task, torch.device(device)
        self.encoder = encoders_for(meta, model.cfg)[task]
        self.layout = self.encoder.layout
        self.context = context or model.cfg.max_seq_len
        self.use_cache = use_cache
        # 0: greedy decoding; > 0: sample each action token from softmax(logits / temperature), as Gato does
        self.temperature = float(temperature)
        self.rng = torch.Generator().manual_seed(0)
        train_cfg = meta.get("train", {})
        # a run trained with hidden actions must act the same way: the model never sees action tokens
        self.hide_actions = bool(train_cfg.get("hide_actions", False))
        self.one_pass = True  # hidden actions: decode every action dimension from one forward pass
        # a run whose windows held at most K timesteps acts on the last K (its memory), recomputed each step:
        # K is this task's training window length, so acting sees the histories training saw
        self.max_timesteps = 0
        if train_cfg.get("max_timesteps") or (train_cfg.get("task_timesteps") or {}).get(task):
            self.max_timesteps = steps_per_window({task: self.layout}, model.cfg.max_seq_len,
                                                  train_cfg.get("max_timesteps"), train_cfg.get("task_timesteps"))[task]
        if self.layout.length > self.context:
            raise ValueError(f"context {self.context} cannot hold one timestep ({self.layout.length} slots)")
        self.prompt: list[Inputs] = []
        self.fed: Inputs | None = None  # the last full context the model fed the first episode (parity tests read it)
        self.first_logits: torch.Tensor | None = None
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: Path, task: str, **kwargs) -> AgentPolicy:
        model, meta = load_model(path, kwargs.get("device", "cpu"))
        return cls(model, meta, task, **kwargs)

    # ------------------------------------------------------------------ prompting
    def prompt_room(self) -> int:
        """Timesteps of prompt the context holds beside the policy's memory (with a fixed memory of K
        timesteps, all the context but K; otherwise half of it)."""
        room = self.context // self.layout.length
        return max(0, room - self.max_timesteps) if self.max_timesteps else room // 2

    def make_prompt(self, observations: dict[str, np.ndarray], actions: np.ndarray) -> list[Inputs]:
        """Demonstration timesteps (e.g. the end of an expert episode) to keep at the front of the context,
        at most `prompt_room()` of them (the last ones)."""
        n = min(len(actions), self.prompt_room())
        if self.encoder.past_frames:  # one piece: its frame stacks see the demonstration's own images
            return [self.encoder.encode({k: np.asarray(v)[len(actions) - n:len(actions)]
                                         for k, v in observations.items()}, np.asarray(actions)[len(actions) - n:])]
        return [self._timestep({k: v[i] for k, v in observations.items()}, actions[i])
                for i in range(len(actions) - n, len(actions))]

    def set_prompt(self, observations: dict[str, np.ndarray], actions: np.ndarray) -> None:
        """Start every later episode from this demonstration (see `make_prompt`)."""
        self.prompt = self.make_prompt(observations, actions)
        self.reset()

    # ------------------------------------------------------------------ slots
    def _timestep(self, obs: dict[str, np.ndarray], action) -> Inputs:
        return self.encoder.encode({k: np.asarray(v)[None] for k, v in obs.items()}, np.asarray(action)[None])

    # ------------------------------------------------------------------ acting
    def seed(self, seed: int) -> None:
        """Seed the sampling of action tokens (episodes are reproducible whatever the worker split)."""
        self.rng.manual_seed(int(seed))

    def _pick(self, logits: torch.Tensor, rng: torch.Generator) -> int:
        """One action token. Greedy decoding takes the most likely discrete action, but for a continuous
        action the expectation over the bins (snapped to the nearest bin): on cartpole, where the expert
        switches between -1 and +1, the mode of an uncertain distribution flips sign where the mean does
        not (0.48 -> 0.82 normalized, DEVELOPERS.md)."""
        lo, hi = self.encoder.valid_range()
        if self.temperature <= 0:
            if self.layout.discrete_actions is None:
                p = torch.softmax(logits[lo:hi].double(), -1)
                return lo + int(bin_values(float((p * _BIN_CENTRES).sum())))
            return lo + int(torch.argmax(logits[lo:hi]))
        probs = torch.softmax(logits[lo:hi].float() / self.temperature, -1)
        return lo + int(torch.multinomial(probs, 1, generator=rng))

    def reset(self) -> None:
        """Start one episode (with the prompt `set_prompt` gave, if any)."""
        self._start([_Row(self.prompt, self.rng)])

    def start(self, seeds: list[int], prompts: list[list[Inputs]] | None = None) -> None:
        """Start len(seeds) episodes played in lockstep, each sampling (temperature > 0) from its own seed and
        starting from its own prompt (`make_prompt`); prompts of unequal length cannot share a forward pass."""
        prompts = prompts or [self.prompt] * len(seeds)
        if len({sum(len(p) for p in pr) for pr in prompts}) > 1:
            raise ValueError("episodes played in lockstep need prompts of the same length")
        self._start([_Row(pr, torch.Generator().manual_seed(int(s))) for pr, s in zip(prompts, seeds, strict=True)])

    def _start(self, rows: list[_Row]) -> None:
        self.rows = rows
        self.cache: KVCache | None = None
        self.rebuilds = 0  # times the whole context was fed afresh (first step, roll-overs, fixed memory)

    def keep(self, which: list[int]) -> None:
        """Go on with only these episodes (by their place in the batch); the others ended."""
        self.rows = [self.rows[i] for i in which]
        if self.cache is not None:
            self.cache.buf = self.cache.buf[:, :, which]

    # the first (with `act`: the only) episode's timesteps, read by the parity tests
    history = property(lambda self: self.rows[0].history)

    def _run(self, parts: list[list[Inputs]], cache: KVCache | None, last: int = 1, cached: bool = True):
        """Logits of the last `last` slots of every episode ((B, vocab), or (B, last, vocab)), the cache (a new one
        unless `cached` is False), and the inputs fed (one `Inputs` per episode; lockstep episodes have the same
        slots, so they stack)."""
        xs = [Inputs.concat(p) for p in parts]
        dev, b = self.device, len(xs)

        def cat(name: str, stack: bool = False) -> torch.Tensor:
            arrs = [getattr(x, name) for x in xs]
            return torch.from_numpy(np.stack(arrs) if stack else np.concatenate(arrs)).to(dev)

        tokens = torch.from_numpy(np.stack([shown_tokens(x.tokens, x.loss_mask, self.hide_actions) for x in xs]))
        if cache is None and self.use_cache and cached:
            cache = KVCache(self.model.cfg, b, dev, next(self.model.parameters()).dtype)
        logits, cache = self.model(tokens.to(dev), cat("local", True), cat("patches"), cat("patch_pos"), cache,
                                   last_only=last == 1, vectors=cat("vectors"), frames=cat("frames"),
                                   task_ids=torch.full(tokens.shape, self.encoder.task_id, device=dev))
        return (logits[:, -1] if last == 1 else logits[:, -last:]), cache, xs

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> Any:
        if len(self.rows) != 1:
            raise ValueError(f"act() plays one episode; {len(self.rows)} are started: use act_batch")
        return self.act_batch([obs])[0]

    @torch.no_grad()
    def act_batch(self, observations: list[dict[str, np.ndarray]]) -> list[Any]:
        """One action for each started episode, given its observation (in the order of `start`, less `keep`)."""
        lay, enc, rows = self.layout, self.encoder, self.rows
        if len(observations) != len(rows):
            raise ValueError(f"{len(observations)} observations for {len(rows)} episodes")
        cur = []
        for row, obs in zip(rows, observations, strict=True):
            past = np.stack(row.past_images) if row.past_images else None
            cur.append(enc.encode({k: np.asarray(v)[None] for k, v in obs.items()}, None, past))  # to the separator
            if enc.past_frames:
                row.past_images = (row.past_images + [np.asarray(obs["image"])])[-enc.past_frames:]
        fresh = self.cache is None or not self.use_cache
        first = rows[0]  # lockstep: every episode's history and prompt have the same length
        if self.max_timesteps:  # exactly the last K - 1 timesteps before this one, as in training
            for row in rows:
                row.history = row.history[max(0, len(row.history) - self.max_timesteps + 1):] if self.max_timesteps > 1 else []
            fresh = True
        used = sum(len(p) for p in first.prompt + first.history)
        if used + lay.length > self.context:  # the new timestep must fit: drop the oldest half of the history
            keep = max(0, (self.context - sum(len(p) for p in first.prompt)) // lay.length // 2)
            for row in rows:
                row.history = row.history[max(0, len(row.history) - keep):] if keep else []
            fresh = True
        # With hidden actions a chosen action token never reaches the model, so the slots of every action
        # dimension are known before decoding: one forward pass yields all of this step's action logits.
        n_ahead = lay.n_action - 1 if self.hide_actions and self.one_pass else 0
        ahead = [enc.action_inputs([0] * n_ahead)] if n_ahead else []
        if fresh:
            self.rebuilds += 1
            # with a fixed memory the next step starts afresh: keep a cache only to decode this step's tokens one by one
            cached = self.use_cache and not (self.max_timesteps and n_ahead == lay.n_action - 1)
            logits, cache, fed = self._run([r.prompt + r.history + [c] + ahead for r, c in zip(rows, cur, strict=True)],
                                           None, n_ahead + 1, cached)
            self.cache = cache if cached else None
            self.fed = fed[0].head(len(fed[0]) - n_ahead)  # what the model was fed up to this step's separator
        else:
            logits, self.cache, _ = self._run([([r.pending] if r.pending else []) + [c] + ahead
                                               for r, c in zip(rows, cur, strict=True)], self.cache, n_ahead + 1)
        if n_ahead:
            self.first_logits = logits[0, 0]
            outs = [[self._pick(x, r.rng) for x in lg] for r, lg in zip(rows, logits, strict=True)]
        else:
            self.first_logits = logits[0]  # of this step's first action token (parity tests read it)
            outs = [[] for _ in rows]
            for k in range(lay.n_action):
                for r, out, lg in zip(rows, outs, logits, strict=True):
                    out.append(self._pick(lg, r.rng))
                if k + 1 < lay.n_action:
                    done = [enc.action_inputs(out) for out in outs]
                    if self.use_cache:
                        logits, self.cache, _ = self._run([[d.slots(k, k + 1)] for d in done], self.cache)
                    else:
                        logits, _, _ = self._run([r.prompt + r.history + [c, d] for r, c, d in zip(rows, cur, done, strict=True)],
                                                 None)
        for row, c, out in zip(rows, cur, outs, strict=True):
            full = Inputs.concat([c, enc.action_inputs(out)])  # = enc.encode(obs, action)
            row.pending = full.slots(len(full) - 1, len(full))
            row.history.append(full)
        return [enc.decode_action(out) for out in outs]


def driver_for(path: Path, tasks: list[str]) -> tuple[partial, str]:
    """DAgger collection (`generalist collect --driver`): check that the checkpoint at `path` (a run or checkpoint
    directory) plays every task; returns the picklable factory that builds its acting agent for an env in each
    collection process, and the checkpoint's path (stored with every driven episode)."""
    ck = checkpoint.resolve(Path(path))
    known = checkpoint.load_meta(ck)["layouts"]
    missing = [t for t in tasks if t not in known]
    if missing:
        raise UnknownTaskForCheckpoint(f"--driver {path}: the checkpoint was never trained on {', '.join(missing)}; "
                                       f"it knows: {', '.join(sorted(known))}")
    return partial(_drive, str(ck)), str(ck)


def _drive(ck: str, env) -> AgentPolicy:
    return AgentPolicy.from_checkpoint(Path(ck), env.task.name)
