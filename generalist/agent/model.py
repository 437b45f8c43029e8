"""Gato-style decoder-only transformer (nanoGPT-shaped), with a KV cache for acting.

Inputs per sequence slot: a token (embedded) or, where the token is PATCH_TOKEN, an image patch
(embedded by a ResNet block plus learned row/column patch-position embeddings); every slot adds a
learned local-position embedding (its place inside its timestep). Attention is causal and fused
(`scaled_dot_product_attention`). The output head predicts the next token over the vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from generalist.agent.config import SIZES as SIZES  # noqa: F401  (re-exported: the sizes live in agent/config.py)
from generalist.agent.config import ModelConfig
from generalist.agent.tokenizer import FRAME_TOKEN, HIDDEN_TOKEN, PATCH_TOKEN, VECTOR_TOKEN


class ResidualPatchEmbed(nn.Module):
    """Gato's patch embedding: a v2 ResNet block (GroupNorm, GELU, conv), then a linear projection.

    The block runs on a 4x4 grid (a stride-4 stem first): on the full 16x16 pixels it cost ~20x
    more and dominated CPU training time.
    """

    def __init__(self, cfg: ModelConfig, width: int = 32):
        super().__init__()
        self.stem = nn.Conv2d(cfg.patch_channels, width, 4, stride=4)
        self.norm1 = nn.GroupNorm(8, width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.proj = nn.Linear(width * (cfg.patch_size // 4) ** 2, cfg.n_embd)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:  # (N, C, p, p) -> (N, n_embd)
        x = self.stem(patches)
        h = self.conv1(F.gelu(self.norm1(x)))
        h = self.conv2(F.gelu(self.norm2(h)))
        return self.proj((x + h).flatten(1))


class FrameEncoder(nn.Module):
    """One image (or a stack of the latest ones) -> one slot embedding (the "vector" encoding): the
    DQN-shaped conv stack (Mnih et al. 2015) on the zero-padded `frame_channels`-channel frame, then a
    linear projection."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cfg.frame_channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU())
        side = ((cfg.frame_size - 8) // 4 + 1 - 4) // 2 + 1 - 2
        self.proj = nn.Linear(64 * side * side, cfg.n_embd)
        self.center = cfg.frame_norm == "center"
        if self.center:  # the training data's mean frame (set by training, saved with the weights)
            self.register_buffer("mean_frame", torch.zeros(cfg.frame_channels, cfg.frame_size, cfg.frame_size))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # (N, frame_channels, F, F) uint8 -> (N, n_embd)
        if self.center:
            x = (frames.float() - self.mean_frame) * (2.0 / 255.0)
        else:
            x = frames.float() * (2.0 / 255.0) - 1.0
        return self.proj(self.conv(x).flatten(1))


class KVCache:
    """Preallocated keys/values for all layers: appending writes in place (no growing torch.cat)."""

    def __init__(self, cfg: ModelConfig, batch: int = 1, device=None, dtype=torch.float32):
        shape = (cfg.n_layer, 2, batch, cfg.n_head, cfg.max_seq_len, cfg.n_embd // cfg.n_head)
        self.buf = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0      # slots stored
        self._pending = 0    # slots added by the forward pass in progress

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = k.shape[2]
        end = self.length + t
        if end > self.buf.shape[4]:
            raise ValueError(f"KV cache full: {end} slots > max_seq_len {self.buf.shape[4]}")
        self.buf[layer, 0, :, :, self.length:end] = k
        self.buf[layer, 1, :, :, self.length:end] = v
        self._pending = t
        return self.buf[layer, 0, :, :, :end], self.buf[layer, 1, :, :, :end]

    def commit(self) -> None:
        self.length += self._pending
        self._pending = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_embd = cfg.n_head, cfg.n_embd
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                kv: KVCache | None = None, layer: int = 0, mask: torch.Tensor | None = None):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if kv is not None:
            k, v = kv.append(layer, k, v)
        elif cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        past = k.shape[2] - t
        if mask is not None:  # packed windows: causal inside each window only
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               dropout_p=self.dropout if self.training else 0.0)
        elif past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               dropout_p=self.dropout if self.training else 0.0)
        else:  # new queries attend to all cached keys and causally among themselves
            mask = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.proj(y), (k, v)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x, cache=None, kv: KVCache | None = None, layer: int = 0, mask=None):
        a, new_cache = self.attn(self.ln1(x), cache, kv, layer, mask)
        x = x + a
        return x + self.mlp(self.ln2(x)), new_cache


class GatoModel(nn.Module):
    """Embeds a mixed token/patch stream and predicts next-token logits."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.local_pos = nn.Embedding(cfg.max_local_positions, cfg.n_embd)
        self.patch_embed = ResidualPatchEmbed(cfg)
        self.patch_row = nn.Embedding(cfg.max_patch_grid, cfg.n_embd)
        self.patch_col = nn.Embedding(cfg.max_patch_grid, cfg.n_embd)
        # one state projection / frame encoder, or (per-shape input encoders) one per group of tasks whose
        # observations have the same shape; the task id of a slot picks its group
        n_state, n_frame = max(cfg.state_encoders, default=0) + 1, max(cfg.frame_encoders, default=0) + 1
        self.vector_embed = (nn.ModuleList(nn.Linear(cfg.state_dim, cfg.n_embd) for _ in range(n_state))
                             if cfg.state_encoders else nn.Linear(cfg.state_dim, cfg.n_embd))
        self.frame_embed = nn.ModuleList(FrameEncoder(cfg) for _ in range(n_frame)) if cfg.frame_encoders else FrameEncoder(cfg)
        for name, groups in (("state_group", cfg.state_encoders), ("frame_group", cfg.frame_encoders)):
            self.register_buffer(name, torch.tensor(groups or [0], dtype=torch.long), persistent=False)
        self.task_emb = nn.Embedding(cfg.n_tasks, cfg.n_embd) if cfg.n_tasks else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") and "patch" not in name:
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(self, tokens: torch.Tensor, local_positions: torch.Tensor, patches: torch.Tensor | None = None,
              patch_pos: torch.Tensor | None = None, vectors: torch.Tensor | None = None,
              frames: torch.Tensor | None = None, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """tokens, local_positions: (B, S); patches (N, C, p, p) and patch_pos (N, 2) fill, in
        row-major order over (B, S), the slots whose token is PATCH_TOKEN; vectors (M, state_dim) the
        VECTOR_TOKEN slots and frames (K, frame_channels, F, F) uint8 the FRAME_TOKEN slots, in the same order.
        HIDDEN_TOKEN slots get a zero token embedding (their local position still tells which action
        dimension comes next). A model with task embeddings adds task_ids' (B, S) embedding to every slot."""
        x = self.tok_emb(tokens.clamp(min=0))
        x = x.masked_fill((tokens == HIDDEN_TOKEN).unsqueeze(-1), 0.0)  # unconditional: no host sync
        if patches is not None and patches.numel():
            if patches.shape[1] == 1:
                patches = patches.expand(-1, self.cfg.patch_channels, -1, -1)
            pe = self.patch_embed(patches) + self.patch_row(patch_pos[:, 0]) + self.patch_col(patch_pos[:, 1])
            x = x.masked_scatter((tokens == PATCH_TOKEN).unsqueeze(-1), pe.to(x.dtype))
        if vectors is not None and vectors.numel():
            where = tokens == VECTOR_TOKEN
            e = self._grouped(self.vector_embed, self.state_group, vectors, where, task_ids)
            x = x.masked_scatter(where.unsqueeze(-1), e.to(x.dtype))
        if frames is not None and frames.numel():
            where = tokens == FRAME_TOKEN
            e = self._grouped(self.frame_embed, self.frame_group, frames, where, task_ids)
            x = x.masked_scatter(where.unsqueeze(-1), e.to(x.dtype))
        if self.task_emb is not None:
            if task_ids is None:
                raise ValueError("this model has task embeddings: pass task_ids")
            x = x + self.task_emb(task_ids).to(x.dtype)
        return self.drop(x + self.local_pos(local_positions))

    def _grouped(self, encoders: nn.Module, group_of_task: torch.Tensor, inputs: torch.Tensor, where: torch.Tensor,
                 task_ids: torch.Tensor | None) -> torch.Tensor:
        """Embed `inputs` (one per True slot of `where`, row-major) with one shared encoder, or with the
        encoder of each slot's task group (per-shape input encoders)."""
        if not isinstance(encoders, nn.ModuleList):
            return encoders(inputs)
        if task_ids is None:
            raise ValueError("this model has per-shape input encoders: pass task_ids")
        groups = group_of_task[task_ids[where]]
        out = None
        for g, enc in enumerate(encoders):
            sel = (groups == g).nonzero().squeeze(1)
            if len(sel):
                e = enc(inputs[sel])
                out = e.new_zeros(len(inputs), e.shape[1]) if out is None else out.to(e.dtype)
                out = out.index_copy(0, sel, e)
        return out

    def forward(self, tokens, local_positions, patches=None, patch_pos=None, cache=None, last_only: bool = False,
                vectors=None, frames=None, where: torch.Tensor | None = None, segments: torch.Tensor | None = None,
                task_ids: torch.Tensor | None = None):
        """Logits (B, S, vocab) and the updated KV cache. With `last_only` only the last slot's
        logits; with a boolean `where` (B, S) only those slots' logits, flattened to (K, vocab)
        (training needs them on action slots only: the head is a large share of a small model).

        `cache` is None (no cache), a KVCache (preallocated, updated in place: acting), or the list of
        per-layer (k, v) this method returned before. `segments` (B, S) numbers the windows packed in
        each row (training): a slot attends to earlier slots of its own window only. `task_ids` (B, S): each
        slot's task, for a model with task embeddings."""
        mask = None
        if segments is not None:
            s = segments.shape[1]
            causal = torch.ones(s, s, dtype=torch.bool, device=segments.device).tril()
            mask = ((segments.unsqueeze(2) == segments.unsqueeze(1)) & causal).unsqueeze(1)
        x = self.embed(tokens, local_positions, patches, patch_pos, vectors, frames, task_ids)
        kv = cache if isinstance(cache, KVCache) else None
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, layer_kv = block(x, None if cache is None or kv is not None else cache[i], kv, i, mask)
            new_cache.append(layer_kv)
        if kv is not None:
            kv.commit()
            new_cache = kv
        if last_only:
            x = x[:, -1:]
        elif where is not None:
            x = x[where]
        return self.head(self.ln_f(x)), new_cache
