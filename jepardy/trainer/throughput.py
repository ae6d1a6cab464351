"""Throughput: training tokens per second and model FLOPs utilisation (MFU), defined once.

FLOPs per training token (forward + backward = 3 x forward), the PaLM paper's estimate
(appendix B, as nanoGPT's `estimate_mfu` uses it):

    6 * N + 12 * n_layers * d_model * seq_len

N counts the weights a token is multiplied by: the blocks' linear layers, the tied output
head (vocab x d_model), the bigram and value-embedding projections when they are on, and
the JEPA predictor's two d_model x d_model layers once per patch when JEPA is on. Embedding
lookups cost nothing. The second term is attention's QK^T and AV over the whole sequence,
not halved for causality (as PaLM counts it). Element-wise work (norms, activations,
softcap, Newton-Schulz) is left out, so MFU slightly understates the work done.

    MFU = tokens_per_s * flops_per_token / (ranks * peak bf16 dense FLOP/s of one device)
"""

from __future__ import annotations

from typing import Any

# Peak dense bf16 tensor-core FLOP/s, by a substring of torch.cuda.get_device_name(); the
# first match wins (so "H100 PCIe" is tried before "H100"). Vendor datasheet figures.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
)


def flops_per_token(config: Any) -> float:
    """Training FLOPs per token of a TrainConfig (see the module doc)."""
    d, layers = config.d_model, config.n_layers
    kv = config.n_kv_heads * (d // config.n_heads)
    attention = d * d + 2 * d * kv + d * d  # q, k and v, output
    mlp = 2 * d * config.mlp_mult * d
    n = layers * (attention + mlp) + config.vocab_size * d
    if config.bigram_hash_buckets:
        n += config.bigram_dim * d
    if config.value_embed_last_n:
        n += config.value_embed_dim * kv
    if config.jepa_weight > 0:
        n += 2 * d * d / config.jepa_patch_size
    return 6.0 * n + 12.0 * layers * d * config.seq_len


def peak_flops(device_name: str) -> float | None:
    """Peak bf16 FLOP/s of one device named `device_name`; None when unknown (or a CPU)."""
    for key, flops in PEAK_BF16_FLOPS:
        if key in device_name:
            return flops
    return None


def mfu(tokens_per_s: float, config: Any, device_name: str, world: int) -> float | None:
    """Model FLOPs utilisation of a run over `world` devices; None on an unknown device."""
    peak = peak_flops(device_name)
    if peak is None or tokens_per_s <= 0:
        return None
    return tokens_per_s * flops_per_token(config) / (world * peak)
