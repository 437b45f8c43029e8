"""The `generalist` command: envs | experts | collect | datasets."""

from __future__ import annotations

import argparse
import json
import sys

from generalist.envs import UnknownTaskError, get_task, task_names


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _check_tasks(names: list[str]) -> list[str]:
    for n in names:
        get_task(n)  # raises UnknownTaskError listing known tasks
    return names


# ---------------------------------------------------------------- envs
def cmd_envs(args: argparse.Namespace) -> int:
    from generalist.envs import describe

    names = _check_tasks(args.tasks) if args.tasks else task_names()
    rows = [describe(n) for n in names]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'task':24} {'domain':11} {'observation':24} {'action':16} {'steps':>6}  expert")
    for r in rows:
        obs = ", ".join(f"{k}{tuple(v['shape'])}" for k, v in r["observation"].items())
        act = r["action"]
        a = f"discrete({act['n']})" if act["type"] == "discrete" else f"box{tuple(act['shape'])}"
        print(f"{r['name']:24} {r['domain']:11} {obs:24} {a:16} {r['max_episode_steps']:>6}  {r['expert']}")
    return 0


# ---------------------------------------------------------------- experts
def cmd_experts_score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from generalist.experts import reference

    for task in _check_tasks(args.tasks):
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


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="generalist", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("envs", help="list the task suite")
    e.add_argument("tasks", nargs="*", help="only these tasks (default: all)")
    e.add_argument("--json", action="store_true", help="print a JSON list, one object per task")
    e.set_defaults(func=cmd_envs)

    x = sub.add_parser("experts", help="measure the specialist experts")
    xs = x.add_subparsers(dest="experts_command", required=True)
    s = xs.add_parser("score", help="mean return of the expert and/or random policy per task")
    s.add_argument("tasks", nargs="+", help="task names (see `generalist envs`)")
    s.add_argument("--episodes", type=int, default=50, help="episodes per task and policy (default 50)")
    s.add_argument("--seed", type=int, default=1_000_000, help="first seed; episode k uses seed+k")
    s.add_argument("--policy", nargs="+", choices=["expert", "random"], default=["expert", "random"],
                   help="which policies to score (default both)")
    s.add_argument("--workers", type=int, default=1, help="parallel processes")
    s.add_argument("--save", action="store_true",
                   help="store the result in the package's reference_scores.json")
    s.set_defaults(func=cmd_experts_score)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UnknownTaskError, CLIError) as e:
        print(f"generalist: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
