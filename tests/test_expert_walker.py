"""The SAC walker expert: its checkpoint loads, and it walks far better than random (real env)."""

from __future__ import annotations

import numpy as np
import pytest

from generalist import envs
from generalist.experts import make_policy
from generalist.experts.base import Policy
from generalist.experts.sac import WALKER_CHECKPOINT, WalkerSACExpert


@pytest.fixture(scope="module")
def env():
    e = envs.make("dmc-walker-walk")
    yield e
    e.close()


def _short_return(env, policy: Policy, seed: int, steps: int = 200) -> float:
    obs, _ = env.reset(seed=seed)
    policy.reset()
    ret = 0.0
    for _ in range(steps):
        obs, r, term, trunc, _ = env.step(policy.act(obs))
        ret += r
        if term or trunc:
            break
    return ret


def test_checkpoint_is_small_and_loads(env):
    assert WALKER_CHECKPOINT.exists()
    assert WALKER_CHECKPOINT.stat().st_size < 2_000_000
    expert = make_policy("expert", env, seed=0)
    assert isinstance(expert, WalkerSACExpert)
    assert expert.meta["task"] == "dmc-walker-walk"
    obs, _ = env.reset(seed=0)
    expert.reset()
    a = expert.act(obs)
    assert a.dtype == np.float32 and a.shape == env.action_space.shape
    assert np.all(np.abs(a) <= 1.0)
    # The action is held for `action_repeat` calls, then recomputed.
    for _ in range(expert.action_repeat - 1):
        np.testing.assert_array_equal(expert.act(obs), a)


def test_expert_beats_random_over_200_steps(env):
    seed = 123
    expert = _short_return(env, make_policy("expert", env, seed=seed), seed)
    random = _short_return(env, make_policy("random", env, seed=seed), seed)
    # Walking earns ~1 per step once upright; random flailing earns a few percent of that.
    assert expert > 100.0, expert
    assert expert > random + 75.0, (expert, random)
