"""An exponential moving average of a model's weights (Polyak averaging): the average of the last ~1/(1 - decay)
steps' weights usually acts better than the last step's, whose position depends on the last few batches."""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """A frozen copy of `model` whose parameters follow the trained ones: avg <- d * avg + (1 - d) * weights,
    with d = min(decay, (1 + n) / (10 + n)) after n updates, so the first steps' random weights fade quickly."""

    def __init__(self, model: torch.nn.Module, decay: float, updates: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.updates = decay, updates
        self.model = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.lerp_(p.detach(), 1.0 - d)
        for avg, b in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(b)
