"""The one place a Weights & Biases run is started (collect, train, eval): the project from
$WANDB_PROJECT, the mode (offline never uses the network), and wandb imported only by runs that log."""

from __future__ import annotations

import os
from typing import Any


def start(mode: str, job: str, config: dict[str, Any], **kwargs: Any) -> Any:
    """A W&B run of `job_type` job in `mode` (offline|online), or None for off; kwargs go to wandb.init."""
    if mode == "off":
        return None
    import wandb  # lazy: a heavy optional dependency, needed only when logging

    return wandb.init(project=os.environ.get("WANDB_PROJECT", "generalist"), job_type=job, mode=mode,
                      config=config, **kwargs)
