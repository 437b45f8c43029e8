"""Memory Maze (9x9 to 15x15) through its dm_env task API, wrapped as a gymnasium env (64x64 RGB, 6 actions)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from generalist.envs.base import TaskEnv
from generalist.envs.rendering import configure_headless_gl
from generalist.envs.spec import Display, discrete_actions, image_space, require_same

PRIVILEGED_KEYS = ("agent_pos", "agent_dir", "targets_pos", "targets_vec", "target_pos", "target_vec",
                   "maze_layout")
ACTION_NAMES = ("noop", "forward", "left", "right", "forward_left", "forward_right")
IMAGE = (64, 64, 3)  # memory-maze's default image observation
# upstream's four sizes -> episode steps (its time limit of 250/500/750/1000 s at 4 actions a second)
EPISODE_STEPS = {9: 1000, 11: 2000, 13: 3000, 15: 4000}

DISPLAY = Display(color="#DD8452", video_stride=2, sized_render=False)  # renders at its own, fixed size

def spaces() -> tuple[gym.spaces.Dict, gym.spaces.Discrete]:
    """The observation and action spaces of every maze size, without importing memory_maze."""
    return image_space(*IMAGE), discrete_actions(len(ACTION_NAMES))


def _speedups() -> Any:
    """generalist.envs.maze_speedups (imports dm_control), on first use after choosing a GL backend."""
    configure_headless_gl()
    from generalist.envs import maze_speedups

    return maze_speedups


def make_upstream(size: int = 9, seed: int | None = None) -> Any:
    """Upstream's `memory_maze.tasks.memory_maze_<size>x<size>(seed=seed, global_observables=True)`."""
    configure_headless_gl()
    from memory_maze import tasks as mm_tasks

    factory = getattr(mm_tasks, f"memory_maze_{size}x{size}")
    return factory(seed=seed, global_observables=True)


def reseed(env: Any, seed: int) -> None:
    """Put a built memory-maze env in the state upstream's constructor leaves for `seed`.

    Upstream seeds one RandomState with `seed`, draws the labmaze generator's seed from it, and hands
    the same RandomState to composer. We reseed that RandomState in place (every holder sees it),
    redraw the maze seed, and give the arena a fresh labmaze generator with it; the next reset() is
    then upstream's first reset for `seed` (checked image-for-image in tests/test_maze.py).
    """
    core = _speedups().unwrap(env)
    core.random_state.seed(seed)
    arena = core.task._maze_arena
    old = arena._maze
    arena._maze = type(old)(
        height=old.height, width=old.width, max_rooms=old.max_rooms,
        room_min_size=old.room_min_size, room_max_size=old.room_max_size,
        max_variations=old.max_variations, spawns_per_room=old.spawns_per_room,
        objects_per_room=old.objects_per_room, simplify=True,  # MazeWithTargetsArena's default
        random_seed=core.random_state.randint(2147483648),
    )


class MemoryMazeEnv(TaskEnv):
    """memory-maze `memory_maze_<size>x<size>`; observation {'image': (64, 64, 3) uint8}.

    The target colour is drawn as a border in the image (upstream's default), so the image alone
    tells the agent what to look for. reset(seed=s) gives the episode of upstream's env built with
    seed=s; reset() without a seed continues the env's own random stream, as upstream's reset() does.
    The env is built once and reseeded (reset ~1 s instead of a ~5 s rebuild); steps run ~6x faster
    than upstream with identical frames and rewards (generalist/envs/maze_speedups.py;
    speedups=False gives upstream's own code paths).
    """

    def __init__(self, size: int = 9, render_mode: str | None = None, speedups: bool = True):
        self.size = size
        self.render_mode = render_mode
        self.speedups = speedups
        self._env = None
        self._ts = None
        self.observation_space, self.action_space = spaces()

    def _build(self, seed: int) -> None:
        self._env = make_upstream(self.size, seed)
        require_same("memory-maze image", IMAGE, tuple(self._env.observation_spec()["image"].shape))
        if self.speedups:
            _speedups().apply_speedups(self._env)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._env is None:
            if seed is None:
                seed = int(self.np_random.integers(2**31))
            self._build(seed)
        elif seed is not None:
            reseed(self._env, seed)
        if seed is not None:
            self.action_space.seed(seed)
        self._ts = self._env.reset()
        return self._obs(self._ts), {}

    def _obs(self, ts) -> dict[str, np.ndarray]:
        return {"image": np.array(ts.observation["image"], dtype=np.uint8)}

    def step(self, action):
        ts = self._env.step(int(action))
        self._ts = ts
        last = ts.last()
        terminated = bool(last and ts.discount == 0.0)
        truncated = bool(last and not terminated)
        return self._obs(ts), float(ts.reward or 0.0), terminated, truncated, {}

    def render(self):
        return self._obs(self._ts)["image"]

    def privileged(self) -> dict[str, Any]:
        """Maze layout (1 = free, [0, 0] bottom-left), agent and target positions in grid units (expert-only)."""
        obs = self._ts.observation
        out = {k: np.asarray(obs[k]) for k in PRIVILEGED_KEYS if k in obs}
        out["target_index"] = int(_speedups().unwrap(self._env).task._current_target_ix)
        return out

    def close(self):
        if self._env is not None:
            self._env.close()
            self._env = None
