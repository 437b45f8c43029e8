"""The imitation training job: one Gato-style model on the episodes of many tasks.

Single process or DDP under torchrun (`torchrun --nproc_per_node=K -m generalist train ...`); on
CPU the gloo backend. The global batch is fixed: each of K ranks trains on its 1/K share of the
same windows, so K processes follow the loss curve of one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from generalist import envs, wandb_run
from generalist.agent import checkpoint
from generalist.agent.balance import TaskBalancer
from generalist.agent.config import ACTION_LOSSES, INPUT_ENCODERS, LOSS_UNITS, SIZES, ModelConfig, TrainConfig
from generalist.agent.data import (
    GlobalBatchIndices,
    WindowDataset,
    action_balance_weights,
    collate,
    layout_for,
    steps_per_window,
)
from generalist.agent.ema import WeightAverage
from generalist.agent.encoder import OBS_NORMS, ObsNorm, encoders_for, shape_groups, shown_tokens
from generalist.agent.model import GatoModel
from generalist.agent.tokenizer import CONTINUOUS_OFFSET, N_BINS, OBS_ENCODINGS, TimestepLayout
from generalist.datasets.layout import serialize_space
from generalist.datasets.sampler import DatasetError, TaskData, WindowSampler, open_tasks, train_arrays
from generalist.errors import ConfigError
from generalist.lock import WriterLock


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def soft_bin_targets(target: torch.Tensor, sigma: float) -> torch.Tensor:
    """(K,) continuous action tokens -> (K, N_BINS) Gaussian weights over the bins (HL-Gauss,
    Imani & White 2018; Farebrother et al. 2024), normalized within [-1, 1]."""
    bins = torch.arange(N_BINS, device=target.device, dtype=torch.float32)
    centre = (target - CONTINUOUS_OFFSET).float().unsqueeze(1)
    w = torch.exp(-0.5 * ((bins - centre) / sigma) ** 2)
    return w / w.sum(1, keepdim=True)


def action_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], hide_actions: bool = False,
                loss: str = "ce", hl_sigma: float = 8.0,
                scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """Weighted summed next-token loss over action tokens only, correct action tokens, their count, the
    sum of their loss weights.

    Sums, not means: the trainer divides by the global weight sum so that K ranks weigh every
    token exactly as one process does. With `hide_actions` the model predicts every action token
    without being shown any action token (its own past actions included). With loss "hlgauss" a
    continuous action token's target is spread over neighbouring bins. `scale` (B, S) multiplies each slot's
    loss (task balancing) but not the weight sum."""
    inputs = shown_tokens(batch["tokens"], batch["loss_mask"], hide_actions)
    mask = batch["loss_mask"][:, 1:]
    where = F.pad(mask, (0, 1))  # slot s predicts the token of slot s + 1
    logits, _ = model(inputs, batch["local_positions"], batch["patches"], batch["patch_pos"],
                      vectors=batch["vectors"], frames=batch["frames"], where=where, segments=batch.get("segments"),
                      task_ids=batch.get("task_ids"))
    pred = logits.float()
    target = batch["tokens"][:, 1:][mask]
    correct = (pred.argmax(-1) == target).sum()
    weight = batch["loss_weight"][:, 1:][mask] if "loss_weight" in batch else torch.ones_like(pred[:, 0])
    n, wsum = int(mask.sum()), float(weight.sum())
    if scale is not None:
        weight = weight * scale[:, 1:][mask]
    if loss == "ce":
        return (F.cross_entropy(pred, target, reduction="none") * weight).sum(), correct, n, wsum
    logp = F.log_softmax(pred, -1)
    cont = target >= CONTINUOUS_OFFSET
    nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
    soft = -(soft_bin_targets(target[cont], hl_sigma) * logp[cont, CONTINUOUS_OFFSET:CONTINUOUS_OFFSET + N_BINS]).sum(1)
    return (nll[~cont] * weight[~cont]).sum() + (soft * weight[cont]).sum(), correct, n, wsum


def fit_obs_norms(tasks: dict[str, TaskData], kind: str, max_rows: int = 200_000) -> dict[str, ObsNorm]:
    """Per-task state statistics from the training episodes (up to `max_rows` timesteps, evenly)."""
    out = {}
    for name, td in tasks.items():
        if "state" in td.observation_space.spaces:
            stride = max(1, int(td.lengths[td.train_ids].sum()) // max_rows)
            rows = list(train_arrays(td, "state", stride))
            out[name] = ObsNorm.fit(np.concatenate(rows).reshape(-1, rows[0].shape[-1]), kind)
    return out


def fit_mean_frames(model: GatoModel, tasks: dict[str, TaskData], encoders: dict, max_frames: int = 4000) -> None:
    """`--frame-norm center`: each frame encoder's mean frame is the mean, over the tasks it serves (each task
    counting once), of the task's mean training image (up to `max_frames` evenly spaced), laid out as the encoder
    is fed (zero padding, frame-stack channels)."""
    encs = model.frame_embed if isinstance(model.frame_embed, torch.nn.ModuleList) else [model.frame_embed]
    sums: dict[int, list[np.ndarray]] = {}
    for name, td in tasks.items():
        if "image" not in td.observation_space.spaces:
            continue
        stride = max(1, int(td.lengths[td.train_ids].sum()) // max_frames)
        total, count = 0.0, 0
        for images in train_arrays(td, "image", stride):
            total, count = total + images.sum(0, dtype=np.float64), count + len(images)
        mean = encoders[name].frames((total / max(count, 1))[None].astype(np.float32))[0]
        group = int(model.frame_group[encoders[name].task_id]) if len(encs) > 1 else 0
        sums.setdefault(group, []).append(mean)
    for group, means in sums.items():
        encs[group].mean_frame.copy_(torch.from_numpy(np.mean(means, 0)))


def discrete_action_counts(tasks: dict[str, TaskData]) -> dict[str, np.ndarray]:
    """How often each action occurs in a discrete task's training episodes."""
    return {name: sum(np.bincount(a, minlength=int(td.action_space.n))[: int(td.action_space.n)]
                      for a in train_arrays(td, "actions"))
            for name, td in tasks.items() if hasattr(td.action_space, "n")}


def input_encoders(tasks: dict[str, TaskData], cfg: TrainConfig) -> dict[str, list[int]]:
    """ModelConfig's per-task state and frame encoder indices for `--input-encoders per-shape` (else none)."""
    if cfg.input_encoders == "shared":
        return {}
    order = sorted(tasks)  # the model's task order (encoder.task_order)
    spaces = [tasks[t].observation_space.spaces for t in order]
    return {"state_encoders": shape_groups([tuple(s["state"].shape) if "state" in s else None for s in spaces]),
            "frame_encoders": shape_groups([tuple(s["image"].shape) if "image" in s else None for s in spaces])}


def frame_stacks(tasks: dict[str, TaskData], cfg: TrainConfig) -> dict[str, int]:
    """`--frame-stack`, checked: known tasks, pixel tasks, the vector encoding, K >= 1. A task that is not in this
    run's data is left out, as `--task-weights` does (a suite's settings then serve any subset of its data)."""
    stacks = {}
    for task, k in (cfg.frame_stack or {}).items():
        if task not in tasks:
            try:
                envs.get_task(task)
            except KeyError:
                raise ConfigError(f"--frame-stack names {task!r}, which is no task (see `generalist envs`)") from None
            continue
        stacks[task] = k
        if "image" not in tasks[task].observation_space.spaces:
            raise ConfigError(f"--frame-stack {task}={k}: {task} has no image observations")
        if k < 1:
            raise ConfigError(f"--frame-stack {task}={k}: K must be >= 1")
        if k > 1 and cfg.obs_encoding != "vector":
            raise ConfigError("--frame-stack needs --obs-encoding vector (Gato's patch tokens embed one image each)")
    return stacks


def frame_channels(tasks: dict[str, TaskData], stacks: dict[str, int]) -> int:
    """The frame encoder's input channels: the largest frame stack x image channels, at least 3 (a single
    grayscale image is repeated to 3, as before frame stacks existed)."""
    return max([3] + [stacks.get(t, 1) * td.observation_space.spaces["image"].shape[-1]
                      for t, td in tasks.items() if "image" in td.observation_space.spaces])


def _dist_env() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def data_spec(tasks) -> dict[str, Any]:
    """What a run trained on; --resume must see the same."""
    return {t: {"path": str(td.path), "episodes": int(len(td.lengths)), "steps": int(td.lengths.sum())}
            for t, td in sorted(tasks.items())}


def check_specs(tasks) -> None:
    """Refuse datasets whose spaces contradict the registered task of the same name.

    Compares with the spaces the registry declares: no env is built and no simulator imported, so
    training runs where only torch, numpy, h5py, safetensors, tqdm and gymnasium are installed."""
    for name, td in tasks.items():
        if name not in envs.TASKS:
            continue
        spec = envs.TASKS[name]
        for what, ours, theirs in (("observation", spec.observation_space, td.observation_space),
                                   ("action", spec.action_space, td.action_space)):
            if serialize_space(ours) != serialize_space(theirs):
                raise DatasetError(f"dataset {td.path} stores {what} space {theirs}, but task {name} "
                                   f"has {ours}; re-collect it with this version")


def train(cfg: TrainConfig, resume: bool = False,
          on_log: Callable[[dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns final metrics. Rank 0 holds the run directory's writer lock."""
    with WriterLock(Path(cfg.out), "train") if _dist_env()[0] == 0 else nullcontext():
        return _train(cfg, resume, on_log)


def _train(cfg: TrainConfig, resume: bool, on_log: Callable[[dict[str, float]], None] | None) -> dict[str, Any]:
    rank, world, local_rank = _dist_env()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.config not in SIZES:
        raise ConfigError(f"unknown model config {cfg.config!r}; choose from {', '.join(SIZES)}")
    if not cfg.data:
        raise DatasetError("no data path given (--data ROOT [ROOT ...])")

    if cfg.obs_encoding not in OBS_ENCODINGS:
        raise ConfigError(f"unknown --obs-encoding {cfg.obs_encoding!r}; choose from {', '.join(OBS_ENCODINGS)}")
    if cfg.obs_norm not in OBS_NORMS:
        raise ConfigError(f"unknown --obs-norm {cfg.obs_norm!r}; choose from {', '.join(OBS_NORMS)}")
    if cfg.action_loss not in ACTION_LOSSES:
        raise ConfigError(f"unknown --action-loss {cfg.action_loss!r}; choose from {', '.join(ACTION_LOSSES)}")
    if cfg.input_encoders not in INPUT_ENCODERS:
        raise ConfigError(f"unknown --input-encoders {cfg.input_encoders!r}; choose from {', '.join(INPUT_ENCODERS)}")
    if cfg.input_encoders != "shared" and cfg.obs_encoding != "vector":
        raise ConfigError("--input-encoders per-shape needs --obs-encoding vector (Gato's tokens have no input encoder)")
    if cfg.loss_unit not in LOSS_UNITS:
        raise ConfigError(f"unknown --loss-unit {cfg.loss_unit!r}; choose from {', '.join(LOSS_UNITS)}")
    if not cfg.hl_sigma > 0:
        raise ConfigError(f"--hl-sigma must be > 0 (bins), got {cfg.hl_sigma}")
    if not cfg.balance_tasks >= 0:
        raise ConfigError(f"--balance-tasks must be >= 0, got {cfg.balance_tasks}")
    if not cfg.grad_clip >= 0:
        raise ConfigError(f"--grad-clip must be >= 0 (0: off), got {cfg.grad_clip}")
    if cfg.ema and not 0.0 < cfg.ema < 1.0:
        raise ConfigError(f"--ema must be 0 (off) or a decay in (0, 1), got {cfg.ema}")
    if not cfg.balance_actions >= 0:
        raise ConfigError(f"--balance-actions must be >= 0, got {cfg.balance_actions}")
    if cfg.max_timesteps < 0 or any(k < 1 for k in (cfg.task_timesteps or {}).values()):
        raise ConfigError("--max-timesteps must be >= 0 and every --task-timesteps value >= 1")

    tasks = open_tasks([Path(p) for p in cfg.data], cfg.val_fraction, cfg.seed)
    check_specs(tasks)
    stacks = frame_stacks(tasks, cfg)
    layouts = {t: layout_for(td, encoding=cfg.obs_encoding, frame_stack=stacks.get(t, 1)) for t, td in tasks.items()}
    spw = steps_per_window(layouts, cfg.context, cfg.max_timesteps, cfg.task_timesteps)
    model_cfg = ModelConfig(**{**SIZES[cfg.config].to_dict(), "max_seq_len": cfg.context,
                               "n_tasks": len(tasks) if cfg.task_embedding else 0, **input_encoders(tasks, cfg),
                               "frame_channels": frame_channels(tasks, stacks), "frame_norm": cfg.frame_norm})
    norms = fit_obs_norms(tasks, cfg.obs_norm) if cfg.obs_encoding == "vector" else {}
    meta = {"train": asdict(cfg), "model": model_cfg.to_dict(), "data": data_spec(tasks),
            "layouts": {t: asdict(lay) for t, lay in layouts.items()},
            "obs_norm": {t: n.to_dict() for t, n in norms.items()}}
    encoders = encoders_for(meta, model_cfg)

    torch.manual_seed(cfg.seed)
    model = GatoModel(model_cfg)
    if cfg.frame_norm == "center" and not resume:
        fit_mean_frames(model, tasks, encoders)
    model = model.to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "emb" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95),
                                  fused=device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, cfg) / cfg.lr)
    start = 0
    run_dir = Path(cfg.out)
    if resume:
        ck = checkpoint.latest(run_dir)
        if ck is None:
            raise checkpoint.CheckpointError(f"--resume: no intact checkpoint in {run_dir}/checkpoints")
        old = checkpoint.load_meta(ck)
        for key in ("model", "data"):
            if old[key] != meta[key]:
                raise ConfigError(f"--resume: the run in {run_dir} was trained with a different {key} "
                                 f"({'config' if key == 'model' else 'data spec'}); use a new --out")
        if any(TimestepLayout(**old["layouts"][t]) != lay for t, lay in layouts.items()):
            raise ConfigError(f"--resume: the run in {run_dir} encodes timesteps differently (--obs-encoding or "
                              "--frame-stack changed); pass the same options or use a new --out")
        if old["train"].get("ema", 0.0) != cfg.ema:
            raise ConfigError(f"--resume: the run in {run_dir} was trained with --ema {old['train'].get('ema', 0.0)}; "
                              "pass the same value")
        model.load_state_dict(checkpoint.load_weights(ck))
        st = checkpoint.load_train_state(ck)
        optimizer.load_state_dict(st["optimizer"])
        scheduler.load_state_dict(st["scheduler"])
        checkpoint.restore_rng(st["rng"])
        start = int(st["step"])
    elif checkpoint.all_checkpoints(run_dir):
        raise checkpoint.CheckpointError(f"{run_dir} already holds a run; pass --resume to continue it, or use a new --out")
    # `acting`: the weights that are validated, saved as model.safetensors and played (the average under --ema)
    ema = None
    if cfg.ema:  # resuming: `model` holds the saved average until the optimizer's own weights are loaded into it
        ema = WeightAverage(model, cfg.ema, int(st["extra"]["ema_updates"]) if resume else 0)
        if resume:
            model.load_state_dict(st["extra"]["online_weights"])
    acting = ema.model if ema is not None else model

    ddp_model = model
    if world > 1:
        # A rank whose share of the batch holds no image leaves the patch embedding unused.
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None, find_unused_parameters=True)
    # dynamic: the number of image patches per batch varies with the tasks sampled
    fwd = torch.compile(ddp_model, dynamic=True) if cfg.compile else ddp_model

    token_weights = ({t: action_balance_weights(c, cfg.balance_actions) for t, c in discrete_action_counts(tasks).items()}
                     if cfg.balance_actions else {})
    past = {t: e.past_frames for t, e in encoders.items() if e.past_frames}
    train_set = WindowDataset(WindowSampler(tasks, spw, cfg.task_weights, cfg.prompt_prob, "train", cfg.seed, past),
                              encoders, token_weights, cfg.loss_unit == "timestep")
    loader = DataLoader(train_set, batch_size=cfg.batch // world, collate_fn=partial(collate, context=cfg.context), num_workers=cfg.workers,
                        sampler=GlobalBatchIndices(cfg.batch, start, cfg.steps, rank, world),
                        persistent_workers=cfg.workers > 0, pin_memory=device.type == "cuda")
    # one held-out stream per task (episodes never trained on), so losses are reported per task
    val_sets = {t: WindowDataset(WindowSampler(tasks, spw, {x: float(x == t) for x in tasks}, 0.0, "val",
                                               cfg.seed + 1, past), encoders)
                for t, td in tasks.items() if len(td.val_ids)}

    # per-task loss scales from gradient norms, each task measured on its own stream of training windows
    ids = {t: e.task_id for t, e in encoders.items() if t in tasks}
    balancer = TaskBalancer({i: WindowDataset(WindowSampler(tasks, spw, {x: float(x == t) for x in tasks}, 0.0, "train",
                                                            cfg.seed + 2, past), encoders, token_weights, cfg.loss_unit == "timestep")
                             for t, i in ids.items()}, cfg.context, cfg.balance_tasks)
    if resume and "balancer" in st.get("extra", {}):
        balancer.load_state_dict(st["extra"]["balancer"])
    shared = [p for n, p in model.named_parameters() if n.startswith("blocks.")]

    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    run = wandb_run.start(cfg.wandb, "train", meta, dir=str(run_dir), resume="allow") if rank == 0 else None
    bar = tqdm(total=cfg.steps, initial=start, unit="step", desc="train", disable=rank != 0, dynamic_ncols=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    log: dict[str, float] = {}
    t0, tokens_seen = time.perf_counter(), 0
    step = start

    def to_dev(b):
        return {k: v.to(device, non_blocking=True) for k, v in b.items()}

    def evaluate() -> dict[str, float]:
        """Action-token loss and accuracy on held-out episodes, per task and over all tokens."""
        if not val_sets:
            return {}
        acting.eval()
        out: dict[str, float] = {}
        all_tot, all_correct, all_n = 0.0, 0, 0
        with torch.no_grad(), amp:
            for t, vs in val_sets.items():
                tot, correct, n = 0.0, 0, 0
                for i in range(cfg.val_batches):
                    b = to_dev(collate([vs[i * cfg.batch + j] for j in range(cfg.batch)], cfg.context))
                    loss_sum, c, m, _ = action_loss(acting, b, cfg.hide_actions, cfg.action_loss, cfg.hl_sigma)
                    tot, correct, n = tot + float(loss_sum), correct + int(c), n + m
                out[f"val/{t}/loss"] = tot / max(n, 1)
                out[f"val/{t}/action_acc"] = correct / max(n, 1)
                all_tot, all_correct, all_n = all_tot + tot, all_correct + correct, all_n + n
        acting.train()
        return {"val_loss": all_tot / max(all_n, 1), "val_action_acc": all_correct / max(all_n, 1), **out}

    model.train()
    t_prev = time.perf_counter()  # end of the previous step (its logging and checkpoint excluded)
    for batch in loader:
        batch = to_dev(batch)
        data_s = time.perf_counter() - t_prev  # waiting on the DataLoader (and the copy to the device)
        if balancer.due(step):
            with amp:
                balancer.measure(model, lambda b: action_loss(model, b, cfg.hide_actions, cfg.action_loss, cfg.hl_sigma),
                                 to_dev, shared, (lambda x: dist.all_reduce(x, op=dist.ReduceOp.AVG)) if world > 1 else None)
        scale = balancer.slot_scale(batch["task_ids"]) if cfg.balance_tasks else None
        with amp:
            loss_sum, correct, n, wsum = action_loss(fwd, batch, cfg.hide_actions, cfg.action_loss, cfg.hl_sigma, scale)
        stats = torch.tensor([float(n), float(correct), float(loss_sum.detach()), wsum], device=device)
        if world > 1:
            dist.all_reduce(stats)
        n_global, w_global = max(float(stats[0]), 1.0), max(float(stats[3]), 1e-12)
        optimizer.zero_grad(set_to_none=True)
        (loss_sum * (world / w_global)).backward()  # DDP averages over ranks: * world restores the sum
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        step += 1
        slots = int((batch["segments"] > 0).sum()) * world  # real slots, not padding
        tokens_seen += slots
        loss_v = float(stats[2]) / w_global
        gnorm_v = float(gnorm)  # waits for the device: the step's time is measured after it
        now = time.perf_counter()
        rate = tokens_seen / (now - t0)
        # step_s, data_s, slots and action_tokens let scripts/gpu_check.py compute throughput, MFU and
        # the share of step time spent waiting on the DataLoader
        log = {"step": step, "loss": loss_v, "action_acc": float(stats[1]) / n_global, "lr": scheduler.get_last_lr()[0],
               "grad_norm": gnorm_v, "tokens_per_s": rate, "step_s": now - t_prev, "data_s": data_s,
               "slots": slots, "action_tokens": int(stats[0])}
        if rank == 0:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_v:.3f}", tok_s=f"{rate:.0f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            log.update(evaluate())
            if cfg.balance_tasks:
                log.update(balancer.log({i: t for t, i in ids.items()}))
        if rank == 0:
            with open(run_dir / "metrics.jsonl", "a") as f:  # the loss curves, one JSON line per step
                f.write(json.dumps(log) + "\n")
            if on_log is not None:
                on_log(log)
            if run is not None:
                run.log(log, step=step)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                extra = {"balancer": balancer.state_dict()}
                if ema is not None:
                    extra.update(online_weights={k: v.detach().cpu() for k, v in model.state_dict().items()},
                                 ema_updates=ema.updates)
                checkpoint.save(run_dir, step, acting, optimizer, scheduler, meta, cfg.keep_last, extra)
        if world > 1 and (step % cfg.ckpt_every == 0):
            dist.barrier()
        t_prev = time.perf_counter()
    bar.close()
    if run is not None:
        run.finish()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return log
