"""Acting from a model: valid actions for every kind of task, cached decoding = full recomputation."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from generalist import envs
from generalist.agent.model import GatoModel, ModelConfig
from generalist.agent.policy import AgentPolicy, UnknownTaskForCheckpoint
from generalist.agent.tokenizer import TimestepLayout


def _meta(task: str, env) -> dict:
    obs = {k: tuple(s.shape) for k, s in env.observation_space.spaces.items()}
    sp = env.action_space
    layout = TimestepLayout.for_spaces(obs, tuple(sp.shape or ()), int(sp.n) if hasattr(sp, "n") else None)
    return {"layouts": {task: asdict(layout)}}


@pytest.mark.parametrize("task,context", [("dmc-walker-walk", 200), ("atari-breakout", 120),
                                          ("metaworld-reach", 300)])
def test_cached_actions_equal_recomputed(task, context):
    torch.manual_seed(0)
    model = GatoModel(ModelConfig(n_layer=2, n_head=2, n_embd=64, max_seq_len=context)).eval()
    env = envs.make(task)
    meta = _meta(task, env)
    fast = AgentPolicy(model, meta, task, context=context, use_cache=True)
    slow = AgentPolicy(model, meta, task, context=context, use_cache=False)
    obs, _ = env.reset(seed=0)
    rebuilt = 0
    for _ in range(25):  # small contexts: several roll-overs happen
        a, b = fast.act(obs), slow.act(obs)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert env.action_space.contains(a if np.ndim(a) == 0 else np.asarray(a, np.float32))
        rebuilt += fast.cached_len <= fast.layout.length * 2
        obs, *_ = env.step(a)
    assert rebuilt >= 2  # the rolling window actually rolled
    env.close()


def test_unknown_task_is_refused():
    model = GatoModel(ModelConfig(n_layer=1, n_head=1, n_embd=32))
    env = envs.make("dmc-reacher-easy")
    with pytest.raises(UnknownTaskForCheckpoint, match="never trained on 'atari-pong'"):
        AgentPolicy(model, _meta("dmc-reacher-easy", env), "atari-pong")
