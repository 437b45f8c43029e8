"""Memory Maze: the sped-up env is upstream's episode for episode, reset(seed) reproduces, the expert works."""

from __future__ import annotations

import numpy as np
import pytest

from generalist import envs
from generalist.envs.maze import MemoryMazeEnv, make_upstream
from generalist.envs.maze_speedups import unwrap
from generalist.experts import make_policy
from generalist.experts.maze import MazePlannerExpert


@pytest.fixture(scope="module")
def env():
    e = envs.make("memorymaze-9x9")
    yield e
    e.close()


def _replay_upstream(seed: int, actions: list[int]) -> tuple[list[np.ndarray], list[float], np.ndarray]:
    up = make_upstream(9, seed)
    try:
        ts = up.reset()
        frames, rewards = [ts.observation["image"].copy()], []
        for a in actions:
            ts = up.step(a)
            frames.append(ts.observation["image"].copy())
            rewards.append(float(ts.reward or 0.0))
        return frames, rewards, np.asarray(ts.observation["maze_layout"])
    finally:
        up.close()


def test_matches_upstream_on_random_actions(env):
    actions = [int(a) for a in np.random.default_rng(0).integers(6, size=100)]
    obs, _ = env.reset(seed=5)
    assert set(obs) == {"image"} and obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    frames, rewards = [obs["image"]], []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        frames.append(obs["image"])
        rewards.append(r)
    up_frames, up_rewards, up_layout = _replay_upstream(5, actions)
    assert all(np.array_equal(a, b) for a, b in zip(frames, up_frames, strict=True))
    assert rewards == up_rewards
    assert np.array_equal(env.privileged()["maze_layout"], up_layout)


def test_reseeded_reset_matches_upstream_with_rewards(env):
    """reset(seed) on a used env (reseed, no rebuild) is upstream's first episode, rewards included."""
    env.reset(seed=1)  # leave the env in some other episode first
    obs, _ = env.reset(seed=7)
    expert = MazePlannerExpert(env, seed=0)
    frames, actions, rewards = [obs["image"]], [], []
    for _ in range(100):
        a = expert.act(obs)
        obs, r, *_ = env.step(a)
        frames.append(obs["image"])
        actions.append(a)
        rewards.append(r)
    assert sum(rewards) >= 1, "the expert should collect a target, so that rewards are compared too"
    up_frames, up_rewards, _ = _replay_upstream(7, actions)
    assert all(np.array_equal(a, b) for a, b in zip(frames, up_frames, strict=True))
    assert rewards == up_rewards

    # the same seed again gives the same episode
    obs, _ = env.reset(seed=7)
    assert np.array_equal(obs["image"], frames[0])
    for k, a in enumerate(actions[:30]):
        obs, r, *_ = env.step(a)
        assert np.array_equal(obs["image"], frames[k + 1]) and r == rewards[k]


def test_privileged_state(env):
    env.reset(seed=3)
    p = env.privileged()
    layout, pos, target = p["maze_layout"], p["agent_pos"], p["target_pos"]
    assert layout.shape == (9, 9) and set(np.unique(layout)) <= {0, 1}
    assert layout[int(pos[1]), int(pos[0])] == 1  # the agent stands on a free cell
    assert layout[int(target[1]), int(target[0])] == 1
    assert p["targets_pos"].shape == (3, 2) and 0 <= p["target_index"] < 3
    assert np.isclose(np.linalg.norm(p["agent_dir"]), 1.0)


def test_speedups_installed(env):
    env.reset(seed=2)
    core = unwrap(env._env)
    assert all("vectorized" in t._update_activation.__name__ for t in core.task._targets)
    assert hasattr(core._physics, "_generalist_cameras")
    assert isinstance(env.unwrapped, MemoryMazeEnv) and env.unwrapped.speedups


def test_expert_beats_random(env):
    def run(kind: str) -> float:
        obs, _ = env.reset(seed=123)
        policy = make_policy(kind, env, seed=123)
        policy.reset()
        total = 0.0
        for _ in range(200):
            obs, r, *_ = env.step(policy.act(obs))
            total += r
        return total

    expert, rand = run("expert"), run("random")
    assert expert >= 3 and expert > rand, (expert, rand)
