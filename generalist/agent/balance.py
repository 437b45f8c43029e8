"""Per-task loss scales that even out the tasks' gradient magnitudes on the shared transformer.

Measured on the quick suite (DEVELOPERS.md, "Task gradient balance"): the tasks' gradients on the shared
blocks are nearly orthogonal, but their sizes differ by ~75x (drawer-open's largest, Pong's smallest),
and AdamW's per-parameter normalization is set by the largest, so the small ones barely move the
shared weights. Every `every` steps this measures each task's gradient norm on the blocks (one small
batch per task, its own fixed stream of windows), keeps a moving average, and scales each task's loss
by (norm / geometric mean of norms)^-alpha, clipped to [1/max_scale, max_scale]. alpha 0 is plain
multi-task cloning; 1 evens the norms out (GradNorm's target, Chen et al. 2018, without its extra
optimization).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from generalist.agent.data import WindowDataset, collate


class TaskBalancer:
    """Loss scale per task id, refreshed from measured per-task gradient norms."""

    def __init__(self, datasets: dict[int, WindowDataset], context: int, alpha: float, every: int = 25,
                 windows: int = 16, decay: float = 0.7, max_scale: float = 10.0):
        self.datasets, self.context, self.alpha = datasets, context, alpha
        self.every, self.windows, self.decay, self.max_scale = every, windows, decay, max_scale
        self.norms: dict[int, float] = {}       # moving average of each task's gradient norm
        self.measured = 0                        # measurements so far: the index of the next windows
        self.scale = torch.ones(max(datasets, default=-1) + 1)

    def due(self, step: int) -> bool:
        return self.alpha > 0 and step % self.every == 0

    def measure(self, model: torch.nn.Module, loss_fn: Callable[[dict], tuple], to_dev: Callable[[dict], dict],
                shared: list[torch.nn.Parameter], all_reduce: Callable[[torch.Tensor], None] | None = None) -> None:
        """Each task's gradient norm on `shared` (its mean loss per unit weight); leaves no gradients behind."""
        ids = sorted(self.datasets)
        norms = torch.zeros(len(ids))
        base = self.measured * self.windows
        for k, i in enumerate(ids):
            ds = self.datasets[i]
            batch = to_dev(collate([ds[base + j] for j in range(self.windows)], self.context))
            loss_sum, _, _, wsum = loss_fn(batch)
            grads = torch.autograd.grad(loss_sum / max(wsum, 1e-12), shared, allow_unused=True)
            norms[k] = math.sqrt(sum(float((g.float() ** 2).sum()) for g in grads if g is not None))
        if all_reduce is not None:
            all_reduce(norms)
        self.measured += 1
        for k, i in enumerate(ids):
            n = float(norms[k])
            self.norms[i] = n if i not in self.norms else self.decay * self.norms[i] + (1 - self.decay) * n
        self._rescale()

    def _rescale(self) -> None:
        vals = {i: max(n, 1e-8) for i, n in self.norms.items()}
        if not vals:
            return
        mean = math.exp(sum(math.log(v) for v in vals.values()) / len(vals))
        if len(self.scale) <= max(vals):
            self.scale = torch.cat([self.scale, torch.ones(max(vals) + 1 - len(self.scale))])
        for i, v in vals.items():
            self.scale[i] = min(self.max_scale, max(1 / self.max_scale, (v / mean) ** -self.alpha))

    def slot_scale(self, task_ids: torch.Tensor) -> torch.Tensor:
        """(B, S) loss multipliers for a batch's slots."""
        return self.scale.to(task_ids.device)[task_ids]

    def state_dict(self) -> dict:
        return {"norms": dict(self.norms), "measured": self.measured}

    def load_state_dict(self, state: dict) -> None:
        self.norms = {int(k): float(v) for k, v in state.get("norms", {}).items()}
        self.measured = int(state.get("measured", 0))
        self._rescale()

    def log(self, names: dict[int, str]) -> dict[str, float]:
        out = {f"balance/{names[i]}/grad_norm": n for i, n in self.norms.items()}
        out.update({f"balance/{names[i]}/scale": float(self.scale[i]) for i in self.norms})
        return out
