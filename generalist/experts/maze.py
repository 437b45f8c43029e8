"""Memory Maze expert: shortest path over the privileged maze layout + short-horizon steering search.

Every step it (1) takes the geodesic distance-to-target field of the maze (Dijkstra over a grid 8x
finer than the maze cells, avoiding walls by the ball's radius; cached per target), and (2) searches
all 5-step sequences of the 5 moving actions through a kinematic model of the rolling ball fitted to
the env (speed 0.25 cells/step, 18.4 deg/step turns, first-order lag), scoring each by the distance
field where it ends, heading alignment with the path, speed, wall clearance, and reaching the target.
It acts on privileged state only (maze layout, agent position/direction, target position).
"""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np

from generalist.envs.base import TaskEnv
from generalist.experts.base import Policy

# action -> (forward 0/1, turn: +1 = left = counter-clockwise, -1 = right)
ACTION_FWD = np.array([0, 1, 0, 0, 1, 1], dtype=np.float64)
ACTION_TURN = np.array([0, 0, 1, -1, 1, -1], dtype=np.float64)

SPEED = 0.2499  # cells per step at full forward speed
TURN = math.radians(18.4)  # heading change per step while turning
REACH = 0.33  # the ball touches a target within ~0.38 cells of its centre
BALL = 0.1  # ball radius in cells (0.2 m, cells are 2 m)
RES = 8  # distance-field nodes per cell
PEN_RES = 16  # wall-penetration map samples per cell


def _clearance(layout: np.ndarray, res: int) -> np.ndarray:
    """Distance (cells) from each fine-grid point to the nearest wall cell (outside = wall)."""
    h, w = layout.shape
    ys = (np.arange(h * res) + 0.5) / res
    xs = (np.arange(w * res) + 0.5) / res
    walls = [(i, j) for i in range(-1, h + 1) for j in range(-1, w + 1)
             if not (0 <= i < h and 0 <= j < w) or layout[i, j] == 0]
    wy = np.array([i for i, _ in walls], dtype=np.float64)[:, None, None]
    wx = np.array([j for _, j in walls], dtype=np.float64)[:, None, None]
    dy = np.maximum(np.maximum(wy - ys[None, :, None], ys[None, :, None] - (wy + 1)), 0.0)
    dx = np.maximum(np.maximum(wx - xs[None, None, :], xs[None, None, :] - (wx + 1)), 0.0)
    return np.sqrt(dx**2 + dy**2).min(axis=0)


def _penetration_map(layout: np.ndarray, res: int = PEN_RES) -> np.ndarray:
    """How far a ball centred at each fine-grid point would overlap a wall (0 when clear)."""
    return np.maximum(BALL + 0.02 - _clearance(layout, res), 0.0)


def _geodesic_field(layout: np.ndarray, target: np.ndarray, res: int = RES,
                    clearance: float = BALL + 0.08) -> np.ndarray:
    """Path length (cells) from every fine-grid node to `target`, keeping `clearance` from walls.

    Nodes closer to a wall than `clearance` are passable at a growing extra cost, so the field is
    finite in every free cell and leads away from walls; nodes inside walls are inf.
    """
    clear = _clearance(layout, res)  # (nh, nw); 0 inside walls
    nh, nw = clear.shape
    inside = clear <= 0.0
    cost = 1.0 + 6.0 * np.clip((clearance - clear) / clearance, 0.0, 1.0) ** 2
    dist = np.full((nh, nw), np.inf)
    ty, tx = int(target[1] * res), int(target[0] * res)
    ty, tx = min(max(ty, 0), nh - 1), min(max(tx, 0), nw - 1)
    dist[ty, tx] = 0.0
    heap = [(0.0, ty, tx)]
    steps = [(dy_, dx_, math.hypot(dy_, dx_) / res) for dy_ in (-1, 0, 1) for dx_ in (-1, 0, 1)
             if dy_ or dx_]
    while heap:
        d, y, x = heapq.heappop(heap)
        if d > dist[y, x]:
            continue
        for dy_, dx_, length in steps:
            ny, nx = y + dy_, x + dx_
            if 0 <= ny < nh and 0 <= nx < nw and not inside[ny, nx]:
                if dy_ and dx_ and (inside[y, nx] or inside[ny, x]):
                    continue  # no diagonal squeezing past a wall corner
                nd = d + length * 0.5 * (cost[y, x] + cost[ny, nx])
                if nd < dist[ny, nx]:
                    dist[ny, nx] = nd
                    heapq.heappush(heap, (nd, ny, nx))
    return dist


class MazePlannerExpert(Policy):
    """Shortest path to the current target (privileged layout) + model-based steering search."""

    def __init__(self, env: TaskEnv, seed: int | None = None, horizon: int = 5,
                 w_heading: float = 0.5, w_speed: float = 1.0, w_wall: float = 3.0):
        super().__init__(env, seed)
        self.horizon = horizon
        self.w_heading = w_heading
        self.w_speed = w_speed
        self.w_wall = w_wall
        seqs = np.array(list(itertools.product([1, 2, 3, 4, 5], repeat=horizon)), dtype=np.int64)
        self._seqs = seqs
        self._fwd = ACTION_FWD[seqs]  # (n, H)
        self._turn = ACTION_TURN[seqs]
        self.reset()

    def reset(self) -> None:
        """Forget the previous episode's maze, fields and motion state."""
        self._fields: dict[tuple[float, float], np.ndarray] = {}
        self._layout_key: bytes | None = None
        self._clear: np.ndarray | None = None
        self._prev_pos: np.ndarray | None = None
        self._prev_th = 0.0
        self._v = 0.0
        self._w = 0.0
        self._last_action = 0

    # ---------------------------------------------------------------- maps
    def _maps(self, layout: np.ndarray, target: np.ndarray) -> np.ndarray:
        key = layout.tobytes()
        if key != self._layout_key:
            self._layout_key, self._fields = key, {}
            self._pen_map = _penetration_map(layout)
        tkey = (round(float(target[0]), 2), round(float(target[1]), 2))
        if tkey not in self._fields:
            f = _geodesic_field(layout, target)
            self._fields[tkey] = np.where(np.isfinite(f), f, 50.0)
        return self._fields[tkey]

    def _field_at(self, field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of a fine-grid field at continuous positions (cells)."""
        nh, nw = field.shape
        fx = np.clip(x * RES - 0.5, 0, nw - 1.001)
        fy = np.clip(y * RES - 0.5, 0, nh - 1.001)
        x0, y0 = fx.astype(np.int64), fy.astype(np.int64)
        ax, ay = fx - x0, fy - y0
        return ((1 - ay) * ((1 - ax) * field[y0, x0] + ax * field[y0, x0 + 1])
                + ay * ((1 - ax) * field[y0 + 1, x0] + ax * field[y0 + 1, x0 + 1]))

    def _wall_penalty(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """How deep a ball at (x, y) would be in a wall (0 when clear), from a precomputed map."""
        pm = self._pen_map
        iy = np.clip((y * PEN_RES).astype(np.int64), 0, pm.shape[0] - 1)
        ix = np.clip((x * PEN_RES).astype(np.int64), 0, pm.shape[1] - 1)
        return pm[iy, ix]

    # ---------------------------------------------------------------- acting
    def act(self, obs: dict[str, np.ndarray]) -> int:
        p = self.privileged()
        layout = np.asarray(p["maze_layout"])
        pos = np.asarray(p["agent_pos"], dtype=np.float64)
        d = np.asarray(p["agent_dir"], dtype=np.float64)
        target = np.asarray(p["target_pos"], dtype=np.float64)
        th = math.atan2(d[1], d[0])
        if self._prev_pos is not None:  # observed motion of the last step -> lag states
            dth = (th - self._prev_th + math.pi) % (2 * math.pi) - math.pi
            mid = self._prev_th + dth / 2
            step = pos - self._prev_pos
            self._v = float(step[0] * math.cos(mid) + step[1] * math.sin(mid))
            self._w = dth
        field = self._maps(layout, target)
        action = self._plan(field, pos, th, target)
        self._prev_pos, self._prev_th, self._last_action = pos, th, action
        return action

    def _plan(self, field: np.ndarray, pos: np.ndarray, th: float, target: np.ndarray) -> int:
        n, horizon = self._fwd.shape
        x = np.full(n, pos[0])
        y = np.full(n, pos[1])
        t = np.full(n, th)
        v = np.full(n, self._v)
        w = np.full(n, self._w)
        prev_f = np.full(n, ACTION_FWD[self._last_action])
        prev_t = np.full(n, ACTION_TURN[self._last_action])
        reached = np.full(n, horizon + 1.0)
        wall = np.zeros(n)
        for k in range(horizon):
            f, tr = self._fwd[:, k], self._turn[:, k]
            vt, wt = SPEED * f, TURN * tr
            v = vt + (v - vt) * np.where(f != prev_f, 0.56, 0.23)
            w = wt + (w - wt) * np.where(tr != prev_t, 0.18, 0.0)
            mid = t + w / 2
            x = x + v * np.cos(mid)
            y = y + v * np.sin(mid)
            t = t + w
            prev_f, prev_t = f, tr
            wall += self._wall_penalty(x, y)
            hit = (np.hypot(x - target[0], y - target[1]) < REACH) & (reached > horizon)
            reached = np.where(hit, k + 1.0, reached)
        dist = self._field_at(field, x, y)
        # heading: compare with the field's descent direction at the end point
        e = 0.5 / RES
        gx = self._field_at(field, x + e, y) - self._field_at(field, x - e, y)
        gy = self._field_at(field, x, y + e) - self._field_at(field, x, y - e)
        gnorm = np.hypot(gx, gy) + 1e-9
        align = -(gx * np.cos(t) + gy * np.sin(t)) / gnorm  # 1 = facing down the path
        cost = (dist - self.w_heading * align - self.w_speed * v + self.w_wall * 100.0 * wall)
        cost = np.where(reached <= horizon, -100.0 + reached, cost)
        return int(self._seqs[int(np.argmin(cost)), 0])
