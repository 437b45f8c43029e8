"""Soft Actor-Critic from state, CleanRL style (one readable file), and the walker expert it trains.

Algorithm: tanh-squashed Gaussian actor, twin Q critics (one batched ensemble module) with Polyak
target copies, automatic entropy tuning toward -|A|. Actions are held for `action_repeat` env
steps (rewards summed over the repeat); the expert holds its actions the same way.

Train:   python -m generalist.experts.sac --task dmc-walker-walk --steps 300000 --out /tmp/sac-walker
Resume:  the same command with --resume (restores nets, optimizers, replay buffer and counters).
`--steps` counts agent steps (decisions); env steps = steps * action_repeat.
The best evaluation's actor is exported (weights only, safetensors) to `--export`, by default the
package checkpoint `generalist/experts/checkpoints/<task>-sac.safetensors`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generalist import envs
from generalist.experts.base import Policy
from generalist.fs import atomic_path

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
WALKER_CHECKPOINT = CHECKPOINT_DIR / "dmc-walker-walk-sac.safetensors"
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


# ---------------------------------------------------------------- networks
class Actor(nn.Module):
    """obs -> tanh-Gaussian over actions in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        d = obs_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.trunk = nn.Sequential(*layers)
        self.mu = nn.Linear(d, act_dim)
        self.log_std = nn.Linear(d, act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std (soft-clamped to [LOG_STD_MIN, LOG_STD_MAX]) of the pre-tanh Gaussian."""
        h = self.trunk(obs)
        log_std = torch.tanh(self.log_std(h))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return self.mu(h), log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized action sample and its log-probability (tanh-corrected)."""
        mu, log_std = self(obs)
        std = log_std.exp()
        u = mu + std * torch.randn_like(mu)
        a = torch.tanh(u)
        logp = (-0.5 * ((u - mu) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return a, logp

    def act_mean(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action tanh(mean)."""
        return torch.tanh(self(obs)[0])


class EnsembleLinear(nn.Module):
    """`n` independent linear layers applied in one batched matmul: (n, B, in) -> (n, B, out)."""

    def __init__(self, n: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(n, 1, d_out))
        bound = 1 / math.sqrt(d_in)  # nn.Linear's default init, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class TwinQ(nn.Module):
    """Two Q(s, a) MLPs evaluated together; returns (2, B)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, depth: int = 2, n: int = 2):
        super().__init__()
        dims = [obs_dim + act_dim] + [hidden] * depth
        self.layers = nn.ModuleList(EnsembleLinear(n, a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.out = EnsembleLinear(n, hidden, 1)
        self.n = n

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, act], -1).unsqueeze(0).expand(self.n, -1, -1)
        for layer in self.layers:
            x = F.relu(layer(x))
        return self.out(x).squeeze(-1)


# ---------------------------------------------------------------- replay buffer
class Replay:
    """Fixed-capacity numpy ring buffer of (obs, act, rew, next_obs, not_done)."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.capacity, self.size, self.ptr = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.rew = np.zeros((capacity,), np.float32)
        self.not_done = np.zeros((capacity,), np.float32)

    def add(self, obs: np.ndarray, act: np.ndarray, rew: float, next_obs: np.ndarray, done: bool) -> None:
        i = self.ptr
        self.obs[i], self.act[i], self.rew[i], self.next_obs[i] = obs, act, rew, next_obs
        self.not_done[i] = 0.0 if done else 1.0
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, self.size, batch)
        return tuple(torch.from_numpy(x[idx]) for x in (self.obs, self.act, self.rew, self.next_obs, self.not_done))

    def state(self) -> dict[str, Any]:
        n = self.size
        return {"size": n, "ptr": self.ptr, "obs": self.obs[:n].copy(), "next_obs": self.next_obs[:n].copy(),
                "act": self.act[:n].copy(), "rew": self.rew[:n].copy(), "not_done": self.not_done[:n].copy()}

    def load(self, s: dict[str, Any]) -> None:
        n = s["size"]
        for k in ("obs", "next_obs", "act", "rew", "not_done"):
            getattr(self, k)[:n] = s[k]
        self.size, self.ptr = n, s["ptr"]


# ---------------------------------------------------------------- SAC agent
class SAC:
    """Networks, optimizers and one gradient update."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, lr: float = 3e-4, gamma: float = 0.99,
                 tau: float = 0.005, init_alpha: float = 0.1):
        self.actor = Actor(obs_dim, act_dim, hidden)
        self.q = TwinQ(obs_dim, act_dim, hidden)
        self.q_target = TwinQ(obs_dim, act_dim, hidden)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(init_alpha), requires_grad=True)
        self.target_entropy = -float(act_dim)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)
        self.gamma, self.tau = gamma, tau

    def update(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        """One critic, actor, temperature and target update; returns the losses."""
        obs, act, rew, next_obs, not_done = batch
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_a, next_logp = self.actor.sample(next_obs)
            q_next = self.q_target(next_obs, next_a).min(0).values - alpha * next_logp
            target = rew + not_done * self.gamma * q_next
        q_loss = F.mse_loss(self.q(obs, act), target.unsqueeze(0).expand(2, -1), reduction="none").mean(1).sum()
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_opt.step()

        self.q.requires_grad_(False)  # actor loss needs dQ/da only, not critic weight grads
        a, logp = self.actor.sample(obs)
        actor_loss = (alpha * logp - self.q(obs, a).min(0).values).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self.q.requires_grad_(True)

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for p, tp in zip(self.q.parameters(), self.q_target.parameters(), strict=True):
                tp.lerp_(p, self.tau)
        return {"q_loss": q_loss.item(), "actor_loss": actor_loss.item(), "alpha": alpha.item(),
                "entropy": -logp.mean().item()}

    def state_dict(self) -> dict[str, Any]:
        return {"actor": self.actor.state_dict(), "q": self.q.state_dict(), "q_target": self.q_target.state_dict(),
                "log_alpha": self.log_alpha.detach().clone(), "actor_opt": self.actor_opt.state_dict(),
                "q_opt": self.q_opt.state_dict(), "alpha_opt": self.alpha_opt.state_dict()}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.actor.load_state_dict(s["actor"])
        self.q.load_state_dict(s["q"])
        self.q_target.load_state_dict(s["q_target"])
        with torch.no_grad():
            self.log_alpha.copy_(s["log_alpha"])
        self.actor_opt.load_state_dict(s["actor_opt"])
        self.q_opt.load_state_dict(s["q_opt"])
        self.alpha_opt.load_state_dict(s["alpha_opt"])


# ---------------------------------------------------------------- env helpers
def repeat_step(env: Any, action: np.ndarray, k: int) -> tuple[np.ndarray, float, bool, bool]:
    """Hold `action` for up to k env steps; returns (state obs, summed reward, terminated, truncated)."""
    total = 0.0
    for _ in range(k):
        obs, r, term, trunc, _ = env.step(action)
        total += r
        if term or trunc:
            break
    return obs["state"], total, term, trunc


def evaluate(env: Any, actor: Actor, episodes: int, action_repeat: int, seed: int = 10_000) -> list[float]:
    """Returns of the deterministic policy on seeds seed..seed+episodes-1."""
    rets = []
    for ep in range(episodes):
        obs = env.reset(seed=seed + ep)[0]["state"]
        ret, done = 0.0, False
        while not done:
            with torch.no_grad():
                a = actor.act_mean(torch.from_numpy(obs)[None])[0].numpy()
            obs, r, term, trunc = repeat_step(env, a, action_repeat)
            ret += r
            done = term or trunc
        rets.append(ret)
    return rets


def export_actor(actor: Actor, path: Path, meta: dict[str, Any]) -> None:
    """Write the actor's weights (float32) and its architecture as safetensors metadata, atomically."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in actor.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in meta.items()})
        os.chmod(tmp, 0o644)  # safetensors writes 0600; the package file must be readable by all


def _save_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# ---------------------------------------------------------------- training
def train(args: argparse.Namespace) -> None:
    """The SAC loop: random warm-up, then one update per agent step; periodic eval and checkpoints."""
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    export = Path(args.export) if args.export else CHECKPOINT_DIR / f"{args.task}-sac.safetensors"
    env, eval_env = envs.make(args.task), envs.make(args.task)
    obs_dim = env.observation_space["state"].shape[0]
    act_dim = env.action_space.shape[0]
    k = args.action_repeat

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    agent = SAC(obs_dim, act_dim, args.hidden, args.lr, args.gamma, args.tau, args.init_alpha)
    rb = Replay(args.steps, obs_dim, act_dim)
    step, episode, best, t_used, history = 0, 0, -float("inf"), 0.0, []
    ckpt = out / "train_state.pt"
    if args.resume and ckpt.exists():
        s = torch.load(ckpt, weights_only=False)
        agent.load_state_dict(s["agent"])
        rb.load(s["replay"])
        step, episode, best, t_used, history = s["step"], s["episode"], s["best"], s["wall_s"], s["history"]
        rng.bit_generator.state = s["np_rng"]
        torch.set_rng_state(s["torch_rng"])
        print(f"resumed at step {step} (best eval {best:.1f})", flush=True)
    (out / "config.json").write_text(json.dumps(vars(args), indent=1))

    t0, t_last, s_last = time.time() - t_used, time.time(), step
    obs = env.reset(seed=args.seed * 100_003 + episode)[0]["state"]
    ep_ret, info = 0.0, {}
    while step < args.steps:
        if step < args.learning_starts:
            a = rng.uniform(-1, 1, act_dim).astype(np.float32)
        else:
            with torch.no_grad():
                a = agent.actor.sample(torch.from_numpy(obs)[None])[0][0].numpy()
        next_obs, r, term, trunc = repeat_step(env, a, k)
        rb.add(obs, a, r, next_obs, term)  # time-limit truncation is not a terminal state
        obs, ep_ret = next_obs, ep_ret + r
        step += 1
        if term or trunc:
            episode += 1
            obs, ep_ret = env.reset(seed=args.seed * 100_003 + episode)[0]["state"], 0.0
        if step >= args.learning_starts:
            info = agent.update(rb.sample(rng, args.batch))

        if step % args.eval_every == 0 or step == args.steps:
            rets = evaluate(eval_env, agent.actor, args.eval_episodes, k)
            mean = float(np.mean(rets))
            now = time.time()
            sps = (step - s_last) / (now - t_last)
            t_last, s_last = now, step
            rec = {"step": step, "env_steps": step * k, "eval_mean": round(mean, 2),
                   "eval_std": round(float(np.std(rets)), 2), "wall_s": round(now - t0, 1),
                   "steps_per_s": round(sps, 1), **{k2: round(v, 4) for k2, v in info.items()}}
            history.append(rec)
            print(json.dumps(rec), flush=True)
            if mean > best:
                best = mean
                export_actor(agent.actor, export, {
                    "algo": "sac", "task": args.task, "obs_dim": obs_dim, "act_dim": act_dim,
                    "hidden": args.hidden, "depth": 2, "activation": "relu", "obs_norm": "none",
                    "action_repeat": k, "agent_step": step, "env_steps": step * k,
                    "eval_mean": round(mean, 2), "eval_episodes": args.eval_episodes, "seed": args.seed})
                print(f"  new best {mean:.1f} -> {export}", flush=True)
        if step % args.ckpt_every == 0 or step == args.steps:
            _save_atomic({"agent": agent.state_dict(), "replay": rb.state(), "step": step, "episode": episode,
                          "best": best, "wall_s": time.time() - t0, "history": history,
                          "np_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, ckpt)
    print(f"done: {step} agent steps ({step * k} env steps) in {time.time() - t0:.0f}s, best eval {best:.1f}",
          flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the trainer."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="dmc-walker-walk")
    p.add_argument("--steps", type=int, default=300_000, help="agent steps (env steps / action repeat)")
    p.add_argument("--out", required=True, help="directory for the training state and config")
    p.add_argument("--export", default=None, help="actor safetensors path (default: the package checkpoint)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--action-repeat", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument("--tau", type=float, default=0.005)
    p.add_argument("--init-alpha", type=float, default=0.1)
    p.add_argument("--learning-starts", type=int, default=5000)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--ckpt-every", type=int, default=25_000)
    return p.parse_args(argv)


# ---------------------------------------------------------------- expert
def load_actor(path: Path) -> tuple[Actor, dict[str, str]]:
    """An Actor rebuilt from a safetensors export and its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata() or {})
    actor = Actor(int(meta["obs_dim"]), int(meta["act_dim"]), int(meta["hidden"]), int(meta.get("depth", 2)))
    actor.load_state_dict(load_file(str(path)))
    actor.eval()
    return actor, meta


class WalkerSACExpert(Policy):
    """dmc-walker-walk: the SAC actor's deterministic mean action, held for `action_repeat` env steps."""

    def __init__(self, env: Any, seed: int | None = None, path: Path = WALKER_CHECKPOINT):
        super().__init__(env, seed)
        self.actor, self.meta = load_actor(path)
        self.action_repeat = int(self.meta.get("action_repeat", 1))
        self._t = 0
        self._action = np.zeros(int(self.meta["act_dim"]), np.float32)

    def reset(self) -> None:
        self._t = 0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """A new action every `action_repeat` calls; the held one in between."""
        if self._t % self.action_repeat == 0:
            with torch.no_grad():
                x = torch.from_numpy(np.asarray(obs["state"], np.float32))[None]
                self._action = self.actor.act_mean(x)[0].numpy().astype(np.float32)
        self._t += 1
        return self._action.copy()


if __name__ == "__main__":
    train(parse_args())
