"""Scripted Atari experts (Pong, Breakout) that read RAM and plan with a private emulator copy.

Each expert owns a second ALE instance (same ROM, no sticky actions). To look ahead it copies the
real emulator's state into that copy with `cloneState` and simulates there, so the real env (its
sticky-action RNG, last action, frame buffers) is never touched: `cloneState` only reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ale_py
import numpy as np
from ale_py import roms

from generalist.envs.base import TaskEnv
from generalist.experts.base import Policy

FRAME_SKIP = 4  # frames per env step (AtariPreprocessing frame_skip)


class _Sim:
    """A deterministic ALE copy for look-ahead: sync() copies the real emulator's state into it."""

    def __init__(self, env: TaskEnv, rom: str):
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.real = env.ale
        self.ale = ale_py.ALEInterface()
        self.ale.setInt("random_seed", 0)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.setInt("frame_skip", 1)
        self.ale.setInt("max_num_frames_per_episode", 0)
        self.ale.loadROM(roms.get_rom_path(rom))
        self.actions = list(self.ale.getMinimalActionSet())
        self.frames = 0  # frames emulated since construction (cost accounting)

    def sync(self) -> None:
        self.ale.restoreState(self.real.cloneState())

    def frame(self, action: int) -> int:
        """One emulator frame of minimal-set action `action`; returns the reward."""
        self.frames += 1
        return self.ale.act(self.actions[action])

    def ram(self) -> np.ndarray:
        return self.ale.getRAM()

    def frame_number(self) -> int:
        return self.ale.getEpisodeFrameNumber()


@dataclass
class _Approach:
    """The ball's predicted path up to the paddle line: frame number -> (x, y), and the contact."""

    path: dict[int, tuple[int, int]] = field(default_factory=dict)
    contact_frame: int = -1
    contact_pos: tuple[int, int] = (0, 0)


class PongExpert(Policy):
    """Pong from RAM: predict where the ball meets the paddle column, steer there by model-predictive
    control in the emulator copy, and pick the hit offset whose simulated return wins the point."""

    name = "atari-pong-ram"
    NOOP, UP, DOWN = 0, 2, 3  # minimal set: RIGHT moves the paddle up (y decreases)
    PY, BX, BY = 51, 49, 54  # RAM: player paddle y, ball x, ball y (0 = no ball)
    PADDLE_COL = 188  # ball x at which the ball reaches the player's paddle
    CENTER = 6  # paddle y = ball y - 6 puts the ball on the paddle's middle
    MPC_FRAMES = 40  # plan with the emulator copy in the last frames before contact

    def __init__(self, env: TaskEnv, seed: int | None = None):
        super().__init__(env, seed)
        self.sim = _Sim(env, "pong")
        self.reset()

    def reset(self) -> None:
        """Forget the previous episode's ball prediction and paddle velocity."""
        self.prev_py: int | None = None
        self.prev_bx: int | None = None
        self.approach: _Approach | None = None
        self.aim_py: int | None = None  # paddle y at contact that wins the point in the copy
        self.stats = {"mpc": 0, "predict": 0, "aim": 0}

    def act(self, obs: dict[str, np.ndarray]) -> int:
        """The action for the current state (the observation itself is not used)."""
        ale = self.env.ale
        ram = ale.getRAM()
        py, bx, by = int(ram[self.PY]), int(ram[self.BX]), int(ram[self.BY])
        frame = ale.getEpisodeFrameNumber()
        vel = 0 if self.prev_py is None else py - self.prev_py
        coming = by != 0 and self.prev_bx is not None and self.prev_bx < bx < self.PADDLE_COL
        self.prev_py, self.prev_bx = py, bx
        if not coming:
            self.approach = None
            return self._base(py, vel, by - self.CENTER if by else 120)
        ap = self.approach
        if ap is None or ap.path.get(frame) != (bx, by):
            ap = self.approach = self._predict(frame, bx, by)
            if ap is not None:
                self.aim_py = self._aim(ap, py) if self.AIMS else ap.contact_pos[1] - self.CENTER + self.AIM
        if ap is None or ap.contact_frame <= frame:
            return self._base(py, vel, by - self.CENTER)
        target = self.aim_py if self.aim_py is not None else ap.contact_pos[1] - self.CENTER
        if ap.contact_frame - frame > self.MPC_FRAMES:
            return self._base(py, vel, target)
        return self._mpc(target, ap.contact_frame, py, vel)

    def _base(self, py: int, vel: int, target: int, dead: int = 4) -> int:
        stop = py + vel // 2  # the paddle coasts about half a step's travel after release
        if stop > target + dead:
            return self.UP
        if stop < target - dead:
            return self.DOWN
        return self.NOOP

    def _predict(self, frame: int, bx: int, by: int) -> _Approach | None:
        """Ball path (paddle left alone) until it reaches the paddle column; None if it doesn't."""
        self.stats["predict"] += 1
        sim = self.sim
        sim.sync()
        ap = _Approach(path={frame: (bx, by)})
        for _ in range(400):
            r = sim.frame(self.NOOP)
            ram = sim.ram()
            x, y = int(ram[self.BX]), int(ram[self.BY])
            if r != 0 or y == 0:
                return None
            f = sim.frame_number()
            ap.path[f] = (x, y)
            if x >= self.PADDLE_COL:
                ap.contact_frame, ap.contact_pos = f, (x, y)
                return ap
        return None

    def _rollout(self, first: int, target: int, contact_frame: int, py: int) -> tuple[bool, int]:
        """Play `first`, then the base controller, in the copy: (ball returned, paddle y at contact)."""
        sim = self.sim
        sim.sync()
        prev, action, py_c = py, first, None
        for _ in range(contact_frame - sim.frame_number() + 40):
            for _ in range(FRAME_SKIP):
                r = sim.frame(action)
                ram = sim.ram()
                if sim.frame_number() == contact_frame:
                    py_c = int(ram[self.PY])
                if r < 0 or ram[self.BY] == 0:
                    return False, py_c if py_c is not None else int(ram[self.PY])
                if py_c is not None and ram[self.BX] < self.PADDLE_COL - 4:
                    return True, py_c
            cur = int(ram[self.PY])
            action, prev = self._base(cur, cur - prev, target), cur
        return False, py_c if py_c is not None else py

    AIMS: tuple[int, ...] = (8, -8, 10, -10, 6, -6, 4, -4, 0)  # hit offsets tried, edges first
    AIM = 8

    def _aim(self, ap: _Approach, py: int) -> int | None:
        """Paddle y at contact whose simulated return wins the point (first found), else None."""
        self.stats["aim"] += 1
        center = ap.contact_pos[1] - self.CENTER
        fallback = None
        for d in self.AIMS:
            outcome, py_c = self._rally(center + d, ap.contact_frame, py)
            if outcome > 0:
                return py_c
            if outcome == 0 and fallback is None:
                fallback = py_c
        return fallback

    def _rally(self, target: int, contact_frame: int, py: int) -> tuple[int, int]:
        """Steer to `target` in the copy and play on: (+1 point won, 0 returned, -1 lost; paddle y at contact)."""
        sim = self.sim
        sim.sync()
        prev, py_c, went_back, last_x = py, py, False, None
        for _ in range(200):
            ram = sim.ram()
            cur = int(ram[self.PY])
            tgt = target if sim.frame_number() < contact_frame else int(ram[self.BY]) - self.CENTER
            action, prev = self._base(cur, cur - prev, tgt), cur
            for _ in range(FRAME_SKIP):
                r = sim.frame(action)
                if r:
                    return (1 if r > 0 else -1), py_c
                ram = sim.ram()
                x = int(ram[self.BX])
                if sim.frame_number() == contact_frame:
                    py_c = int(ram[self.PY])
                if last_x is not None and sim.frame_number() > contact_frame:
                    if x < last_x:
                        went_back = True
                    elif went_back and x > last_x:
                        return 0, py_c
                last_x = x
        return 0, py_c

    def _mpc(self, target: int, contact_frame: int, py: int, vel: int) -> int:
        self.stats["mpc"] += 1
        base = self._base(py, vel, target)
        best, best_score = base, None
        for a in [base] + [a for a in (self.NOOP, self.UP, self.DOWN) if a != base]:
            hit, py_c = self._rollout(a, target, contact_frame, py)
            score = abs(py_c - target) + (0 if hit else 1000)
            if best_score is None or score < best_score:
                best, best_score = a, score
            if hit and abs(py_c - target) <= 2:
                break
        return best
