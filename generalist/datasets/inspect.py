"""`datasets info` and `datasets check`: what a dataset holds, and whether it is whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from generalist.datasets.layout import (
    MAIN_FILE,
    METADATA_FILE,
    DatasetError,
    data_dir,
    deserialize_space,
    episode_group,
    open_main,
    read_metadata,
)
from generalist.lock import holder

REQUIRED = ("observations", "actions", "rewards", "terminations", "truncations")


def _size_bytes(ds_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir(ds_dir).rglob("*") if p.is_file())


def info(ds_dir: Path) -> dict[str, Any]:
    """Episodes, steps, return statistics and size of one dataset (reads attributes, not arrays)."""
    meta = read_metadata(ds_dir)
    returns, steps, seeds, success = [], [], [], []
    with open_main(ds_dir) as f:
        for i in range(len(f.keys())):
            a = episode_group(f, i, ds_dir).attrs
            try:
                returns.append(float(a.get("return", np.nan)))
                steps.append(int(a["total_steps"]))
                seeds.append(int(a["seed"]))
            except (KeyError, ValueError, TypeError):
                raise DatasetError(f"{data_dir(ds_dir) / MAIN_FILE}: episode_{i} lacks valid total_steps/seed "
                                   "attributes; `generalist datasets check` lists what is broken") from None
            if "success" in a:
                success.append(bool(a["success"]))
    r = np.array(returns) if returns else np.array([np.nan])
    out = {
        "path": str(ds_dir),
        "dataset_id": meta.get("dataset_id"),
        "task": meta.get("generalist", {}).get("task"),
        "expert": meta.get("algorithm_name"),
        "episodes": len(steps),
        "steps": int(sum(steps)),
        "return_mean": float(r.mean()),
        "return_std": float(r.std()),
        "return_min": float(r.min()),
        "return_max": float(r.max()),
        "seeds": [min(seeds), max(seeds)] if seeds else None,
        "size_mb": round(_size_bytes(ds_dir) / 2**20, 3),
        "packed": not (data_dir(ds_dir) / "parts").exists(),
    }
    if success:
        out["success_rate"] = float(np.mean(success))
    return out


def stored_seeds(ds_dir: Path) -> set[int]:
    """The seeds of the episodes a dataset holds (empty when it is not there); DatasetError if unreadable."""
    path = data_dir(ds_dir) / MAIN_FILE
    if not path.exists():
        return set()
    try:
        with h5py.File(path, "r") as f:
            return {int(g.attrs["seed"]) for g in f.values() if "seed" in g.attrs}
    except (OSError, KeyError) as e:
        raise DatasetError(f"{path} cannot be read ({e})") from None


@dataclass
class CheckReport:
    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    writer: int | None = None  # PID of the process writing the dataset now (then it is not checked)

    @property
    def ok(self) -> bool:
        return not self.problems


def _shape_ok(ds: h5py.Dataset, space) -> bool:
    return tuple(ds.shape[1:]) == tuple(space.shape) and np.dtype(ds.dtype) == np.dtype(space.dtype)


def _actions_in_space(acts: np.ndarray, space) -> bool:
    if hasattr(space, "n"):
        return bool(((acts >= space.start) & (acts < space.start + space.n)).all())
    return bool(((acts >= space.low) & (acts <= space.high)).all()) and acts.shape[1:] == space.shape


def _check_episode(g: h5py.Group, i: int, obs_space, act_space, seeds: dict[int, int],
                   problems: list[str]) -> int:
    """Append what is wrong with episode `i` to `problems`; returns its step count."""
    where = f"episode_{i}"
    missing = [k for k in REQUIRED if k not in g]
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
        return 0
    n = len(g["rewards"])
    if int(g.attrs.get("total_steps", -1)) != n:
        problems.append(f"{where}: attr total_steps={g.attrs.get('total_steps')} but {n} rewards")
    if int(g.attrs.get("id", -1)) != i:
        problems.append(f"{where}: attr id={g.attrs.get('id')}, expected {i}")
    seed = g.attrs.get("seed")
    if seed is None:
        problems.append(f"{where}: no seed attribute")
    elif int(seed) in seeds:
        problems.append(f"{where}: seed {int(seed)} duplicates episode_{seeds[int(seed)]}")
    else:
        seeds[int(seed)] = i
    for k in ("actions", "terminations", "truncations"):
        if len(g[k]) != n:
            problems.append(f"{where}: {k} has {len(g[k])} entries, expected {n}")
    for k, sub in obs_space.spaces.items():
        if k not in g["observations"]:
            problems.append(f"{where}: observations/{k} missing")
            continue
        ds = g["observations"][k]
        if len(ds) != n + 1:
            problems.append(f"{where}: observations/{k} has {len(ds)} entries, expected N+1={n + 1}")
        if not _shape_ok(ds, sub):
            problems.append(f"{where}: observations/{k} is {ds.dtype}{ds.shape[1:]}, "
                            f"space says {sub.dtype}{sub.shape}")
        if ds.dtype.kind == "f" and not np.isfinite(ds[()]).all():
            problems.append(f"{where}: observations/{k} holds NaN or inf")
    acts = g["actions"][()]
    if acts.dtype.kind == "f" and not np.isfinite(acts).all():
        problems.append(f"{where}: actions hold NaN or inf")
    elif n and not _actions_in_space(acts, act_space):
        problems.append(f"{where}: actions outside the action space")
    if not np.isfinite(g["rewards"][()]).all():
        problems.append(f"{where}: rewards hold NaN or inf")
    if n and not (bool(g["terminations"][-1]) or bool(g["truncations"][-1])):
        problems.append(f"{where}: last step is neither terminal nor truncated")
    return n


def check(ds_dir: Path) -> CheckReport:
    """Layout, counts, N+1 observations, dtypes and shapes per the stored spaces, no NaN (a dataset
    being written is not judged: `writer` names the process)."""
    rep = CheckReport(Path(ds_dir))
    rep.writer = holder(ds_dir)
    if rep.writer is not None:  # mid-write: counts and the index change under us; nothing to judge yet
        return rep
    data = data_dir(ds_dir)
    try:
        meta = read_metadata(ds_dir)
    except DatasetError as e:
        rep.problems.append(str(e))
        return rep
    if not (data / MAIN_FILE).exists():
        rep.problems.append(f"missing {data / MAIN_FILE}")
        return rep
    for key in ("dataset_id", "total_episodes", "total_steps", "observation_space", "action_space"):
        if key not in meta:
            rep.problems.append(f"metadata.json lacks {key!r}")
    if rep.problems:
        return rep
    try:
        obs_space = deserialize_space(meta["observation_space"])
        act_space = deserialize_space(meta["action_space"])
    except (KeyError, ValueError, TypeError) as e:
        rep.problems.append(f"{data / METADATA_FILE}: the stored spaces cannot be read ({e!r})")
        return rep
    try:
        f = h5py.File(data / MAIN_FILE, "r")
    except OSError as e:
        rep.problems.append(f"{data / MAIN_FILE} does not open: {e}")
        return rep
    with f:
        names = list(f.keys())
        total_steps, seeds = 0, {}
        for i in range(len(names)):
            name = f"episode_{i}"
            try:
                g = f[name]
            except KeyError as e:
                what = "missing" if name not in f else f"its linked file does not open ({str(e).splitlines()[0]})"
                rep.problems.append(f"{name}: {what} (episode ids must be 0..{len(names) - 1})")
                continue
            try:
                n = _check_episode(g, i, obs_space, act_space, seeds, rep.problems)
            except (OSError, KeyError) as e:  # a truncated chunk or broken link inside the episode
                rep.problems.append(f"{name}: cannot be read ({str(e).splitlines()[0]})")
                continue
            total_steps += n
    if meta["total_episodes"] != len(names):
        if meta["total_episodes"] < len(names):
            rep.notes.append(f"metadata.json lists {meta['total_episodes']} episodes, the file holds "
                             f"{len(names)} (a run was interrupted; `generalist collect --resume` updates it)")
        else:
            rep.problems.append(f"metadata.json lists {meta['total_episodes']} episodes, file holds {len(names)}")
    elif meta["total_steps"] != total_steps:
        rep.problems.append(f"metadata.json total_steps={meta['total_steps']}, episodes hold {total_steps}")
    return rep
