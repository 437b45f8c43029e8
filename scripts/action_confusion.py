"""Teacher-forced action confusion of a discrete task: play a recorded expert episode's observations
through the agent's acting path and count (expert action, agent action) pairs.

A clone whose validation accuracy equals the expert's most common action's share may have learned
nothing else (the quick suite's Pong: NOOP on 56 of 60 of the expert's UP/DOWN steps); this shows it
without running the simulator.

    python scripts/action_confusion.py RUN --data ROOT --task atari-pong [--steps 600] [--episode -1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from generalist.agent.policy import AgentPolicy
from generalist.datasets.layout import dataset_dir, episode_group, open_main
from generalist.errors import GeneralistError


def confusion(run: Path, data: Path, task: str, steps: int, episode: int) -> np.ndarray:
    """Counts[expert action, agent action] over the first `steps` steps of episode `episode` of the task."""
    policy = AgentPolicy.from_checkpoint(run, task)
    if policy.layout.discrete_actions is None:
        raise GeneralistError(f"{task} has continuous actions; the confusion table is for discrete ones")
    n = int(policy.layout.discrete_actions)
    ds = dataset_dir(data, task)
    with open_main(ds) as f:
        count = sum(1 for k in f if k.startswith("episode_"))
        g = episode_group(f, episode % count, ds)
        obs = {k: g["observations"][k][:steps] for k in g["observations"]}
        actions = g["actions"][:steps]
    table = np.zeros((n, n), int)
    for t, expert in enumerate(actions):
        table[int(expert), int(policy.act({k: v[t] for k, v in obs.items()}))] += 1
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run directory or checkpoint")
    p.add_argument("--data", type=Path, required=True, help="dataset root holding the task's recorded episodes")
    p.add_argument("--task", required=True, help="a discrete-action task the checkpoint was trained on")
    p.add_argument("--steps", type=int, default=600, help="steps of the episode to play (default 600)")
    p.add_argument("--episode", type=int, default=-1,
                   help="episode index; negative counts from the end (default -1: the last, a validation one)")
    a = p.parse_args()
    try:
        table = confusion(a.run, a.data, a.task, a.steps, a.episode)
    except (GeneralistError, OSError, ValueError) as e:
        sys.exit(f"action_confusion: {e}")
    print("rows: the expert's action, columns: the agent's")
    for i, row in enumerate(table):
        print(f"{i:>3}  " + " ".join(f"{v:>5}" for v in row))
    common = int(table.sum(1).argmax())
    rare = table.sum() - table[common].sum()
    print(f"agent matched {np.trace(table)} of {table.sum()} steps; on the expert's {rare} steps with an action other "
          f"than {common}, the agent chose {common} {table[:, common].sum() - table[common, common]} times")


if __name__ == "__main__":
    main()
