"""`datasets info` and `datasets check`: what a dataset holds, and whether it is whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from generalist.datasets.layout import MAIN_FILE, METADATA_FILE, data_dir, deserialize_space, read_metadata

REQUIRED = ("observations", "actions", "rewards", "terminations", "truncations")


def _size_bytes(ds_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir(ds_dir).rglob("*") if p.is_file())


def info(ds_dir: Path) -> dict[str, Any]:
    """Episodes, steps, return statistics and size of one dataset (reads attributes, not arrays)."""
    meta = read_metadata(ds_dir)
    returns, steps, seeds, success = [], [], [], []
    with h5py.File(data_dir(ds_dir) / MAIN_FILE, "r") as f:
        for i in range(len(f.keys())):
            a = f[f"episode_{i}"].attrs
            returns.append(float(a.get("return", np.nan)))
            steps.append(int(a["total_steps"]))
            seeds.append(int(a["seed"]))
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


@dataclass
class CheckReport:
    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _shape_ok(ds: h5py.Dataset, space) -> bool:
    return tuple(ds.shape[1:]) == tuple(space.shape) and np.dtype(ds.dtype) == np.dtype(space.dtype)


def _actions_in_space(acts: np.ndarray, space) -> bool:
    if hasattr(space, "n"):
        return bool(((acts >= space.start) & (acts < space.start + space.n)).all())
    return bool(((acts >= space.low) & (acts <= space.high)).all()) and acts.shape[1:] == space.shape


def check(ds_dir: Path) -> CheckReport:
    """Layout, counts, N+1 observations, dtypes and shapes per the stored spaces, no NaN."""
    rep = CheckReport(Path(ds_dir))
    data = data_dir(ds_dir)
    if not (data / METADATA_FILE).exists() or not (data / MAIN_FILE).exists():
        rep.problems.append(f"missing {data / METADATA_FILE} or {data / MAIN_FILE}")
        return rep
    meta = read_metadata(ds_dir)
    for key in ("dataset_id", "total_episodes", "total_steps", "observation_space", "action_space"):
        if key not in meta:
            rep.problems.append(f"metadata.json lacks {key!r}")
    if rep.problems:
        return rep
    obs_space = deserialize_space(meta["observation_space"])
    act_space = deserialize_space(meta["action_space"])
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
            except KeyError:
                rep.problems.append(f"{name}: missing (episode ids must be 0..{len(names) - 1})")
                continue
            where = f"{name}"
            missing = [k for k in REQUIRED if k not in g]
            if missing:
                rep.problems.append(f"{where}: missing {', '.join(missing)}")
                continue
            n = len(g["rewards"])
            if int(g.attrs.get("total_steps", -1)) != n:
                rep.problems.append(f"{where}: attr total_steps={g.attrs.get('total_steps')} but {n} rewards")
            if int(g.attrs.get("id", -1)) != i:
                rep.problems.append(f"{where}: attr id={g.attrs.get('id')}, expected {i}")
            seed = g.attrs.get("seed")
            if seed is None:
                rep.problems.append(f"{where}: no seed attribute")
            elif int(seed) in seeds:
                rep.problems.append(f"{where}: seed {int(seed)} duplicates episode_{seeds[int(seed)]}")
            else:
                seeds[int(seed)] = i
            for k in ("actions", "terminations", "truncations"):
                if len(g[k]) != n:
                    rep.problems.append(f"{where}: {k} has {len(g[k])} entries, expected {n}")
            for k, sub in obs_space.spaces.items():
                if k not in g["observations"]:
                    rep.problems.append(f"{where}: observations/{k} missing")
                    continue
                ds = g["observations"][k]
                if len(ds) != n + 1:
                    rep.problems.append(f"{where}: observations/{k} has {len(ds)} entries, expected N+1={n + 1}")
                if not _shape_ok(ds, sub):
                    rep.problems.append(f"{where}: observations/{k} is {ds.dtype}{ds.shape[1:]}, "
                                        f"space says {sub.dtype}{sub.shape}")
                if ds.dtype.kind == "f" and not np.isfinite(ds[()]).all():
                    rep.problems.append(f"{where}: observations/{k} holds NaN or inf")
            acts = g["actions"][()]
            if acts.dtype.kind == "f" and not np.isfinite(acts).all():
                rep.problems.append(f"{where}: actions hold NaN or inf")
            elif n and not _actions_in_space(acts, act_space):
                rep.problems.append(f"{where}: actions outside the action space")
            if not np.isfinite(g["rewards"][()]).all():
                rep.problems.append(f"{where}: rewards hold NaN or inf")
            if n and not (bool(g["terminations"][-1]) or bool(g["truncations"][-1])):
                rep.problems.append(f"{where}: last step is neither terminal nor truncated")
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
