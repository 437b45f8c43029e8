"""Training FLOPs of a step and model FLOPs utilization (MFU), for throughput reports.

The count (PaLM's, Chowdhery et al. 2022, appendix B, applied to this model):

    FLOPs of a training step = 6 * N_blocks * S  +  6 * N_head * A  +  12 * L * d * T * S

- S: real (non-padding) slots in the step; every slot goes through the transformer blocks.
- N_blocks = L * (12 d^2 + 13 d): the weights (and biases) of the L blocks that a slot multiplies
  through (qkv 3d^2, attention output d^2, MLP 8d^2); 6 = 2 (multiply-add) x 3 (forward + backward).
- A: action tokens, the only slots whose logits the head computes in training (`where`);
  N_head = d * vocab. Embedding look-ups cost no FLOPs and are not counted.
- 12 * L * d * T: attention scores and their weighted sum (2 matmuls x 2 FLOPs x d per pair, x3 for
  forward + backward) over T = the row length (`--context`): the fused kernel computes every pair of
  a row and masks, so PaLM's convention of counting the full T (not halved for causality) is used.
- Not counted: the image encoders (patch ResNet block, conv frame encoder), the state vector's
  linear embedding, layer norms and softmax. On state tasks they are a negligible share, so the MFU
  reported is slightly conservative.
"""

from __future__ import annotations

from generalist.agent.model import ModelConfig

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, in FLOP/s, matched
# against torch.cuda.get_device_name() in order (the first substring found wins).
PEAK_BF16: tuple[tuple[str, float], ...] = (
    ("GH200", 989.4e12),
    ("H200 NVL", 835.0e12),
    ("H200", 989.4e12),        # H200 SXM (same tensor cores as H100 SXM)
    ("H100 PCIe", 756.0e12),
    ("H100 NVL", 835.0e12),
    ("H100", 989.4e12),        # H100 SXM
    ("A100", 312.0e12),
    ("L40S", 362.1e12),
    ("A10G", 70.0e12),
    ("L4", 121.0e12),
)


def block_params(cfg: ModelConfig) -> int:
    """Weights and biases of the transformer blocks (layer norms included: 4d per block)."""
    d = cfg.n_embd
    return cfg.n_layer * (12 * d * d + 13 * d)


def step_flops(cfg: ModelConfig, context: int, slots: int, action_tokens: int) -> float:
    """Model FLOPs of one training step (forward + backward), by the formula in the module docstring."""
    d, n_layer = cfg.n_embd, cfg.n_layer
    return (6.0 * block_params(cfg) * slots + 6.0 * d * cfg.vocab_size * action_tokens
            + 12.0 * n_layer * d * context * slots)


def peak_bf16(device_name: str) -> float | None:
    """The dense bf16 peak FLOP/s of a GPU by its name, or None when the table does not know it."""
    for key, peak in PEAK_BF16:
        if key in device_name:
            return peak
    return None
