"""Reference scores: expert and random mean returns per task, measured and stored in the package.

The evaluation layer normalizes agent returns with these: (agent - random) / (expert - random).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from generalist.episodes import EpisodeJob, expert_factory, run_jobs, split_seeds, summarize
from generalist.fs import atomic_path

REFERENCE_FILE = Path(__file__).parent / "data" / "reference_scores.json"
REFERENCE_SEED = 1_000_000  # far from collection seeds (0, 1, ...) so no dataset shares them


def measure(task: str, kind: str, episodes: int, seed: int = REFERENCE_SEED, workers: int = 1,
            progress=None) -> dict[str, Any]:
    """Mean return (and success rate) of `kind` ('expert'|'random') over seeds seed..seed+episodes-1."""
    seeds = list(range(seed, seed + episodes))
    jobs = [EpisodeJob(task, expert_factory(kind), chunk, kind) for chunk in split_seeds(seeds, workers)]
    tick = (lambda _label, _task, r: progress(r)) if progress else None
    results = [r for part in run_jobs(jobs, workers, tick) for r in part]
    results.sort(key=lambda r: r.seed)
    out = summarize(results)
    out.update(seed=seed, returns=[round(r.ret, 4) for r in results])
    return out


def load() -> dict[str, Any]:
    """All stored reference scores: {task: {'expert': {...}, 'random': {...}}}."""
    if not REFERENCE_FILE.exists():
        return {}
    return json.loads(REFERENCE_FILE.read_text())


def save(task: str, kind: str, result: dict[str, Any], path: Path = REFERENCE_FILE) -> None:
    """Merge one measurement into the reference file (atomically), recording the command.

    Several `experts score --save` processes may run at once (one per group of tasks): each merges under
    an exclusive lock on a sibling file, so none loses another's tasks."""
    result = dict(result)
    result["command"] = "generalist " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    result["measured"] = _dt.date.today().isoformat()
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks until the other writer is done; freed on close
        data = json.loads(path.read_text()) if path.exists() else {}
        data.setdefault(task, {})[kind] = result
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
