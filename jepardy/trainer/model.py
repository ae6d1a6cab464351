"""The GPT: tied embeddings, RMSNorm, RoPE, grouped-query attention, logit softcap,
LeakyReLU(0.5)^2 (or ReLU^2) MLP, and the leader stack's features, each off unless its
shape field turns it on: partial RoPE, per-head query gain, an RMS-normed input embedding,
residual mixing with the first input, U-Net skips, branch-input scaling by depth, XSA, and
the input-side features of features.py (SmearGate, BigramHash, value embeddings).

The model is single-device and knows nothing of processes, files or optimizers: `forward`
returns the final hidden states, `logits` and `token_losses` turn them into a loss.
DDP and compile wrap it from outside (see train.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepardy.trainer.features import BigramHash, SmearGate, ValueEmbedding


@dataclass(frozen=True)
class GPTShape:
    """The sizes and switches that define the network. Field names are TrainConfig's."""

    vocab_size: int
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    mlp_mult: int
    rope_base: float
    logit_softcap: float
    init_std: float
    # Everything below defaults to the plain GPT.
    mlp_activation: str = "leaky_relu2"
    embed_init_std: float = 0.0  # 0 = init_std
    matrix_init: str = "normal"
    embed_norm: bool = False
    qk_gain: float = 0.0
    resid_mix: bool = False
    unet_skips: bool = False
    ln_scale: bool = False
    rope_dims: int = 0
    rope_train_seq_len: int = 0
    smear_gate: bool = False
    bigram_hash_buckets: int = 0
    bigram_dim: int = 128
    xsa_last_n: int = 0
    value_embed_last_n: int = 0
    value_embed_dim: int = 128

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def n_encoder_layers(self) -> int:
        """U-Net skips: the first half of the blocks; the rest mirror them."""
        return self.n_layers // 2

    @classmethod
    def from_config(cls, config: Any) -> GPTShape:
        """The shape fields of a TrainConfig (or anything with the same attribute names)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


def rms_norm(x: Tensor) -> Tensor:
    """Parameter-free RMSNorm over the last dimension, as in the challenge's baseline."""
    return F.rms_norm(x, (x.size(-1),))


def rope_base_for(base: float, dims: int, seq_len: int, train_seq_len: int) -> float:
    """The RoPE base a sequence of `seq_len` uses: `base` up to `train_seq_len` (0: always),
    beyond it base * (seq_len / train_seq_len)^(dims / (dims - 2)), the NTK-style rescaling of
    the 2026-03-23 record's Rotary (openai/parameter-golf), so a model set up for 1024 tokens
    keeps its low frequencies' coverage at 2048."""
    if train_seq_len <= 0 or seq_len <= train_seq_len:
        return base
    return base * (seq_len / train_seq_len) ** (dims / (dims - 2))


class Rotary(nn.Module):
    """Rotary position tables for the first `dims` of each head (partial RoPE when `dims` is
    less than the head size), the base rescaled for sequences past `train_seq_len` (see
    `rope_base_for`). Recomputed each forward: a few hundred flops, no cache to invalidate;
    under torch.compile the sequence length is static, so the rescale is a constant."""

    def __init__(self, dims: int, base: float, train_seq_len: int = 0) -> None:
        super().__init__()
        self.dims, self.base, self.train_seq_len = dims, base, train_seq_len
        self.register_buffer("exponents", torch.arange(0, dims, 2) / dims, persistent=False)

    def forward(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(cos, sin), each (1, 1, T, dims/2)."""
        base = rope_base_for(self.base, self.dims, seq_len, self.train_seq_len)
        inv_freq = 1.0 / (base ** self.exponents.to(device=device, dtype=torch.float32))
        t = torch.arange(seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)  # (T, dims/2)
        return freqs.cos()[None, None], freqs.sin()[None, None]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (first half, second half) of the first 2 * cos.size(-1) dims of each head;
    the other dims pass through. x: (B, H, T, hd)."""
    half = cos.size(-1)
    rotated, rest = x[..., : 2 * half], x[..., 2 * half :]
    x1, x2 = rotated[..., :half], rotated[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    out = torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)
    return torch.cat((out, rest), dim=-1) if rest.size(-1) else out


def exclusive_self_attention(y: Tensor, v: Tensor) -> Tensor:
    """XSA: remove from each head's output its component along its own position's value
    vector, so attention carries what other positions add. y: (B, H, T, hd), v: (B, Hkv, T,
    hd); query head h reads kv head h // (H / Hkv), as grouped-query attention does."""
    B, H, T, hd = y.shape
    groups = v.size(1)
    y = y.view(B, groups, H // groups, T, hd)
    unit_v = F.normalize(v, dim=-1).unsqueeze(2)  # (B, Hkv, 1, T, hd)
    y = y - (y * unit_v).sum(dim=-1, keepdim=True) * unit_v
    return y.view(B, H, T, hd)


class Attention(nn.Module):
    """Causal self-attention with grouped-query heads, QK RMSNorm, (partial) RoPE, optional
    per-head query gain and XSA; fused through PyTorch's SDPA (flash / cuDNN on CUDA)."""

    def __init__(self, shape: GPTShape, xsa: bool) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = (
            shape.n_heads,
            shape.n_kv_heads,
            shape.head_dim,
        )
        self.xsa = xsa
        self.q = nn.Linear(shape.d_model, shape.d_model, bias=False)
        self.k = nn.Linear(shape.d_model, shape.kv_dim, bias=False)
        self.v = nn.Linear(shape.d_model, shape.kv_dim, bias=False)
        self.proj = nn.Linear(shape.d_model, shape.d_model, bias=False)
        if shape.qk_gain > 0:
            self.q_gain = nn.Parameter(torch.full((shape.n_heads,), shape.qk_gain))
        else:
            self.q_gain = None

    def forward(
        self, x: Tensor, rope: tuple[Tensor, Tensor], value_embed: Tensor | None = None
    ) -> Tensor:
        B, T, D = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.v(x)  # (B, T, Hkv * hd)
        if value_embed is not None:
            v = v + value_embed.to(v.dtype)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        cos, sin = rope
        q, k = apply_rotary(rms_norm(q), cos, sin), apply_rotary(rms_norm(k), cos, sin)
        if self.q_gain is not None:
            q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads
        )  # (B, H, T, hd)
        if self.xsa:
            y = exclusive_self_attention(y, v)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    """Two linear maps around LeakyReLU(0.5)^2 (the leader stack's) or ReLU^2 (the
    baseline's)."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        hidden = shape.mlp_mult * shape.d_model
        self.fc = nn.Linear(shape.d_model, hidden, bias=False)
        self.proj = nn.Linear(hidden, shape.d_model, bias=False)
        self.slope = 0.5 if shape.mlp_activation == "leaky_relu2" else 0.0

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        # relu for slope 0: the same values, one cheaper kernel (the baseline's relu^2).
        h = F.leaky_relu(h, negative_slope=self.slope) if self.slope else F.relu(h)
        return self.proj(h.square())


class Block(nn.Module):
    """Pre-norm residual block; learnable per-channel scales on each branch.

    With `resid_mix` the block first mixes its input with the first block's input x0
    (per channel, starting at all-x); with `ln_scale` the normed input of each branch is
    scaled by 1/sqrt(layer + 1); with value embeddings, `ve_scale` weighs them for this block.
    """

    def __init__(self, shape: GPTShape, layer: int) -> None:
        super().__init__()
        self.attn = Attention(shape, xsa=layer >= shape.n_layers - shape.xsa_last_n)
        self.mlp = MLP(shape)
        self.attn_scale = nn.Parameter(torch.ones(shape.d_model))
        self.mlp_scale = nn.Parameter(torch.ones(shape.d_model))
        self.branch_scale = 1.0 / math.sqrt(layer + 1) if shape.ln_scale else 1.0
        if shape.resid_mix:
            self.resid_mix = nn.Parameter(
                torch.stack((torch.ones(shape.d_model), torch.zeros(shape.d_model)))
            )
        else:
            self.resid_mix = None
        uses_ve = layer >= shape.n_layers - shape.value_embed_last_n
        self.ve_scale = nn.Parameter(torch.ones(1)) if uses_ve else None

    def forward(
        self,
        x: Tensor,
        x0: Tensor,
        rope: tuple[Tensor, Tensor],
        value_embed: Tensor | None,
    ) -> Tensor:
        if self.resid_mix is not None:
            mix = self.resid_mix.to(x.dtype)
            x = mix[0] * x + mix[1] * x0
        ve = None
        if self.ve_scale is not None and value_embed is not None:
            ve = value_embed * self.ve_scale.to(value_embed.dtype)
        x = x + self.attn_scale.to(x.dtype) * self.attn(self.branch_input(x), rope, ve)
        return x + self.mlp_scale.to(x.dtype) * self.mlp(self.branch_input(x))

    def branch_input(self, x: Tensor) -> Tensor:
        """The normed input of a branch, scaled by depth with ln_scale (a multiply by 1.0
        skipped: an extra kernel forward and backward on every block otherwise)."""
        h = rms_norm(x)
        return h * self.branch_scale if self.branch_scale != 1.0 else h


class GPT(nn.Module):
    """Decoder-only transformer whose output head is the token embedding (tied)."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab_size, shape.d_model)
        self.blocks = nn.ModuleList(Block(shape, i) for i in range(shape.n_layers))
        self.rotary = Rotary(
            shape.rope_dims or shape.head_dim, shape.rope_base, shape.rope_train_seq_len
        )
        n_skips = min(shape.n_encoder_layers, shape.n_layers - shape.n_encoder_layers)
        self.skip_weights = (
            nn.Parameter(torch.ones(n_skips, shape.d_model)) if shape.unet_skips else None
        )
        self.smear = SmearGate(shape.d_model) if shape.smear_gate else None
        self.bigram = (
            BigramHash(shape.bigram_hash_buckets, shape.bigram_dim, shape.d_model)
            if shape.bigram_hash_buckets
            else None
        )
        self.value_embed = (
            ValueEmbedding(shape.vocab_size, shape.value_embed_dim, shape.kv_dim)
            if shape.value_embed_last_n
            else None
        )
        self._init_weights()

    def _init_weights(self) -> None:
        std = self.shape.init_std
        nn.init.normal_(self.embed.weight, std=self.shape.embed_init_std or std)
        for block in self.blocks:
            for linear in (block.attn.q, block.attn.k, block.attn.v, block.mlp.fc):
                if self.shape.matrix_init == "orthogonal":
                    nn.init.orthogonal_(linear.weight)
                elif self.shape.matrix_init == "uniform":
                    linear.reset_parameters()  # torch's default: U(+-1/sqrt(fan_in))
                else:
                    nn.init.normal_(linear.weight, std=std)
            # Residual-branch outputs start at zero so each block is the identity at init
            # (as in modded-nanogpt and the challenge's baseline); gradients still reach them.
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.proj.weight)

    def forward(self, idx: Tensor) -> Tensor:
        """Token ids (B, T) -> final hidden states after the last norm (B, T, D)."""
        x = self.embed(idx)  # (B, T, D)
        if self.bigram is not None:
            x = x + self.bigram(idx)
        if self.shape.embed_norm:
            x = rms_norm(x)
        if self.smear is not None:
            x = self.smear(x)
        x0 = x
        rope = self.rotary(idx.size(1), idx.device)
        value_embed = self.value_embed(idx) if self.value_embed is not None else None
        n_encoder = self.shape.n_encoder_layers
        skips: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            # U-Net: block n_encoder + j adds the output of block n_encoder - 1 - j.
            if self.skip_weights is not None and i >= n_encoder and skips:
                x = x + self.skip_weights[i - n_encoder].to(x.dtype) * skips.pop()
            x = block(x, x0, rope, value_embed)
            if self.skip_weights is not None and i < n_encoder:
                skips.append(x)
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
