"""The main job, `generalist run`: collect -> train -> evaluate -> report, in one resumable command.

Every stage leaves its result on disk and is skipped (or resumed) when run again: datasets are
completed with `--resume` semantics, training continues from its last checkpoint, an evaluation
that wrote scores.json is kept and only its report is rebuilt. So a crashed or interrupted run
is finished by running the same command again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from generalist import envs
from generalist.agent.config import TrainConfig
from generalist.datasets.collect import CollectConfig, collect
from generalist.datasets.layout import DEFAULT_NAME, dataset_dir, read_metadata, write_json_atomic
from generalist.errors import GeneralistError
from generalist.eval.evaluate import EvalConfig, evaluate, progress_bar
from generalist.eval.report import write as write_report
from generalist.experts import planner_tasks
from generalist.flags import command_line, to_flags
from generalist.lock import WriterLock


@dataclass(frozen=True)
class Dagger:
    """DAgger rounds for a task: in each, a clone of the task alone (the suite's recipe, `steps` x `batch`
    windows on the task's dataset as it stands) plays `episodes` more episodes while the expert labels every
    state it visits. They join the task's dataset, so that training (and the next round's clone) sees the
    expert's corrections from the states a clone drifts into, not only the expert's own."""

    episodes: int     # driven episodes each round adds to the task's dataset
    steps: int = 400  # the driver's training steps
    batch: int = 256  # the driver's windows per step
    rounds: int = 1   # rounds, each with a new driver trained on the aggregate of the ones before

    def __post_init__(self) -> None:
        if min(self.episodes, self.steps, self.batch, self.rounds) < 1:
            raise ValueError(f"every field of a DAgger round must be at least 1: {self}")


@dataclass(frozen=True)
class Suite:
    """What one `generalist run --suite NAME` does."""

    description: str
    episodes: dict[str, int]                      # task -> expert episodes to collect
    train: dict[str, Any] = field(default_factory=dict)   # TrainConfig options (flags of `generalist train`)
    eval_episodes: int = 50
    video_frames: int = 250
    action_noise: dict[str, float] = field(default_factory=dict)  # task -> DART noise when collecting
    eval_temperature: float = 0.0                                  # agent decoding: 0 greedy, > 0 sampled
    dagger: dict[str, Dagger] = field(default_factory=dict)        # task -> its DAgger rounds, run before training

    def __post_init__(self) -> None:
        to_flags(TrainConfig, self.train)  # every key must be a `generalist train` option (ConfigError)
        unknown = set(self.dagger) - set(self.episodes)
        if unknown:
            raise ValueError(f"dagger names tasks the suite does not collect: {', '.join(sorted(unknown))}")
        noisy = sorted(t for t in self.dagger if self.action_noise.get(t, 0.0))
        if noisy:  # a dataset keeps one noise level, and a driven episode executes the driver's actions
            raise ValueError(f"dagger and action_noise on the same task: {', '.join(noisy)}; choose one")


_PLANNED = planner_tasks(envs.task_names("dmc"))  # DMC tasks whose expert is the predictive-sampling planner

SUITES: dict[str, Suite] = {
    # Every domain, sized for a 2-core CPU in <= 30 minutes (measured: README). The recipe is what the
    # distillation ablations picked (DEVELOPERS.md, "Distillation recipe"): one slot per observation
    # (state vector z-scored per task, image through a conv encoder), a short memory (1 cartpole timestep,
    # 2 of Meta-World, 2 of Pong, 4 of the maze), hidden actions, HL-Gauss action loss with the
    # expectation decoded, the loss averaged per timestep (not per action token), rare discrete actions
    # up-weighted, DART noise on Meta-World, most windows for cartpole (the task that needs the most samples), an
    # input projection / conv encoder per observation shape (cartpole higher in 3 of 3 same-seed pairs), acting
    # with a moving average of the weights (cartpole +0.07, +0.40, -0.07 in 3 paired runs), frames centred on
    # their task's mean frame (Pong's teacher-forced AUC 0.48 -> 0.95) and Pong's last 4 images stacked into one
    # slot (2 timesteps cost 2 conv passes instead of 8, so Pong gets twice the windows for half the conv time).
    # Cartpole was sample-starved (per-task BC sees ~25x its states): batch 620 with cartpole at weight 12.5
    # keeps the other tasks' ~120 windows a step and gives cartpole ~500 instead of ~200 (its windows are two
    # slots and no conv pass: step time +30%); cartpole 0.74 -> 0.93 (DEVELOPERS.md, run CB1). Cartpole's
    # failures are missed catches from states the expert never visits: one DAgger round (a cartpole-only clone
    # drives 20 more episodes, the expert labels them) gave cartpole-only clones 1.01 and 0.92 against 0.83 and
    # 0.31 for 20 more expert episodes instead, same seeds and steps (DEVELOPERS.md, "DAgger for cartpole").
    # Pong's clone fits the expert's frames but loses in closed loop (it thrashes in states the expert never
    # visits): two DAgger rounds of 24 driven episodes, each driver a Pong-only clone of 200 x 64 windows
    # (~45 s), took the suite's Pong from -20.75 to -20.0 (one round) and -18.45 [-19.9, -16.0] (two; random: -20.4)
    # on the same data otherwise (DEVELOPERS.md, "DAgger for Pong"). The maze's clone turns on the spot (73% of
    # its steps, the expert's 14%): one round of 6 episodes driven by a maze-only clone of 100 x 64 windows (~1.5
    # min) took the maze from 0.20 to 1.35 targets a game, intervals apart, on the same data and seed (a round of
    # 10 episodes, 200 x 64, did the same in two of two pairs; DEVELOPERS.md, "A maze DAgger round").
    "quick": Suite(
        description="5 tasks (every domain), tiny model, CPU-sized: about 29 minutes on 2 cores",
        episodes={"atari-pong": 12, "memorymaze-9x9": 10, "dmc-cartpole-swingup": 100, "metaworld-reach": 100,
                  "metaworld-drawer-open": 100},
        action_noise={"metaworld-reach": 0.2, "metaworld-drawer-open": 0.2},
        train=dict(config="tiny", steps=1400, batch=620, context=24, max_timesteps=4,
                   task_timesteps={"dmc-cartpole-swingup": 1, "metaworld-reach": 2, "metaworld-drawer-open": 2,
                                   "atari-pong": 2},
                   lr=1e-3, warmup=50, eval_every=200, ckpt_every=250, prompt_prob=0.0, hide_actions=True,
                   obs_encoding="vector", obs_norm="zscore", action_loss="hlgauss", balance_actions=0.75,
                   loss_unit="timestep", ema=0.995, input_encoders="per-shape", frame_norm="center",
                   frame_stack={"atari-pong": 4},
                   task_weights={"atari-pong": 0.8, "memorymaze-9x9": 0.25, "dmc-cartpole-swingup": 12.5}),
        dagger={"dmc-cartpole-swingup": Dagger(20), "atari-pong": Dagger(24, steps=200, batch=64, rounds=2),
                "memorymaze-9x9": Dagger(6, steps=100, batch=64)},
        eval_episodes=20, video_frames=200),
    # The whole suite, sized for one GPU (or several with torchrun): see README for time and memory. 100
    # episodes of the image tasks and of the planner's DMC tasks (an expert episode costs 20-60 s of planning
    # on one core: 100k steps a task), 300 of the other state tasks, and the DAgger rounds in the quick
    # suite's proportions (cartpole 60 driven to 300 expert episodes, each maze 60 to 100). The
    # quick suite's recipe at GPU scale: more data, a wider model, more windows per step, and a longer
    # memory for the pixel tasks (context 24: 4 Meta-World timesteps, 3 of walker, 8 of the Atari games (each
    # timestep's frame holds its last 4 images) and of the maze).
    "full": Suite(
        description=f"all {len(envs.TASKS)} tasks, small model, GPU-sized",
        episodes={t: (100 if "image" in spec.observation_space.spaces or t in _PLANNED else 300)
                  for t, spec in envs.TASKS.items()},
        action_noise={t: 0.2 for t in envs.TASKS if envs.get_task(t).domain == "metaworld"},
        train=dict(config="small", steps=20_000, batch=1024, context=24, max_timesteps=8, lr=3e-4, warmup=1000,
                   eval_every=1000, ckpt_every=1000, prompt_prob=0.0, workers=4, hide_actions=True,
                   obs_encoding="vector", obs_norm="zscore", action_loss="hlgauss", balance_actions=0.75,
                   loss_unit="timestep", ema=0.999, input_encoders="per-shape", frame_norm="center",
                   frame_stack={t: 4 for t in envs.TASKS if envs.get_task(t).domain == "atari"}),
        dagger={"dmc-cartpole-swingup": Dagger(60),
                **{t: Dagger(50, steps=1000, batch=256, rounds=2) for t in envs.TASKS
                   if envs.get_task(t).domain == "atari"},
                **{t: Dagger(60, steps=500, batch=256) for t in envs.TASKS
                   if envs.get_task(t).domain == "memorymaze"}},
        eval_episodes=50, video_frames=250),
}


@dataclass
class RunConfig:
    out: str
    suite: str = "quick"
    data: str | None = None        # dataset root to reuse and complete (default OUT/data)
    workers: int = 2               # processes for collection and evaluation
    wandb: str = "off"
    compile: bool = False
    until: str = "report"          # stop after this stage: collect | train | report


STAGES = ("collect", "train", "report")


def data_root(cfg: RunConfig) -> Path:
    """Where the run's datasets live: --data, else OUT/data."""
    return Path(cfg.data) if cfg.data else Path(cfg.out) / "data"


def suite_datasets(cfg: RunConfig) -> list[Path]:
    """The suite's dataset directories: training reads these only, not everything under the root."""
    root = data_root(cfg)
    return [dataset_dir(root, t, DEFAULT_NAME) for t in SUITES[cfg.suite].episodes]


def train_options(cfg: RunConfig) -> dict[str, Any]:
    """The TrainConfig options this run trains with: the suite's, its datasets and run directory, and the
    run's --compile and --wandb (when on). `run` and the torchrun line both read them from here."""
    opts = {"data": [str(d) for d in suite_datasets(cfg)], "out": str(Path(cfg.out) / "run"),
            **SUITES[cfg.suite].train}
    if cfg.compile:
        opts["compile"] = True
    if cfg.wandb != "off":
        opts["wandb"] = cfg.wandb
    return opts


def train_command(cfg: RunConfig, nproc: int = 8) -> str:
    """The torchrun line that trains this run's model on `nproc` GPUs exactly as `generalist run` would;
    rerunning `generalist run` afterwards sees the finished checkpoint and goes on to evaluation."""
    words = to_flags(TrainConfig, train_options(cfg))
    return f"torchrun --nproc_per_node={nproc} -m generalist train " + command_line(words)


def driver_options(cfg: RunConfig, task: str, round_: int = 1) -> dict[str, Any]:
    """TrainConfig options of the single-task clone that drives `task`'s DAgger round `round_`: the suite's
    recipe on that task's dataset alone, the round's steps x batch windows, in OUT/dagger/TASK/round-K."""
    suite = SUITES[cfg.suite]
    rnd = suite.dagger[task]
    steps = rnd.steps
    opts = {**suite.train, "data": [str(dataset_dir(data_root(cfg), task, DEFAULT_NAME))],
            "out": str(Path(cfg.out) / "dagger" / task / f"round-{round_}"), "steps": steps, "batch": rnd.batch,
            "warmup": min(suite.train.get("warmup", 0), steps // 4), "eval_every": steps, "ckpt_every": steps}
    if cfg.compile:
        opts["compile"] = True
    return opts


def _dagger_rounds(cfg: RunConfig, task: str, log: Callable[[str], None]) -> None:
    """Run `task`'s DAgger rounds in turn: train the round's driver (or keep the finished one), then complete
    the dataset with its driven episodes (seeds after the ones stored). A round is done when the dataset holds
    its episodes, so a rerun after a crash resumes whichever part was cut short."""
    from generalist.agent import checkpoint
    from generalist.agent.policy import driver_for
    from generalist.agent.train import train

    suite = SUITES[cfg.suite]
    rnd = suite.dagger[task]
    root = data_root(cfg)
    for k in range(1, rnd.rounds + 1):
        total = suite.episodes[task] + k * rnd.episodes
        if read_metadata(dataset_dir(root, task, DEFAULT_NAME)).get("total_episodes", 0) >= total:
            log(f"{task}: round {k} done ({total} episodes, {k * rnd.episodes} of them driven)")
            continue
        opts = driver_options(cfg, task, k)
        run_dir = Path(opts["out"])
        last = checkpoint.latest(run_dir)
        if last is None or checkpoint.step_of(last) < rnd.steps:
            log(f"{task}: round {k}: training the driver ({rnd.steps} steps on the task's dataset) -> {run_dir}")
            train(TrainConfig(**opts), resume=last is not None)
        driver, name = driver_for(run_dir, [task])
        bar = tqdm(total=0, unit="ep", desc=f"dagger {task} round {k} (+{rnd.episodes} driven)", dynamic_ncols=True)
        collect(CollectConfig(tasks=[task], episodes=total, out=root, workers=cfg.workers, resume=True,
                              driver=driver, driver_name=name),
                lambda res, _ep, bar=bar: bar.update(1), lambda jobs, bar=bar: bar.reset(total=jobs))
        bar.close()


class RunError(GeneralistError):
    """Bad input to `generalist run`; the message says what to do."""


def _stage(name: str, log: Callable[[str], None]):
    log(f"== {name}")
    return time.perf_counter()


def run(cfg: RunConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or finish) every stage; returns the summary also written to OUT/run.json. OUT is locked
    for the whole run (a second `generalist run` on it is refused)."""
    if cfg.suite not in SUITES:
        raise RunError(f"unknown suite {cfg.suite!r}; choose from {', '.join(SUITES)}")
    if cfg.workers < 1:
        raise RunError("--workers must be at least 1")
    if cfg.until not in STAGES:
        raise RunError(f"--until must be one of {', '.join(STAGES)}")
    with WriterLock(Path(cfg.out), "run"):
        return _run(cfg, log)


def _run(cfg: RunConfig, log: Callable[[str], None]) -> dict[str, Any]:
    # lazy: torch, which the other commands (and `generalist run --help`) do not need
    from generalist.agent import checkpoint
    from generalist.agent.train import train

    suite = SUITES[cfg.suite]
    out = Path(cfg.out)
    data = data_root(cfg)
    summary_path = out / "run.json"
    summary: dict[str, Any] = {}
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError as e:
            raise RunError(f"{summary_path} is not valid JSON ({e}); move it away to start the run over") from None
        if not isinstance(summary, dict):
            raise RunError(f"{summary_path} is not a JSON object; move it away to start the run over")
    if summary.get("suite", cfg.suite) != cfg.suite:
        raise RunError(f"{out} holds a `{summary['suite']}` run; use another --out for `{cfg.suite}`")
    summary.update(suite=cfg.suite, config=asdict(cfg), suite_spec=asdict(suite))
    summary.setdefault("seconds", {})
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        write_json_atomic(summary_path, summary)

    # 1. collect: complete each task's dataset to its episode count (existing episodes are kept)
    t0 = _stage(f"collect -> {data}", log)
    by_count: dict[tuple[int, float], list[str]] = {}  # one collection per (episodes, noise) group
    for task, n in suite.episodes.items():
        by_count.setdefault((n, suite.action_noise.get(task, 0.0)), []).append(task)
    for (n, noise), tasks in by_count.items():
        bar = tqdm(total=0, unit="ep", desc=f"collect ({n} episodes per task)", dynamic_ncols=True)

        def on_episode(res: Any, _ep: Any, bar: Any = bar) -> None:
            bar.update(1)
            bar.set_postfix(task=res.task, ret=f"{res.ret:.1f}")

        collect(CollectConfig(tasks=tasks, episodes=n, out=data, workers=cfg.workers, resume=True,
                              action_noise=noise), on_episode,
                lambda jobs, bar=bar: bar.reset(total=jobs))
        bar.close()
    summary["seconds"]["collect"] = summary["seconds"].get("collect", 0) + time.perf_counter() - t0
    save()
    if suite.dagger:
        t0 = _stage("dagger rounds", log)
        for task in suite.dagger:
            _dagger_rounds(cfg, task, log)
        summary["seconds"]["dagger"] = summary["seconds"].get("dagger", 0) + time.perf_counter() - t0
        save()
    if cfg.until == "collect":
        log(f"datasets ready in {data}; to train on several GPUs:\n  {train_command(cfg)}\n"
            f"then run `generalist run --suite {cfg.suite} --out {out}` again to evaluate and report")
        return summary

    # 2. train: fresh, resumed from the last checkpoint, or skipped when finished
    run_dir = out / "run"
    tcfg = TrainConfig(**train_options(cfg))
    t0 = _stage(f"train -> {run_dir}", log)
    last = checkpoint.latest(run_dir)
    if last is not None and checkpoint.step_of(last) >= tcfg.steps:
        log(f"training already finished ({last}); skipping")
    else:
        final = train(tcfg, resume=bool(checkpoint.all_checkpoints(run_dir)))
        summary["train_final"] = final
        summary["seconds"]["train"] = summary["seconds"].get("train", 0) + time.perf_counter() - t0
        save()
    if cfg.until == "train":
        return summary

    # 3. evaluate (kept if it already finished), 4. report
    eval_dir = out / "eval"
    t0 = _stage(f"eval -> {eval_dir}", log)
    if (eval_dir / "scores.json").exists():
        log(f"evaluation already finished ({eval_dir / 'scores.json'}); rebuilding the report only")
        md, page = write_report(eval_dir)
        scores = json.loads((eval_dir / "scores.json").read_text())
    else:
        ecfg = EvalConfig(out=str(eval_dir), run=str(run_dir), tasks=list(suite.episodes),
                          episodes=suite.eval_episodes, workers=cfg.workers, video_frames=suite.video_frames,
                          temperature=suite.eval_temperature,
                          wandb=cfg.wandb)
        bar, tick = progress_bar(ecfg, len(ecfg.tasks))
        scores = evaluate(ecfg, tick)
        bar.close()
        md, page = eval_dir / "report.md", eval_dir / "report.html"
        summary["seconds"]["eval"] = time.perf_counter() - t0
    summary["aggregate"] = scores["aggregate"]
    summary["normalized"] = {t: v["normalized"] for t, v in scores["tasks"].items()}
    summary["report"] = {"markdown": str(md), "html": str(page)}
    save()
    return summary
