"""The `generalist` command: envs | experts | collect | datasets | train | eval."""


from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from generalist import wandb_run
from generalist.agent.config import TrainConfig
from generalist.datasets.collect import CollectConfig, check_config, collect
from generalist.datasets.inspect import check, info
from generalist.datasets.layout import find_datasets
from generalist.envs import describe, domains, select, task_names
from generalist.errors import GeneralistError, os_error_sentence
from generalist.eval import report
from generalist.eval.evaluate import EvalConfig, evaluate, progress_bar, resolve
from generalist.eval.task_scores import EVAL_SEED
from generalist.experts import reference
from generalist.flags import add_flags, from_args
from generalist.pipeline import SUITES, RunConfig, run


class CLIError(GeneralistError):
    """A user error: printed as one line, exit status 2."""


def _check_tasks(names: list[str]) -> list[str]:
    """Task names with shell-style patterns expanded ('metaworld-*'); UnknownTaskError names the closest."""
    return select(names)


def _set_planner_budget(words: list[str] | None, tasks: list[str]) -> None:
    """--planner: check the overrides and hand them to the planner (and the worker processes it runs in)."""
    if not words:
        return
    from generalist.experts import planner_tasks
    from generalist.experts.mpc import OVERRIDE_ENV, parse_budget  # lazy: imports mujoco

    if not planner_tasks(tasks):
        raise CLIError("--planner sets the budget of the predictive-sampling planner, which none of these tasks "
                       "uses as its expert (`generalist envs --json` names each task's expert)")
    os.environ[OVERRIDE_ENV] = json.dumps(parse_budget(words))


# ---------------------------------------------------------------- envs
def cmd_envs(args: argparse.Namespace) -> int:
    names = _check_tasks(args.tasks) if args.tasks else task_names()
    if args.domain:
        in_domain = set(task_names(args.domain))
        names = [n for n in names if n in in_domain]
    rows = [describe(n) for n in names]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'task':36} {'domain':11} {'observation':24} {'action':16} {'steps':>6}  expert")
    for r in rows:
        obs = ", ".join(f"{k}{tuple(v['shape'])}" for k, v in r["observation"].items())
        act = r["action"]
        a = f"discrete({act['n']})" if act["type"] == "discrete" else f"box{tuple(act['shape'])}"
        print(f"{r['name']:36} {r['domain']:11} {obs:24} {a:16} {r['max_episode_steps']:>6}  {r['expert']}")
    return 0


# ---------------------------------------------------------------- experts
def cmd_experts_score(args: argparse.Namespace) -> int:
    if args.episodes < 1 or args.seed < 0 or args.workers < 1:
        raise CLIError("--episodes and --workers must be at least 1, --seed >= 0")
    tasks = _check_tasks(args.tasks)
    _set_planner_budget(args.planner, tasks)
    for task in tasks:
        for kind in args.policy:
            bar = tqdm(total=args.episodes, desc=f"{task} {kind}", unit="ep")
            rets: list[float] = []

            def tick(r, bar=bar, rets=rets):
                rets.append(r.ret)
                bar.update(1)
                bar.set_postfix(mean_return=f"{sum(rets) / len(rets):.1f}")

            res = reference.measure(task, kind, args.episodes, args.seed, args.workers, progress=tick)
            bar.close()
            line = f"{task:24} {kind:7} mean {res['mean']:9.2f} ± {res['std']:7.2f} over {res['episodes']} episodes"
            if "success_rate" in res:
                line += f"  success {res['success_rate']:.0%}"
            print(line, flush=True)
            if args.save:
                reference.save(task, kind, res)
    return 0


# ---------------------------------------------------------------- collect
def cmd_collect(args: argparse.Namespace) -> int:
    tasks = _check_tasks(args.tasks)
    _set_planner_budget(args.planner, tasks)
    driver, driver_name = None, ""
    if args.driver:
        from generalist.agent.policy import driver_for  # lazy: torch only for DAgger collection
        driver, driver_name = driver_for(Path(args.driver), tasks)
    cfg = CollectConfig(tasks=tasks, episodes=args.episodes, out=Path(args.out),
                        workers=args.workers, seed=args.seed, resume=args.resume,
                        action_noise=args.action_noise, driver=driver, driver_name=driver_name,
                        driver_prob=args.driver_prob, lockstep=args.lockstep)
    check_config(cfg)
    run = None
    bar = tqdm(total=0, unit="ep", desc="collect", dynamic_ncols=True, disable=True)  # shown once started
    stats = {"steps": 0, "episodes": 0, "t0": time.perf_counter(), "returns": {}}

    def on_start(n_jobs):
        nonlocal run, bar
        run = _wandb_init(args.wandb, "collect", vars(args))
        bar = tqdm(total=n_jobs, unit="ep", desc="collect", dynamic_ncols=True)
        stats["t0"] = time.perf_counter()

    def on_episode(res, ep_id):
        stats["steps"] += res.steps
        stats["episodes"] += 1
        stats["returns"].setdefault(res.task, []).append(res.ret)
        rate = stats["steps"] / (time.perf_counter() - stats["t0"])
        allr = [r for v in stats["returns"].values() for r in v]
        bar.update(1)
        bar.set_postfix(task=res.task, ret=f"{res.ret:.1f}", mean_ret=f"{sum(allr) / len(allr):.1f}",
                        steps_s=f"{rate:.0f}")
        if run is not None:
            run.log({f"{res.task}/return": res.ret, f"{res.task}/episode_steps": res.steps,
                     "steps_per_s": rate, "episodes": stats["episodes"]})

    try:
        writers = collect(cfg, on_episode, on_start)
    finally:
        bar.close()
    elapsed = time.perf_counter() - stats["t0"]
    print(f"\ncollected {stats['episodes']} episodes, {stats['steps']} steps in {elapsed:.1f}s "
          f"({stats['steps'] / max(elapsed, 1e-9):.0f} steps/s) into {cfg.out}")
    _print_info([w.ds_dir for w in writers.values()])
    if run is not None:
        run.finish()
    return 0


def _wandb_init(mode: str, job: str, config: dict):
    """A W&B run in `mode` (offline|online), or None for off. Offline never touches the network."""
    if mode != "off":
        os.environ.setdefault("WANDB_SILENT", "true")
    return wandb_run.start(mode, job, {k: (str(v) if not isinstance(v, int | float | str | bool | list) else v)
                                       for k, v in config.items() if k != "func"})


# ---------------------------------------------------------------- datasets
def _print_info(paths) -> None:
    print(f"{'dataset':40} {'episodes':>8} {'steps':>9} {'return mean ± std':>22} {'size MB':>9}")
    for p in paths:
        i = info(p)
        extra = f"  success {i['success_rate']:.0%}" if "success_rate" in i else ""
        print(f"{i['dataset_id']:40} {i['episodes']:>8} {i['steps']:>9} "
              f"{i['return_mean']:>12.2f} ± {i['return_std']:<8.2f} {i['size_mb']:>9.2f}{extra}")


def _datasets_at(path: str) -> list:
    found = find_datasets(path)
    if not found:
        raise CLIError(f"no dataset found at {path} (expected <dir>/data/metadata.json, "
                       "as written by `generalist collect`)")
    return found


def cmd_datasets_info(args: argparse.Namespace) -> int:
    paths = _datasets_at(args.path)
    if args.json:
        print(json.dumps([info(p) for p in paths], indent=1))
    else:
        _print_info(paths)
    return 0


def cmd_datasets_check(args: argparse.Namespace) -> int:
    bad = 0
    for p in _datasets_at(args.path):
        rep = check(p)
        if rep.writer is not None:
            print(f"busy {p}: being written by process {rep.writer}; check it when that finishes")
            continue
        print(f"{'ok ' if rep.ok else 'BAD'} {p}")
        for n in rep.notes:
            print(f"    note: {n}")
        for prob in rep.problems:
            print(f"    {prob}")
        bad += not rep.ok
    return 1 if bad else 0


# ---------------------------------------------------------------- train
def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that `generalist train ARGS` runs (shared with the pipeline's torchrun line test)."""
    for name in ("steps", "batch", "context", "eval_every", "ckpt_every"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.seed < 0 or args.keep_last < 0:
        raise CLIError("--seed and --keep-last must be >= 0")
    return from_args(TrainConfig, args, warmup=min(args.warmup, max(1, args.steps // 10)))


def cmd_train(args: argparse.Namespace) -> int:
    from generalist.agent.train import train  # torch: only for the commands that train

    final = train(train_config(args), resume=args.resume)
    if int(os.environ.get("RANK", 0)) == 0:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in final.items()}
        print(f"done: {shown}\ncheckpoints in {args.out}/checkpoints")
    return 0


# ---------------------------------------------------------------- eval
def print_scores(scores: dict) -> None:
    """The per-task table and the aggregate line, as the report shows them."""
    print(f"{'task':24} {'mean':>10} {'95% CI':>22} {'expert':>9} {'random':>9} {'normalized':>10}")
    for t, v in scores["tasks"].items():
        lo, hi = v["agent_ci95"]
        print(f"{t:24} {v['agent_mean']:10.2f} {f'[{lo:.1f}, {hi:.1f}]':>22} {v['expert_mean']:9.2f} "
              f"{v['random_mean']:9.2f} {v['normalized']:10.3f}")
    a = scores["aggregate"]
    print(f"aggregate: mean {a['mean']:.3f}, median {a['median']:.3f}, IQM {a['iqm']:.3f}; "
          f"{a['tasks_over_50']}/{a['tasks']} tasks >= 50% of expert, {a['tasks_over_80']} >= 80%")


def cmd_eval(args: argparse.Namespace) -> int:
    cfg = EvalConfig(out=args.out, run=args.run, tasks=args.tasks, episodes=args.episodes, workers=args.workers,
                     seed=args.seed, policy=args.policy, refresh_reference=args.refresh_reference,
                     videos=not args.no_videos, video_frames=args.video_frames, wandb=args.wandb,
                     temperature=args.temperature, prompt=args.prompt, lockstep=args.lockstep)
    _, tasks = resolve(cfg)
    bar, tick = progress_bar(cfg, len(tasks))
    try:
        scores = evaluate(cfg, tick)
    finally:
        bar.close()
    print_scores(scores)
    out = Path(args.out)
    print(f"wrote {out / 'scores.json'}, {out / 'report.md'} and {out / 'report.html'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if not (out / "scores.json").exists():
        raise CLIError(f"no scores.json in {out}; run `generalist eval ... --out {out}` first")
    try:
        scores = json.loads((out / "scores.json").read_text())
    except ValueError as e:
        raise CLIError(f"{out / 'scores.json'} is not valid JSON ({e}); run `generalist eval` again") from None
    md, page = report.write(out, scores)
    print(f"wrote {md} and {page}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = RunConfig(out=args.out, suite=args.suite, data=args.data, workers=args.workers, wandb=args.wandb,
                    compile=args.compile, until=args.until)
    summary = run(cfg)
    if "report" not in summary:  # stopped early (--until)
        return 0
    scores = json.loads((Path(args.out) / "eval" / "scores.json").read_text())
    print_scores(scores)
    secs = ", ".join(f"{k} {v / 60:.1f} min" for k, v in summary["seconds"].items())
    print(f"time: {secs}")
    print(f"report: {summary['report']['html']} (and {summary['report']['markdown']})")
    return 0


# ---------------------------------------------------------------- parser
def _add_planner_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--planner", nargs="+", metavar="KEY=VALUE",
                   help="budget of the predictive-sampling planner (DMC tasks whose expert it is), e.g. samples=32 "
                        "horizon=1.0; keys: samples, horizon (s), knots, noise, reward_every (default: the task's "
                        "budget in generalist/experts/mpc.py)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="generalist", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("envs", help="list the task suite")
    e.add_argument("tasks", nargs="*", help="only these tasks or patterns, e.g. 'metaworld-*' (default: all)")
    e.add_argument("--domain", choices=domains(), help="only the tasks of this domain")
    e.add_argument("--json", action="store_true", help="print a JSON list, one object per task")
    e.set_defaults(func=cmd_envs)

    x = sub.add_parser("experts", help="measure the specialist experts")
    xs = x.add_subparsers(dest="experts_command", required=True)
    s = xs.add_parser("score", help="mean return of the expert and/or random policy per task")
    s.add_argument("tasks", nargs="+", help="task names or quoted patterns, e.g. 'metaworld-*' (see `generalist envs`)")
    s.add_argument("--episodes", type=int, default=50, help="episodes per task and policy (default 50)")
    s.add_argument("--seed", type=int, default=reference.REFERENCE_SEED, help="first seed; episode k uses seed+k")
    s.add_argument("--policy", nargs="+", choices=["expert", "random"], default=["expert", "random"],
                   help="which policies to score (default both)")
    s.add_argument("--workers", type=int, default=1, help="parallel processes")
    s.add_argument("--save", action="store_true",
                   help="store the result in the package's reference_scores.json")
    _add_planner_flag(s)
    s.set_defaults(func=cmd_experts_score)

    c = sub.add_parser("collect", help="record expert episodes into HDF5 datasets (Minari layout)")
    c.add_argument("tasks", nargs="+", help="task names or quoted patterns, e.g. 'metaworld-*' (see `generalist envs`)")
    c.add_argument("--episodes", type=int, required=True, help="episodes per task (N)")
    c.add_argument("--out", required=True, help="dataset root: writes OUT/<task>/expert-v0/data/")
    c.add_argument("--workers", type=int, default=1, help="parallel collection processes (default 1)")
    c.add_argument("--seed", type=int, default=0, help="episode k uses seed SEED+k (default 0)")
    c.add_argument("--resume", action="store_true",
                   help="complete existing datasets to N episodes, skipping seeds already stored")
    c.add_argument("--action-noise", type=float, default=0.0, metavar="SIGMA",
                   help="DART noise: execute expert + N(0, SIGMA^2) (Box) or a random action with "
                        "probability SIGMA (discrete); actions keep the expert's label (default 0)")
    c.add_argument("--driver", metavar="RUN",
                   help="DAgger: the agent of this run (or checkpoint) acts and the expert labels every state it "
                        "visits; with --resume, adds driven episodes to an expert dataset")
    c.add_argument("--driver-prob", type=float, default=1.0, metavar="P",
                   help="with --driver: the share of steps on which the agent's action is executed (the expert's "
                        "on the others; default 1)")
    c.add_argument("--lockstep", type=int, default=16, metavar="N",
                   help="with --driver: driven episodes a worker plays at once, the agent acting for all of them "
                        "in one batched forward pass a step (default 16; fewer need less memory: one env each)")
    c.add_argument("--wandb", choices=["off", "offline", "online"], default="off",
                   help="log per-episode returns and throughput to Weights & Biases")
    _add_planner_flag(c)
    c.set_defaults(func=cmd_collect)

    t = sub.add_parser("train", help="train one transformer agent by imitation on collected datasets")
    add_flags(t, TrainConfig)  # every TrainConfig option, with its default and help (agent/config.py)
    t.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    t.set_defaults(func=cmd_train)

    u = sub.add_parser("run", help="the main job: collect -> train -> eval -> report (resumable: rerun to finish)")
    u.add_argument("--suite", choices=list(SUITES), default=RunConfig.suite,
                   help="; ".join(f"{name}: {suite.description}" for name, suite in SUITES.items()))
    u.add_argument("--out", required=True, help="run root: OUT/data, OUT/run, OUT/eval/report.html, OUT/run.json")
    u.add_argument("--data", help="dataset root to reuse and complete (default OUT/data)")
    u.add_argument("--workers", type=int, default=2, help="processes for collection and evaluation (default 2)")
    u.add_argument("--compile", action="store_true", help="torch.compile the model (GPU runs)")
    u.add_argument("--until", choices=["collect", "train", "report"], default="report",
                   help="stop after this stage (collect: then train with torchrun on several GPUs, see README)")
    u.add_argument("--wandb", choices=["off", "offline", "online"], default="off",
                   help="log training curves and the evaluation report to Weights & Biases")
    u.set_defaults(func=cmd_run)

    v = sub.add_parser("eval", help="score a policy per task against the expert and random references")
    v.add_argument("run", nargs="?", help="run directory or checkpoint (for --policy agent)")
    v.add_argument("--out", required=True, help="directory for scores.json, report.md, report.html, videos/")
    v.add_argument("--tasks", nargs="+",
                   help="tasks or quoted patterns, e.g. 'metaworld-*' (default: every task the checkpoint was trained on)")
    v.add_argument("--episodes", type=int, default=50, help="episodes per task (default 50, as Gato)")
    v.add_argument("--seed", type=int, default=EVAL_SEED, help="first seed; no dataset uses them by default")
    v.add_argument("--policy", choices=["agent", "expert", "random"], default="agent",
                   help="what to evaluate: the checkpoint's agent, or the expert / random references")
    v.add_argument("--refresh-reference", action="store_true",
                   help="re-measure expert and random on the same seeds instead of the stored references")
    v.add_argument("--workers", type=int, default=1, help="parallel processes over tasks and episodes")
    v.add_argument("--no-videos", action="store_true", help="skip the per-task agent-vs-expert GIFs")
    v.add_argument("--temperature", type=float, default=0.0,
                   help="agent: 0 decodes greedily; > 0 samples action tokens at this temperature (seeded per episode)")
    v.add_argument("--prompt", type=int, default=0, metavar="N",
                   help="agent: start each episode's context with the last N steps of a held-out expert episode "
                        "(Gato's prompting; at most what the context holds beside the agent's memory)")
    v.add_argument("--lockstep", type=int, default=10, metavar="N",
                   help="agent: play N episodes of a task at once in each worker, one batched forward pass a step "
                        "(default 10; 1 plays them one by one: less memory, since each episode has its own env)")
    v.add_argument("--video-frames", type=int, default=250, help="frames per video (default 250)")
    v.add_argument("--wandb", choices=["off", "offline", "online"], default="off",
                   help="also log the table, charts and videos to Weights & Biases")
    v.set_defaults(func=cmd_eval)

    r = sub.add_parser("report", help="rebuild report.md and report.html from an eval directory's scores.json")
    r.add_argument("dir", help="the --out directory of `generalist eval`")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("datasets", help="inspect datasets")
    ds = d.add_subparsers(dest="datasets_command", required=True)
    i = ds.add_parser("info", help="episodes, steps, return statistics and size")
    i.add_argument("path", help="a dataset directory, or a root holding several")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_datasets_info)
    k = ds.add_parser("check", help="verify layout, counts, N+1 observations, no NaN (exit 1 if broken)")
    k.add_argument("path", help="a dataset directory, or a root holding several")
    k.set_defaults(func=cmd_datasets_check)
    return p


def _fail(message: str) -> int:
    if "\nOriginal Traceback" in message:  # raised in a DataLoader worker: torch prepends its traceback
        message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
    print(f"generalist: error: {message}".replace("\n", " "), file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run one command. A GeneralistError, or an OS error the user can fix (full disk, read-only
    mount, a file where a directory should be), is one line on stderr and exit status 2; anything
    else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GeneralistError as e:
        return _fail(str(e))
    except OSError as e:
        msg = os_error_sentence(e)
        if msg is None:
            raise
        return _fail(msg)


if __name__ == "__main__":
    raise SystemExit(main())
