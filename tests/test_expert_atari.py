"""Real-env checks of the scripted Atari experts: they beat random, and look-ahead leaves the env alone."""

from __future__ import annotations

import numpy as np
import pytest

from generalist import envs
from generalist.experts import make_policy
from generalist.experts.atari import BreakoutExpert, PongExpert


@pytest.fixture(scope="module")
def pong():
    env = envs.make("atari-pong")
    yield env
    env.close()


@pytest.fixture(scope="module")
def breakout():
    env = envs.make("atari-breakout")
    yield env
    env.close()


def _play(env, kind: str, steps: int, seed: int = 0) -> tuple[float, float]:
    """(points won, points lost) in the first `steps` steps of an episode."""
    obs, _ = env.reset(seed=seed)
    policy = make_policy(kind, env, seed=seed)
    policy.reset()
    won = lost = 0.0
    for _ in range(steps):
        obs, r, terminated, truncated, _ = env.step(policy.act(obs))
        won, lost = won + max(r, 0.0), lost + max(-r, 0.0)
        if terminated or truncated:
            break
    return won, lost


def test_registry_builds_the_atari_experts(pong, breakout):
    assert isinstance(make_policy("expert", pong), PongExpert)
    assert isinstance(make_policy("expert", breakout), BreakoutExpert)


def test_pong_expert_outscores_the_computer(pong):
    won, lost = _play(pong, "expert", 1500)
    rand_won, rand_lost = _play(pong, "random", 1500)
    assert won - lost >= 4, (won, lost)
    assert won - lost > rand_won - rand_lost


def test_breakout_expert_beats_random(breakout):
    won, _ = _play(breakout, "expert", 500)
    rand_won, _ = _play(breakout, "random", 500)
    assert won >= 10, won
    assert won > rand_won + 5


@pytest.mark.parametrize("task", ["atari-pong", "atari-breakout"])
def test_lookahead_leaves_the_observation_stream_unchanged(task):
    """Random actions with the expert planning (look-ahead) before every step give exactly the
    observations, rewards and episode end of the same actions without it (sticky actions included)."""
    env = envs.make(task)
    try:
        actions = np.random.default_rng(1).integers(env.action_space.n, size=3000)

        def run(with_expert: bool):
            obs, _ = env.reset(seed=7)
            expert = make_policy("expert", env, seed=0)
            expert.reset()
            frames, rewards = [obs["image"].copy()], []
            for a in actions:
                if with_expert:
                    expert.act(obs)
                obs, r, terminated, truncated, info = env.step(int(a))
                frames.append(obs["image"].copy())
                rewards.append(r)
                if terminated or truncated:
                    break
            return np.stack(frames), rewards, terminated, truncated, info, expert

        f0, r0, term0, trunc0, info0, _ = run(False)
        f1, r1, term1, trunc1, info1, expert = run(True)
        assert expert.stats["predict"] > 0 and expert.sim.frames > 0  # look-ahead did run
        assert f0.shape == f1.shape and np.array_equal(f0, f1)
        assert r0 == r1 and (term0, trunc0, info0) == (term1, trunc1, info1)
        if task == "atari-breakout":  # random play loses all five balls well within 3000 steps
            assert term1 and info1["lives"] == 0
    finally:
        env.close()
