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


def _meta(task: str, env, encoding: str = "tokens") -> dict:
    obs = {k: tuple(s.shape) for k, s in env.observation_space.spaces.items()}
    sp = env.action_space
    layout = TimestepLayout.for_spaces(obs, tuple(sp.shape or ()), int(sp.n) if hasattr(sp, "n") else None,
                                       encoding=encoding)
    return {"layouts": {task: asdict(layout)}}


@pytest.mark.parametrize("task,context,hide,encoding", [
    ("dmc-walker-walk", 200, False, "tokens"), ("atari-breakout", 120, False, "tokens"),
    ("metaworld-reach", 300, False, "tokens"), ("dmc-walker-walk", 200, True, "tokens"),
    ("metaworld-reach", 60, True, "vector"), ("atari-breakout", 30, False, "vector")])
def test_cached_actions_equal_recomputed(task, context, hide, encoding):
    torch.manual_seed(0)
    model = GatoModel(ModelConfig(n_layer=2, n_head=2, n_embd=64, max_seq_len=context)).eval()
    env = envs.make(task)
    meta = {**_meta(task, env, encoding), "train": {"hide_actions": hide}}
    fast = AgentPolicy(model, meta, task, context=context, use_cache=True)
    slow = AgentPolicy(model, meta, task, context=context, use_cache=False)
    obs, _ = env.reset(seed=0)
    for _ in range(25):  # small contexts: several roll-overs happen
        a, b = fast.act(obs), slow.act(obs)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert env.action_space.contains(a if np.ndim(a) == 0 else np.asarray(a, np.float32))
        obs, *_ = env.step(a)
    assert fast.rebuilds >= 3  # the rolling window actually rolled (twice after the first step)
    env.close()


@pytest.mark.parametrize("use_cache,memory", [(True, 0), (False, 0), (False, 3)])
def test_one_pass_decoding_equals_token_by_token(use_cache, memory):
    """With hidden actions all action dimensions are decoded from one forward pass: the same actions
    and the same logits as feeding the decoded tokens one at a time."""
    torch.manual_seed(0)
    task, context = "metaworld-reach", 60
    model = GatoModel(ModelConfig(n_layer=2, n_head=2, n_embd=64, max_seq_len=context)).eval()
    env = envs.make(task)
    meta = {**_meta(task, env, "vector"), "train": {"hide_actions": True, "max_timesteps": memory}}
    one = AgentPolicy(model, meta, task, context=context, use_cache=use_cache)
    seq = AgentPolicy(model, meta, task, context=context, use_cache=use_cache)
    seq.one_pass = False
    obs, _ = env.reset(seed=0)
    for _ in range(12):
        a, b = one.act(obs), seq.act(obs)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        torch.testing.assert_close(one.first_logits, seq.first_logits, rtol=1e-5, atol=1e-5)
        obs, *_ = env.step(a)
    env.close()


def test_unknown_task_is_refused():
    model = GatoModel(ModelConfig(n_layer=1, n_head=1, n_embd=32))
    env = envs.make("dmc-reacher-easy")
    with pytest.raises(UnknownTaskForCheckpoint, match="never trained on 'atari-pong'"):
        AgentPolicy(model, _meta("dmc-reacher-easy", env), "atari-pong")


def test_hidden_actions_are_invisible_to_the_model():
    """HIDDEN_TOKEN slots (what action_loss feeds with hide_actions) carry nothing of the action's value."""
    torch.manual_seed(0)
    model = GatoModel(ModelConfig(n_layer=2, n_head=2, n_embd=64, max_seq_len=64)).eval()
    tokens = torch.randint(1024, 2048, (2, 64))
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, 7::8] = True  # one action token per 8-slot timestep
    tokens[:, 6::8] = 2048  # separators
    batch = {"tokens": tokens, "local_positions": torch.arange(64).remainder(8).expand(2, 64),
             "loss_mask": mask, "patches": None, "patch_pos": None}
    other = dict(batch, tokens=tokens.clone())
    other["tokens"][:, 7:56:8] = torch.randint(1024, 2048, (2, 7))  # change every action but the last
    logits = {}
    for hide in (False, True):
        with torch.no_grad():
            inputs = [b["tokens"].masked_fill(mask, -2) if hide else b["tokens"] for b in (batch, other)]
            outs = [model(x, batch["local_positions"])[0] for x in inputs]
        logits[hide] = torch.allclose(outs[0][:, -2], outs[1][:, -2])
    assert logits == {False: False, True: True}  # shown actions change the prediction; hidden ones cannot


@pytest.mark.parametrize("task,hide,memory,encoding,temperature", [
    ("metaworld-reach", True, 0, "vector", 0.0), ("atari-breakout", False, 0, "tokens", 0.0),
    ("dmc-cartpole-swingup", True, 2, "vector", 1.0)])
def test_lockstep_episodes_act_as_single_ones(task, hide, memory, encoding, temperature):
    """Episodes played in lockstep (one batched forward pass, a KV cache row each, rows dropped as episodes
    end) get the actions each would get alone, sampled ones included (each episode samples from its seed)."""
    torch.manual_seed(0)
    context = 60 if encoding == "vector" else 120
    model = GatoModel(ModelConfig(n_layer=2, n_head=2, n_embd=64, max_seq_len=context)).eval()
    meta = {**_meta(task, envs.make(task), encoding), "train": {"hide_actions": hide, "max_timesteps": memory}}
    seeds, steps = [3, 4, 5], 14
    alone = []
    for s in seeds:
        env, pol = envs.make(task), AgentPolicy(model, meta, task, context=context, temperature=temperature)
        pol.seed(s)
        obs, _ = env.reset(seed=s)
        acts = []
        for _ in range(steps):
            acts.append(np.asarray(pol.act(obs)))
            obs, *_ = env.step(acts[-1] if acts[-1].ndim else int(acts[-1]))
        alone.append(acts)
    batch = AgentPolicy(model, meta, task, context=context, temperature=temperature)
    batch.start(seeds)
    env_list = [envs.make(task) for _ in seeds]
    obs = [e.reset(seed=s)[0] for e, s in zip(env_list, seeds, strict=True)]
    live = [0, 1, 2]
    for t in range(steps):
        if t == 6:  # the middle episode "ends": the others go on with their own caches
            live = [0, 2]
            batch.keep([0, 2])
        acts = batch.act_batch([obs[i] for i in live])
        for i, a in zip(live, acts, strict=True):
            np.testing.assert_array_equal(np.asarray(a), alone[i][t], err_msg=f"episode {i}, step {t}")
            obs[i], *_ = env_list[i].step(a)
    assert batch.rebuilds >= 2 if memory == 0 else batch.rebuilds == steps  # the context rolled over too
    with pytest.raises(ValueError, match="2 observations for 1 episodes"):
        batch.keep([0])
        batch.act_batch([obs[0], obs[2]])
