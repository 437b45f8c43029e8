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


class _Sim:
    """A deterministic ALE copy for look-ahead: sync() copies the real emulator's state into it."""

    def __init__(self, expert: Policy, rom: str):
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.expert = expert  # the real emulator is read through expert.privileged() only
        self.frame_skip = int(expert.privileged()["frame_skip"])
        self.ale = ale_py.ALEInterface()
        self.ale.setInt("random_seed", 0)
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.setInt("frame_skip", 1)
        self.ale.setInt("max_num_frames_per_episode", 0)
        self.ale.loadROM(roms.get_rom_path(rom))
        self.actions = list(self.ale.getMinimalActionSet())
        self.frames = 0  # frames emulated since construction (cost accounting)

    def sync(self) -> None:
        """Copy the real emulator's current state into the copy (reads the real one only)."""
        self.ale.restoreState(self.expert.privileged()["clone_state"]())

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


class _PaddleExpert(Policy):
    """Shared logic: predict where the ball meets the paddle line, then steer by rollouts in the copy.

    Coordinates are RAM bytes: the paddle's position along the line (PADDLE), the ball's position along
    the line (ALONG) and towards it (TOWARD; the ball reaches the line when TOWARD >= LINE).
    """

    ROM = ""
    PADDLE = ALONG = TOWARD = 0
    LINE = 0
    NOOP, PLUS, MINUS = 0, 0, 0  # actions that keep / increase / decrease the paddle coordinate
    OFFSET = 0  # paddle coordinate minus ball coordinate that centres the ball on the paddle
    AIMS: tuple[int, ...] = (0,)  # offset of the aimed contact point, by returns since the last point
    REST = 0  # where to wait when there is no prediction
    MPC_FRAMES = 40  # plan with the emulator copy in the last frames before contact
    ZONE = 6  # contact within centre +- ZONE is safe
    AIM_ZONE = 4  # contact within target +- AIM_ZONE is what we want
    COAST = 0.5  # coasting distance after release, in steps of current velocity
    DEAD = 11  # base controller's dead band: half the ~23 px a paddle moves per step
    HORIZON = 1200  # longest ball path predicted (frames)

    def __init__(self, env: TaskEnv, seed: int | None = None):
        super().__init__(env, seed)
        self.sim = _Sim(self, self.ROM)
        self.reset()

    def reset(self) -> None:
        """Forget the previous episode's ball prediction and paddle velocity."""
        self.prev_pos: int | None = None
        self.approach: _Approach | None = None
        self.returns = 0  # approaches since the last point
        self.stats = {"mpc": 0, "predict": 0}

    def act(self, obs: dict[str, np.ndarray]) -> int:
        """The action for the current state (the observation itself is not used)."""
        priv = self.privileged()
        ram = priv["ram"]
        pos = int(ram[self.PADDLE])
        vel = 0 if self.prev_pos is None else pos - self.prev_pos
        self.prev_pos = pos
        return self._choose(ram, pos, vel, priv["frame"])

    def _in_play(self, ram: np.ndarray) -> bool:
        return ram[self.TOWARD] != 0

    def _idle(self, ram: np.ndarray, pos: int, vel: int) -> int:
        return self._base(pos, vel, self.REST)

    def _choose(self, ram: np.ndarray, pos: int, vel: int, frame: int) -> int:
        if not self._in_play(ram):
            self.approach, self.returns = None, 0
            return self._idle(ram, pos, vel)
        ball = (int(ram[self.ALONG]), int(ram[self.TOWARD]))
        ap = self.approach
        if ap is None or ap.path.get(frame) != ball:
            if ap is not None and 0 <= ap.contact_frame < frame:
                self.returns += 1
            ap = self.approach = self._predict(frame, ball)
        if ap.contact_frame <= frame:
            return self._base(pos, vel, ball[0] + self.OFFSET)
        center = ap.contact_pos[0] + self.OFFSET
        target = center + self.AIMS[self.returns % len(self.AIMS)]
        if ap.contact_frame - frame > self.MPC_FRAMES:
            return self._base(pos, vel, target)
        return self._mpc(target, center, ap.contact_frame, pos, vel)

    def _base(self, pos: int, vel: int, target: int) -> int:
        stop = pos + int(self.COAST * vel)  # the paddle coasts on after release
        if stop > target + self.DEAD:
            return self.MINUS
        if stop < target - self.DEAD:
            return self.PLUS
        return self.NOOP

    def _lost(self, reward: float, ram: np.ndarray) -> bool:
        return reward < 0 or ram[self.TOWARD] == 0

    def _point_over(self, reward: float, ram: np.ndarray) -> bool:
        return self._lost(reward, ram)

    def _predict(self, frame: int, ball: tuple[int, int]) -> _Approach:
        """Ball path (paddle left alone) until it reaches the paddle line (contact_frame -1 if it doesn't)."""
        self.stats["predict"] += 1
        sim = self.sim
        sim.sync()
        ap = _Approach(path={frame: ball})
        for _ in range(self.HORIZON):
            r = sim.frame(self.NOOP)
            ram = sim.ram()
            x, y = int(ram[self.ALONG]), int(ram[self.TOWARD])
            if self._point_over(r, ram):
                return ap  # no contact: the path alone, so that the next steps can check it
            f = sim.frame_number()
            ap.path[f] = (x, y)
            if y >= self.LINE:
                ap.contact_frame, ap.contact_pos = f, (x, y)
                return ap
        return ap

    def _rollout(self, first: int, target: int, contact_frame: int, pos: int) -> tuple[bool, int]:
        """Play `first`, then the base controller, in the copy: (ball sent back, paddle at contact)."""
        sim = self.sim
        sim.sync()
        prev, action, pos_c = pos, first, None
        for _ in range((contact_frame - sim.frame_number()) // sim.frame_skip + 12):
            for _ in range(sim.frame_skip):
                r = sim.frame(action)
                ram = sim.ram()
                if sim.frame_number() == contact_frame:
                    pos_c = int(ram[self.PADDLE])
                if self._lost(r, ram):
                    return False, pos_c if pos_c is not None else int(ram[self.PADDLE])
                if pos_c is not None and ram[self.TOWARD] < self.LINE - 4:
                    return True, pos_c
            cur = int(ram[self.PADDLE])
            action, prev = self._base(cur, cur - prev, target), cur
        return False, pos_c if pos_c is not None else pos

    def _mpc(self, target: int, center: int, contact_frame: int, pos: int, vel: int) -> int:
        """Best first action by rollouts in the copy: contact within AIM_ZONE of the target beats
        contact within ZONE of the paddle's centre beats any return beats the nearest miss; ties go to
        NOOP, then the base controller's action (fewer action changes, less exposure to sticky actions)."""
        self.stats["mpc"] += 1
        base = self._base(pos, vel, target)
        best, best_score = base, None
        for a in dict.fromkeys((self.NOOP, base, self.PLUS, self.MINUS)):
            hit, pos_c = self._rollout(a, target, contact_frame, pos)
            if not hit:
                score = 3000 + abs(pos_c - center)
            elif abs(pos_c - target) <= self.AIM_ZONE:
                score = 0
            elif abs(pos_c - center) <= self.ZONE:
                score = 1000
            else:
                score = 2000 + abs(pos_c - center)
            if score == 0:
                return a
            if best_score is None or score < best_score:
                best, best_score = a, score
        return best


class PongExpert(_PaddleExpert):
    """Pong from RAM: predict where the ball meets the paddle (emulator copy), steer there by rollouts,
    and hit it off-centre, which sends it back steeply enough that the computer usually misses."""

    ROM = "pong"
    PADDLE, ALONG, TOWARD = 51, 54, 49  # RAM: player paddle y, ball y, ball x (0 = no ball)
    LINE = 188  # ball x at which the ball reaches the player's paddle
    NOOP, PLUS, MINUS = 0, 3, 2  # minimal set: LEFT moves the paddle down (y up), RIGHT up
    OFFSET = -6  # paddle y = ball y - 6 puts the ball on the paddle's middle
    AIMS = (7, 7, 4, -7, 8, 0, -4, 6, -6)  # off-centre hits win points; vary them to break cycles
    REST = 120

    def _in_play(self, ram: np.ndarray) -> bool:
        return ram[self.ALONG] != 0

    def _lost(self, reward: float, ram: np.ndarray) -> bool:
        return reward < 0 or ram[self.ALONG] == 0

    def _point_over(self, reward: float, ram: np.ndarray) -> bool:
        return reward != 0 or ram[self.ALONG] == 0


class BreakoutExpert(_PaddleExpert):
    """Breakout from RAM: FIRE to serve, predict where the ball comes down (emulator copy, bricks
    included), steer the paddle there by rollouts."""

    ROM = "breakout"
    PADDLE, ALONG, TOWARD = 72, 99, 101  # RAM: paddle x, ball x, ball y (0 = no ball)
    LINE = 177  # ball y at which the ball reaches the paddle's row
    NOOP, FIRE, PLUS, MINUS = 0, 1, 2, 3
    OFFSET = -9  # paddle x = ball x - 9 centres a full-width paddle under the ball
    REST = 120
    ZONE, AIM_ZONE, DEAD = 5, 5, 8

    def _in_play(self, ram: np.ndarray) -> bool:
        return 0 < ram[self.TOWARD] < 200

    def _idle(self, ram: np.ndarray, pos: int, vel: int) -> int:
        return self.FIRE

    def _lost(self, reward: float, ram: np.ndarray) -> bool:
        return ram[self.TOWARD] == 0 or ram[self.TOWARD] > self.LINE + 16
