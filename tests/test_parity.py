"""Train/act parity: for recorded steps, the acting policy feeds the model exactly what a training
window holds (tokens, local positions, patches, vectors, frames) and gets the same action logits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from generalist.agent import checkpoint
from generalist.agent.data import collate, encode_window
from generalist.agent.encoder import shown_tokens
from generalist.agent.policy import AgentPolicy
from generalist.agent.train import TrainConfig, frame_stacks, train
from generalist.datasets.collect import CollectConfig, collect
from generalist.datasets.sampler import WindowSampler, open_tasks, train_arrays
from generalist.errors import ConfigError

# state + continuous actions; image + discrete actions; a second state shape (per-shape input encoders)
TASKS = ["metaworld-reach", "memorymaze-9x9", "dmc-cartpole-swingup"]
K = 5


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    collect(CollectConfig(tasks=TASKS, episodes=2, out=root))
    return root


@pytest.mark.parametrize("encoding,hide,memory,task_emb,inputs", [
    ("vector", True, K, False, "shared"), ("vector", True, K, True, "per-shape"),
    ("vector", False, 0, False, "shared"), ("tokens", True, 0, False, "shared")])
def test_policy_feeds_what_training_windows_hold(data, tmp_path, encoding, hide, memory, task_emb, inputs):
    run = tmp_path / "run"
    context = 400 if encoding == "tokens" else 64
    train(TrainConfig(data=[str(data)], out=str(run), steps=1, batch=2, context=context, prompt_prob=0.0,
                      obs_encoding=encoding, hide_actions=hide, max_timesteps=memory, eval_every=1000,
                      task_embedding=task_emb, input_encoders=inputs))
    ck = checkpoint.latest(run)
    tasks = open_tasks([data])
    for task in TASKS:
        policy = AgentPolicy.from_checkpoint(ck, task, use_cache=False)
        enc, model = policy.encoder, policy.model
        steps = K if encoding == "vector" else 2  # a tokens-encoded maze step is 17 slots
        sampler = WindowSampler(tasks, {t: steps for t in tasks}, prompt_prob=0.0)
        obs, actions = sampler._read(task, 0, 0, steps)
        for i in range(steps):  # act on the recorded observations; feed back the recorded actions' effect
            policy.act({k: v[i] for k, v in obs.items()})
            if i + 1 < steps:  # the policy's own action differs; parity concerns the recorded ones
                policy.history[-1] = enc.encode({k: v[i:i + 1] for k, v in obs.items()}, actions[i:i + 1])
        fed, logits = policy.fed, policy.first_logits
        window = encode_window({"observations": obs, "actions": actions, "task": task}, enc).inputs
        n = len(fed)
        assert n == steps * enc.layout.length - enc.layout.n_action  # the last step up to its separator
        np.testing.assert_array_equal(shown_tokens(fed.tokens, fed.loss_mask, hide),
                                      shown_tokens(window.tokens[:n], window.loss_mask[:n], hide))
        np.testing.assert_array_equal(fed.local, window.local[:n])
        for field in ("patches", "patch_pos", "vectors", "frames"):
            np.testing.assert_array_equal(getattr(fed, field), getattr(window, field), err_msg=field)
        batch = collate([encode_window({"observations": obs, "actions": actions, "task": task}, enc)], context)
        with torch.no_grad():
            full, _ = model(shown_tokens(batch["tokens"], batch["loss_mask"], hide), batch["local_positions"],
                            batch["patches"], batch["patch_pos"], vectors=batch["vectors"], frames=batch["frames"],
                            segments=batch["segments"], task_ids=batch["task_ids"])
        torch.testing.assert_close(full[0, n - 1], logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("inputs", ["shared", "per-shape"])
def test_packed_windows_score_as_if_alone(data, tmp_path, inputs):
    """Windows of two tasks packed into shared rows get the logits each gets alone (attention and
    the image/vector slots stay inside their own window)."""
    run = tmp_path / "run"
    train(TrainConfig(data=[str(data)], out=str(run), steps=1, batch=2, context=32, prompt_prob=0.0,
                      obs_encoding="vector", max_timesteps=K, task_timesteps={"metaworld-reach": 2},
                      eval_every=1000, task_embedding=True, input_encoders=inputs))
    ck = checkpoint.latest(run)
    tasks = open_tasks([data])
    steps = {"metaworld-reach": 2, "memorymaze-9x9": 3, "dmc-cartpole-swingup": 4}
    samplers = {t: WindowSampler(tasks, steps, {x: float(x == t) for x in TASKS}, prompt_prob=0.0) for t in TASKS}
    samples, alone = [], []
    for task in TASKS * 3:
        policy = AgentPolicy.from_checkpoint(ck, task, use_cache=False)
        w = samplers[task].sample()
        samples.append(encode_window(w, policy.encoder))
        b = collate([samples[-1]], 32)
        with torch.no_grad():
            alone.append(policy.model(b["tokens"], b["local_positions"], vectors=b["vectors"], frames=b["frames"],
                                      segments=b["segments"], task_ids=b["task_ids"])[0][0, :len(samples[-1].inputs)])
    packed = collate(samples, 32)
    assert packed["tokens"].shape[0] < len(samples)  # rows are shared
    with torch.no_grad():
        logits, _ = policy.model(packed["tokens"], packed["local_positions"], vectors=packed["vectors"],
                                 frames=packed["frames"], segments=packed["segments"], task_ids=packed["task_ids"])
    found = 0
    for r in range(logits.shape[0]):
        for seg in packed["segments"][r].unique().tolist():
            if seg == 0:
                continue
            at = (packed["segments"][r] == seg).nonzero()[:, 0]
            match = [i for i, s in enumerate(samples) if len(s.inputs) == len(at)
                     and np.array_equal(s.inputs.tokens, packed["tokens"][r, at].numpy())
                     and torch.allclose(alone[i], logits[r, at], atol=1e-4)]
            assert match, f"row {r} window {seg} matches no window scored alone"
            found += 1
    assert found == len(samples)


def test_frame_stack_windows_match_acting_mid_episode(data, tmp_path):
    """--frame-stack: a training window that starts mid-episode carries the images before it, and the acting
    policy, eight steps into an episode, feeds exactly that window's frames, tokens and logits."""
    maze, stack, memory = "memorymaze-9x9", 3, 3
    run = tmp_path / "run"
    train(TrainConfig(data=[str(data)], out=str(run), steps=1, batch=2, context=64, prompt_prob=0.0,
                      obs_encoding="vector", hide_actions=True, max_timesteps=memory, eval_every=1000,
                      input_encoders="per-shape", frame_stack={maze: stack}, frame_norm="center"))
    policy = AgentPolicy.from_checkpoint(checkpoint.latest(run), maze, use_cache=False)
    enc = policy.encoder
    assert policy.model.cfg.frame_channels == stack * 3 and enc.past_frames == stack - 1
    tasks = open_tasks([data])
    # --frame-norm center: the saved mean frame is the training images' mean, repeated for each stacked image
    images = np.concatenate(list(train_arrays(tasks[maze], "image")))
    mean = policy.model.frame_embed[int(policy.model.frame_group[enc.task_id])].mean_frame.numpy()
    np.testing.assert_allclose(mean[:3, :64, :64], images.mean(0).transpose(2, 0, 1), atol=1e-3)
    np.testing.assert_array_equal(mean[:3], mean[6:])
    sampler = WindowSampler(tasks, {t: memory for t in tasks}, {t: float(t == maze) for t in tasks}, 0.0,
                            past_images={maze: stack - 1})
    starts = set()
    for i in range(12):  # the sampler's past images are the episode's images just before the window
        w = sampler.sample_at(i)
        obs, _ = sampler._read(maze, w["episode"], 0, w["start"] + memory)
        lead = min(stack - 1, w["start"])
        np.testing.assert_array_equal(w["observations"]["image"], obs["image"][w["start"]:])
        if lead:
            np.testing.assert_array_equal(w["past_images"], obs["image"][w["start"] - lead:w["start"]])
        else:
            assert w["past_images"] is None
        starts.add(lead)
    assert stack - 1 in starts
    steps = 8
    obs, actions = sampler._read(maze, 0, 0, steps)
    for i in range(steps):
        policy.act({k: v[i] for k, v in obs.items()})
        if i + 1 < steps:
            policy.history[-1] = enc.encode({k: v[i:i + 1] for k, v in obs.items()}, actions[i:i + 1],
                                            obs["image"][max(0, i - stack + 1):i])
    a = steps - memory
    window = {"task": maze, "observations": {k: v[a:] for k, v in obs.items()}, "actions": actions[a:],
              "past_images": obs["image"][a - stack + 1:a]}
    sample = encode_window(window, enc)
    fed, n = policy.fed, len(policy.fed)
    np.testing.assert_array_equal(fed.frames, sample.inputs.frames)
    np.testing.assert_array_equal(shown_tokens(fed.tokens, fed.loss_mask, True),
                                  shown_tokens(sample.inputs.tokens[:n], sample.inputs.loss_mask[:n], True))
    batch = collate([sample], 64)
    with torch.no_grad():
        full, _ = policy.model(shown_tokens(batch["tokens"], batch["loss_mask"], True), batch["local_positions"],
                               frames=batch["frames"], segments=batch["segments"], task_ids=batch["task_ids"])
    torch.testing.assert_close(full[0, n - 1], policy.first_logits, rtol=1e-4, atol=1e-4)


def test_frame_stack_option_checks(data):
    """--frame-stack: tasks outside the run's data are left out (a suite's settings serve a subset of its data);
    an unknown name, a state task, K < 1 and Gato's tokens are refused."""
    tasks = open_tasks([data])
    cfg = TrainConfig(data=[str(data)], obs_encoding="vector", frame_stack={"memorymaze-9x9": 2, "atari-pong": 4})
    assert frame_stacks(tasks, cfg) == {"memorymaze-9x9": 2}
    for bad, encoding, message in (({"no-such-task": 2}, "vector", "no task"),
                                   ({"metaworld-reach": 2}, "vector", "no image observations"),
                                   ({"memorymaze-9x9": 0}, "vector", "K must be >= 1"),
                                   ({"memorymaze-9x9": 2}, "tokens", "needs --obs-encoding vector")):
        with pytest.raises(ConfigError, match=message):
            frame_stacks(tasks, replace(cfg, frame_stack=bad, obs_encoding=encoding))
