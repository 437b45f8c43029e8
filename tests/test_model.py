"""The transformer: sizes, patch slots, and KV-cached decoding equal to full recomputation."""

from __future__ import annotations

import torch

from generalist.agent.model import SIZES, GatoModel, ModelConfig
from generalist.agent.tokenizer import FRAME_TOKEN, PATCH_TOKEN, VECTOR_TOKEN


def _batch(seed=0, b=2, steps=5, n_patches=4):
    g = torch.Generator().manual_seed(seed)
    per_step = n_patches + 3 + 1 + 2
    tokens = torch.randint(0, 2049, (b, steps * per_step), generator=g)
    tokens.view(b, steps, per_step)[:, :, :n_patches] = PATCH_TOKEN
    local = torch.arange(per_step).repeat(steps).expand(b, -1).contiguous()
    n = b * steps * n_patches
    patches = torch.randn(n, 3, 16, 16, generator=g)
    pos = torch.stack([torch.arange(n) % 2, (torch.arange(n) // 2) % 2], 1)
    return tokens, local, patches, pos


def test_named_sizes():
    counts = {n: GatoModel(c).num_params() for n, c in SIZES.items()}
    assert 1e6 < counts["tiny"] < 5e6
    assert 20e6 < counts["small"] < 30e6
    assert 70e6 < counts["base"] < 95e6


def test_patches_change_output_and_grayscale_accepted():
    torch.manual_seed(0)
    m = GatoModel(ModelConfig(n_layer=2, n_head=2, n_embd=64)).eval()
    tokens, local, patches, pos = _batch()
    a, _ = m(tokens, local, patches, pos)
    b, _ = m(tokens, local, patches + 1.0, pos)
    assert not torch.allclose(a, b)
    gray, _ = m(tokens, local, patches[:, :1], pos)
    assert gray.shape == a.shape


def test_kv_cache_matches_full_recompute():
    torch.manual_seed(0)
    m = GatoModel(ModelConfig(n_layer=3, n_head=4, n_embd=64)).eval()
    tokens, local, patches, pos = _batch(b=1)
    with torch.no_grad():
        full, _ = m(tokens, local, patches, pos)
        # prefix in one call (with all patches: they sit in the first 4 slots of each step) ...
        s = tokens.shape[1]
        cut = s - 7
        n_pre = int((tokens[:, :cut] == PATCH_TOKEN).sum())
        out, cache = m(tokens[:, :cut], local[:, :cut], patches[:n_pre], pos[:n_pre])
        pieces = [out]
        k = n_pre
        for i in range(cut, s):  # ... then one slot at a time from the cache
            npatch = int((tokens[:, i] == PATCH_TOKEN).sum())
            o, cache = m(tokens[:, i:i + 1], local[:, i:i + 1], patches[k:k + npatch], pos[k:k + npatch], cache)
            k += npatch
            pieces.append(o)
        inc = torch.cat(pieces, 1)
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=1e-4)


def test_preallocated_kv_cache_matches_full_recompute():
    from generalist.agent.model import KVCache

    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=32, max_seq_len=64)
    m = GatoModel(cfg).eval()
    tokens, local, patches, pos = _batch(b=1, steps=3)
    with torch.no_grad():
        full, _ = m(tokens, local, patches, pos)
        kv = KVCache(cfg)
        k = int((tokens[:, :12] == PATCH_TOKEN).sum())
        out, kv = m(tokens[:, :12], local[:, :12], patches[:k], pos[:k], kv)
        pieces = [out]
        for i in range(12, tokens.shape[1]):
            npatch = int((tokens[:, i] == PATCH_TOKEN).sum())
            o, kv = m(tokens[:, i:i + 1], local[:, i:i + 1], patches[k:k + npatch], pos[k:k + npatch], kv)
            k += npatch
            pieces.append(o)
        assert kv.length == tokens.shape[1]
        last, _ = m(tokens[:, :5], local[:, :5], patches[:4], pos[:4], last_only=True)
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-4)
    assert last.shape[1] == 1


def test_per_shape_input_encoders_route_by_task():
    """With per-shape input encoders, each vector/frame slot is embedded by its task's group encoder only:
    tasks 0 and 2 share state projection 0, task 1 has its own; frames of tasks 0 and 1 use different convs."""
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, state_dim=8, frame_size=36, state_encoders=[0, 1, 0],
                      frame_encoders=[1, 0, 0])
    m = GatoModel(cfg).eval()
    assert len(m.vector_embed) == 2 and len(m.frame_embed) == 2
    tokens = torch.tensor([[VECTOR_TOKEN, FRAME_TOKEN, VECTOR_TOKEN, VECTOR_TOKEN, FRAME_TOKEN]])
    task_ids = torch.tensor([[1, 0, 0, 2, 1]])
    local = torch.zeros_like(tokens)
    vectors, frames = torch.randn(3, 8), torch.randint(0, 255, (2, 3, 36, 36), dtype=torch.uint8)
    with torch.no_grad():
        x = m.embed(tokens, local, vectors=vectors, frames=frames, task_ids=task_ids)
        base = m.local_pos(local)  # vector and frame slots replace the token embedding
        want = [m.vector_embed[1](vectors[0]), m.frame_embed[1](frames[:1])[0], m.vector_embed[0](vectors[1]),
                m.vector_embed[0](vectors[2]), m.frame_embed[0](frames[1:])[0]]
        torch.testing.assert_close(x[0], base[0] + torch.stack(want))
        # the other group's encoder would give something else: routing matters
        assert not torch.allclose(m.vector_embed[0](vectors[0]), want[0])
    # gradients reach only the encoders of the tasks in the batch
    m.zero_grad()
    m.embed(tokens[:, :1], local[:, :1], vectors=vectors[:1], task_ids=task_ids[:, :1]).sum().backward()
    assert m.vector_embed[1].weight.grad is not None and m.vector_embed[0].weight.grad is None
