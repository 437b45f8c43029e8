"""The prepared GPU check: train `small` (and `base`) in bf16, eager and compiled, and report the numbers.

Run it through `scripts/gpu_check.sh` (which installs the carried gymnasium wheels if missing). Each
run is `generalist train` itself (`generalist.agent.train.train`) with the `full` suite's recipe, on
the carried state-task datasets, for a fixed number of steps. Per run it reports real slots ("tokens")
per second, the median step time, peak GPU memory, model FLOPs utilization against the card's dense
bf16 peak (formula: generalist/agent/flops.py) and the share of step time spent waiting on the
DataLoader; the first `--warmup-steps` steps (compilation, allocator warm-up) are left out.

Written to OUT (default $OUT, the folder a lent device returns): `gpu_check.json` (every number, the
machine, the formula), `gpu_check.txt` (the table) and `checkpoint/` (the last compiled run of the
first config, weights cast to bf16 in shards of <= 15 MiB; rebuild it with
`python -m generalist.agent.ckpt_shards join OUT/checkpoint RUN`, then `generalist eval RUN`).

`--dry-run`: the same path on CPU with `tiny` and a few steps (what tests/test_gpu_check.py runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "data" / "gpu-check"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny, a few steps: checks the path, not the GPU")
    ap.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)], help="dataset roots (default data/gpu-check)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "out/gpu-check", help="where the results go (default $OUT)")
    ap.add_argument("--configs", help="model sizes, in order (default small,base; dry run: tiny)")
    ap.add_argument("--steps", type=int, help="training steps per run (default 300; dry run: 4)")
    ap.add_argument("--warmup-steps", type=int, help="first steps left out of the numbers (default 25; dry run: 1)")
    ap.add_argument("--batch", type=int, help="windows per step (default 1024, the full suite's; dry run: 8)")
    ap.add_argument("--workers", type=int, help="DataLoader processes (default min(8, cores - 2); dry run: 0)")
    ap.add_argument("--modes", default="eager,compile", help="eager and/or compile (default both)")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="skip a run expected to end past this many seconds (default 420: the check fits 8 minutes)")
    ap.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the card, if the built-in table lacks it")
    ap.add_argument("--work", help="scratch folder for the runs (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    dry = args.dry_run
    args.configs = (args.configs or ("tiny" if dry else "small,base")).split(",")
    args.steps = args.steps or (4 if dry else 300)
    args.warmup_steps = args.warmup_steps if args.warmup_steps is not None else (1 if dry else 25)
    args.batch = args.batch or (8 if dry else 1024)
    args.workers = args.workers if args.workers is not None else (0 if dry else max(1, min(8, (os.cpu_count() or 4) - 2)))
    args.modes = args.modes.split(",")
    if not 0 <= args.warmup_steps < args.steps or set(args.modes) - {"eager", "compile"}:
        ap.error("need 0 <= --warmup-steps < --steps and --modes from eager,compile")
    return args


def machine(torch) -> dict[str, Any]:
    """What ran the check: GPU, torch, CUDA, CPU cores, Python, and the source revision if known."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    cuda = torch.cuda.is_available()
    return {"gpu": torch.cuda.get_device_name(0) if cuda else None,
            "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cpu_cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(), "git_revision": rev}


def summarize(logs: list[dict[str, float]], warmup: int, model_cfg, context: int, peak: float | None) -> dict[str, Any]:
    """Throughput, step time, data-wait share and MFU over the steps after the warm-up."""
    from generalist.agent.flops import step_flops

    kept = logs[warmup:]
    step_s = [r["step_s"] for r in kept]
    total_s = sum(step_s)
    slots = sum(r["slots"] for r in kept)
    flops = sum(step_flops(model_cfg, context, r["slots"], r["action_tokens"]) for r in kept)
    achieved = flops / total_s
    return {"steps_measured": len(kept), "tokens_per_s": slots / total_s, "step_s_median": statistics.median(step_s),
            "step_s_mean": total_s / len(kept), "dataloader_wait_share": sum(r["data_s"] for r in kept) / total_s,
            "model_tflops_per_s": achieved / 1e12, "mfu": achieved / peak if peak else None,
            "slots_per_step": slots / len(kept), "warmup_s": sum(r["step_s"] for r in logs[:warmup]),
            "final_loss": logs[-1]["loss"]}


def run_one(args, torch, config: str, mode: str, work: Path, peak: float | None) -> dict[str, Any]:
    """Train one (config, mode) for args.steps steps; its numbers and its run directory."""
    from generalist.agent.model import SIZES, ModelConfig
    from generalist.agent.train import TrainConfig, train
    from generalist.pipeline import SUITES

    recipe = {**SUITES["full"].train, "config": config, "steps": args.steps, "batch": args.batch,
              "workers": args.workers, "eval_every": args.steps, "ckpt_every": args.steps, "keep_last": 1,
              "warmup": min(SUITES["full"].train["warmup"], max(1, args.steps // 10)), "compile": mode == "compile"}
    run_dir = work / f"{config}-{mode}"
    cfg = TrainConfig(data=args.data, out=str(run_dir), **recipe)
    logs: list[dict[str, float]] = []
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    train(cfg, on_log=logs.append)
    wall = time.perf_counter() - t0
    model_cfg = ModelConfig(**{**SIZES[config].to_dict(), "max_seq_len": cfg.context})
    out = {"config": config, "mode": mode, "dtype": "bf16 autocast" if torch.cuda.is_available() else "fp32 (CPU)",
           "steps": args.steps, "batch_windows": cfg.batch, "context": cfg.context, "workers": cfg.workers,
           "wall_s": wall, **summarize(logs, args.warmup_steps, model_cfg, cfg.context, peak)}
    if torch.cuda.is_available():
        out["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # the process so far
    out["run_dir"] = str(run_dir)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'config':7} {'mode':8} {'tokens/s':>11} {'step ms':>8} {'data wait':>9} {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>8}"
    lines = [head]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['config']:7} {r['mode']:8} skipped: {r['skipped']}")
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        mem = f"{r['peak_gpu_memory_gib']:.2f}" if "peak_gpu_memory_gib" in r else "-"
        lines.append(f"{r['config']:7} {r['mode']:8} {r['tokens_per_s']:11,.0f} {r['step_s_median'] * 1e3:8.1f} "
                     f"{r['dataloader_wait_share']:9.1%} {r['model_tflops_per_s']:8.2f} {mfu:>6} {mem:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch initializes CUDA
    sys.path.insert(0, str(REPO))
    import torch

    from generalist.agent import checkpoint, ckpt_shards
    from generalist.agent.flops import peak_bf16
    from generalist.errors import GeneralistError

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device visible; use --dry-run to check the path on CPU", file=sys.stderr)
        return 2
    missing = [d for d in args.data if not Path(d).exists()]
    if missing:
        print(f"gpu_check: error: no datasets at {', '.join(missing)}; make them with the command in README "
              "('Training on a GPU')", file=sys.stderr)
        return 2
    info = machine(torch)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else (peak_bf16(info["gpu"]) if info["gpu"] else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    t_start, rows = time.perf_counter(), []
    result: dict[str, Any] = {"machine": info, "peak_bf16_tflops": peak / 1e12 if peak else None,
                              "flops_formula": "6*N_blocks*S + 6*d*vocab*A + 12*L*d*T*S (generalist/agent/flops.py)",
                              "data": args.data, "dry_run": args.dry_run, "runs": rows, "returned_checkpoint": None}

    def write() -> str:
        """Write what is known so far: a check killed by its time limit still returns the finished runs."""
        result["total_s"] = time.perf_counter() - t_start
        (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
        text = f"{info['gpu'] or 'CPU (dry run)'}, torch {info['torch']}, CUDA {info['cuda']}\n{table(rows)}\n"
        (out / "gpu_check.txt").write_text(text)
        return text

    run_dirs: dict[tuple[str, str], Path] = {}
    try:
        for config in args.configs:
            for mode in args.modes:
                elapsed = time.perf_counter() - t_start
                # expected: 1.5x the last run of this mode (a bigger model; compilation dominates compile runs)
                last = [r["wall_s"] for r in rows if r.get("mode") == mode and "wall_s" in r][-1:]
                expected = 1.5 * last[0] if last else 0.0
                if elapsed + expected > args.budget_s:
                    rows.append({"config": config, "mode": mode, "skipped": f"time budget ({elapsed:.0f} s used, "
                                 f"~{expected:.0f} s expected, --budget-s {args.budget_s:.0f})"})
                    continue
                print(f"gpu_check: {config} {mode}, {args.steps} steps of {args.batch} windows", flush=True)
                try:
                    row = run_one(args, torch, config, mode, work, peak)
                except GeneralistError:
                    raise  # bad data or flags: every run would fail the same way
                except Exception as e:  # one failed run (an OOM, a compiler error) must not lose the rest
                    traceback.print_exc()
                    row = {"config": config, "mode": mode, "skipped": f"failed: {type(e).__name__}: {e}"[:500]}
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                run_dirs[(config, mode)] = Path(row.pop("run_dir", work / "none"))
                rows.append(row)
                print(table(rows[-1:]), flush=True)
                write()
        done = [r for r in rows if "skipped" not in r]
        back = [r for r in done if r["config"] == args.configs[0]][-1:] or done[-1:]
        if back:
            ckpt = checkpoint.latest(run_dirs[(back[0]["config"], back[0]["mode"])])
            shutil.rmtree(out / "checkpoint", ignore_errors=True)
            files = [str(p.relative_to(out)) for p in ckpt_shards.split(ckpt, out / "checkpoint")]
            result["returned_checkpoint"] = {"from": f"{back[0]['config']}-{back[0]['mode']}", "files": files}
        print(write() + f"gpu_check: results in {out}", flush=True)
        if not done:
            print("gpu_check: error: no run finished (see above)", file=sys.stderr)
            return 1
    except GeneralistError as e:
        print(f"gpu_check: error: {e}", file=sys.stderr)
        return 2
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
