"""The GPT: tied embeddings, RMSNorm, RoPE, grouped-query attention, logit softcap,
LeakyReLU(0.5)^2 MLP.

The model is single-device and knows nothing of processes, files or optimizers: `forward`
returns the final hidden states, `logits` and `cross_entropy` turn them into a loss.
DDP and compile wrap it from outside (see train.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class GPTShape:
    """The sizes that define the network; everything else about it is fixed."""

    vocab_size: int
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    mlp_mult: int
    rope_base: float
    logit_softcap: float
    init_std: float

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


def rms_norm(x: Tensor) -> Tensor:
    """Parameter-free RMSNorm over the last dimension, as in the challenge's baseline."""
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    """Rotary position embedding; cos/sin tables are cached per sequence length and device."""

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.device, Tensor, Tensor] | None = None

    def tables(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        if self._cache is None or self._cache[0] != seq_len or self._cache[1] != device:
            t = torch.arange(seq_len, device=device, dtype=torch.float32)
            freqs = torch.outer(t, self.inv_freq.to(device))  # (T, head_dim/2)
            self._cache = (seq_len, device, freqs.cos()[None, None], freqs.sin()[None, None])
        return self._cache[2], self._cache[3]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (first half, second half) of the head dimension. x: (B, H, T, hd)."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class Attention(nn.Module):
    """Causal self-attention with grouped-query heads, QK RMSNorm and RoPE."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = (
            shape.n_heads,
            shape.n_kv_heads,
            shape.head_dim,
        )
        kv_dim = shape.n_kv_heads * shape.head_dim
        self.q = nn.Linear(shape.d_model, shape.d_model, bias=False)
        self.k = nn.Linear(shape.d_model, kv_dim, bias=False)
        self.v = nn.Linear(shape.d_model, kv_dim, bias=False)
        self.proj = nn.Linear(shape.d_model, shape.d_model, bias=False)
        self.rotary = Rotary(shape.head_dim, shape.rope_base)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.v(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary.tables(T, x.device)
        q, k = apply_rotary(rms_norm(q), cos, sin), apply_rotary(rms_norm(k), cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    """Two linear maps around LeakyReLU(0.5) squared (the challenge's leader-stack MLP)."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        hidden = shape.mlp_mult * shape.d_model
        self.fc = nn.Linear(shape.d_model, hidden, bias=False)
        self.proj = nn.Linear(hidden, shape.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.leaky_relu(self.fc(x), negative_slope=0.5).square())


class Block(nn.Module):
    """Pre-norm residual block; learnable per-channel scales on each branch."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.attn = Attention(shape)
        self.mlp = MLP(shape)
        self.attn_scale = nn.Parameter(torch.ones(shape.d_model))
        self.mlp_scale = nn.Parameter(torch.ones(shape.d_model))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x))
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))


class GPT(nn.Module):
    """Decoder-only transformer whose output head is the token embedding (tied)."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab_size, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layers))
        self._init_weights()

    def _init_weights(self) -> None:
        std = self.shape.init_std
        nn.init.normal_(self.embed.weight, std=std)
        for block in self.blocks:
            for linear in (block.attn.q, block.attn.k, block.attn.v, block.mlp.fc):
                nn.init.normal_(linear.weight, std=std)
            # Residual-branch outputs start at zero so each block is the identity at init
            # (as in modded-nanogpt and the challenge's baseline); gradients still reach them.
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.proj.weight)

    def forward(self, idx: Tensor) -> Tensor:
        """Token ids (B, T) -> final hidden states after the last norm (B, T, D)."""
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return rms_norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        """Hidden states -> soft-capped logits in float32 (B, T, V)."""
        logits = F.linear(hidden, self.embed.weight.to(hidden.dtype)).float()
        cap = self.shape.logit_softcap
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    def token_losses(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Per-token cross-entropy in nats (B, T), float32."""
        logits = self.logits(self(idx))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(
            targets
        )


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
