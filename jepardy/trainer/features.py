"""The leader stack's input-side features: SmearGate, BigramHash and value embeddings.

Each is a small module the GPT adds when its config field turns it on (model.py). What each
does is taken from the challenge's records (openai/parameter-golf, the 2026-03-23 leader);
the code is jepardy's own.

- SmearGate: every position's input becomes a per-channel blend of itself and the previous
  position's input, x_t <- (1 - g) * x_t + g * x_{t-1}, g = sigmoid(gate) learned per channel
  (gate starts at 0: an even blend). A cheap one-token look-back before the first block.
- BigramHash: an extra embedding of the (previous, current) token pair, hashed into a table
  of `buckets` rows of width `dim`, projected to d_model and added to the token embedding,
  times a learned scalar (starting at 0.05). The first position, which has no previous
  token, uses a reserved bucket.
- Value embeddings: one shared table of token embeddings of width `dim`, projected to the
  attention's key/value width and added to the values of the last few blocks, each block
  with its own learned scale (the shared output scale starts at 0.1, the per-block ones at 1).

Init as in the record: the bigram table starts at zero and its projection orthogonal (so
the projection's gradient is zero at first, the table's is not); the value-embedding table is
normal(0, 0.01) and its projection orthogonal.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Multipliers of the bigram hash (the record's): h = (A * cur) xor (B * prev) mod (buckets - 1).
_HASH_CURRENT = 36313
_HASH_PREVIOUS = 27191


class SmearGate(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, D) -> (B, T, D); position 0 blends with zeros."""
        g = torch.sigmoid(self.gate.to(x.dtype))
        previous = torch.cat((torch.zeros_like(x[:, :1]), x[:, :-1]), dim=1)
        return torch.lerp(x, previous, g)


def bigram_buckets(idx: Tensor, buckets: int) -> Tensor:
    """Token ids (B, T) -> the bucket of each (previous, current) pair (B, T), int64.

    Pairs hash into [0, buckets - 1); position 0 gets the reserved last bucket."""
    t = idx.to(torch.int32)
    mod = buckets - 1
    pairs = torch.bitwise_xor(_HASH_CURRENT * t[:, 1:], _HASH_PREVIOUS * t[:, :-1]) % mod
    first = torch.full_like(t[:, :1], mod)
    return torch.cat((first, pairs), dim=1).long()


class BigramHash(nn.Module):
    def __init__(self, buckets: int, dim: int, d_model: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.table = nn.Embedding(buckets, dim)
        self.proj = nn.Linear(dim, d_model, bias=False)
        self.scale = nn.Parameter(torch.tensor(0.05))
        nn.init.zeros_(self.table.weight)
        nn.init.orthogonal_(self.proj.weight)

    def forward(self, idx: Tensor) -> Tensor:
        """Token ids (B, T) -> (B, T, d_model), to add to the token embedding."""
        h = self.proj(self.table(bigram_buckets(idx, self.buckets)))
        return h * self.scale.to(h.dtype)


class ValueEmbedding(nn.Module):
    def __init__(self, vocab_size: int, dim: int, kv_dim: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab_size, dim)
        self.proj = nn.Linear(dim, kv_dim, bias=False)
        self.scale = nn.Parameter(torch.tensor(0.1))
        nn.init.normal_(self.table.weight, std=0.01)
        nn.init.orthogonal_(self.proj.weight)

    def forward(self, idx: Tensor) -> Tensor:
        """Token ids (B, T) -> (B, T, kv_dim), shared by the blocks that use it (each scales
        it by its own `ve_scale`)."""
        h = self.proj(self.table(idx))
        return h * self.scale.to(h.dtype)
