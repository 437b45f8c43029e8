"""Atari 2600 games through ALE v5: 84x84 grayscale, frameskip 4 with max-pooling, sticky actions 0.25.

Sticky actions (repeat_action_probability=0.25, the v5 default recommended by Machado et al. 2018) are
kept so that neither the experts nor the agent can exploit ALE's determinism. No frame stacking: the
agent's context window is its memory.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.wrappers import AtariPreprocessing

from generalist.envs.base import TaskEnv
from generalist.envs.spec import Display, discrete_actions, image_space, require_same

STICKY_ACTION_PROB = 0.25
FRAME_SKIP = 4
SCREEN = 84
MINIMAL_ACTIONS = {"Pong": 6, "Breakout": 4}  # ALE's minimal action set per game (checked on construction)

DISPLAY = Display(color="#4C72B0", video_stride=2, sized_render=False)  # renders at its own, fixed size

def spaces(game: str) -> tuple[gym.spaces.Dict, gym.spaces.Discrete]:
    """The observation and action spaces of one game, without importing ale_py."""
    return image_space(SCREEN, SCREEN, 1), discrete_actions(MINIMAL_ACTIONS[game])


def _register_ale() -> None:
    """Import ale_py on first use and register its `ALE/...` ids with gymnasium."""
    import ale_py

    gym.register_envs(ale_py)


class AtariEnv(TaskEnv):
    """One ALE game; observation {'image': (84, 84, 1) uint8}, minimal action set."""

    def __init__(self, game: str, max_episode_steps: int = 27_000, render_mode: str | None = None):
        _register_ale()
        base = gym.make(
            f"ALE/{game}-v5",
            frameskip=1,
            repeat_action_probability=STICKY_ACTION_PROB,
            full_action_space=False,
            max_num_frames_per_episode=max_episode_steps * FRAME_SKIP,
            render_mode="rgb_array" if render_mode == "rgb_array" else None,
        )
        self._env = AtariPreprocessing(
            base, noop_max=0, frame_skip=FRAME_SKIP, screen_size=SCREEN, terminal_on_life_loss=False,
            grayscale_obs=True, grayscale_newaxis=True, scale_obs=False,
        )
        self.game = game
        self.render_mode = render_mode
        self.max_episode_steps = max_episode_steps
        self.observation_space, self.action_space = spaces(game)
        require_same(f"atari {game} actions", self.action_space.n, int(self._env.action_space.n))
        self.ale = base.unwrapped.ale
        self.action_meanings = base.unwrapped.get_action_meanings()
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.action_space.seed(seed)
        obs, info = self._env.reset(seed=seed, options=options)
        self._t = 0
        return {"image": obs}, self._info(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self._env.step(int(action))
        self._t += 1
        truncated = bool(truncated) or (self._t >= self.max_episode_steps and not terminated)
        return {"image": obs}, float(reward), bool(terminated), truncated, self._info(info)

    @staticmethod
    def _info(info: dict) -> dict:
        return {"lives": int(info.get("lives", 0))}

    def render(self):
        return self._env.render()

    def privileged(self) -> dict[str, Any]:
        """Expert-only: the console's 128 bytes of RAM, the episode's frame number, the emulator frames
        per env step, and `clone_state()`, which copies the emulator's state without changing it."""
        return {"ram": self.ale.getRAM(), "frame": self.ale.getEpisodeFrameNumber(), "frame_skip": FRAME_SKIP,
                "clone_state": self.ale.cloneState}

    def close(self):
        self._env.close()
