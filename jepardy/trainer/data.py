"""Token batches for training and the validation tokens, read from challenge shards.

Every rank reads the same stream and takes its own slice of each global batch, so the
tokens a step sees depend on the global batch only, not on the number of ranks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from jepardy.data.shards import list_shards, read_shard
from jepardy.errors import UserError


class TokenStream:
    """Reads the train shards in order, wrapping around to the first at the end."""

    def __init__(self, shard_paths: list[Path]) -> None:
        self.shard_paths = shard_paths
        self.shard_index = 0
        self.tokens = read_shard(shard_paths[0])
        self.position = 0

    def take(self, count: int) -> np.ndarray:
        """The next `count` tokens, crossing shard boundaries as needed."""
        pieces, remaining = [], count
        while remaining > 0:
            available = len(self.tokens) - self.position
            if available <= 0:
                self.shard_index = (self.shard_index + 1) % len(self.shard_paths)
                self.tokens = read_shard(self.shard_paths[self.shard_index])
                self.position = 0
                continue
            n = min(available, remaining)
            pieces.append(self.tokens[self.position : self.position + n])
            self.position += n
            remaining -= n
        return np.concatenate(pieces)


class TrainBatches:
    """Global batches of `batch_tokens` inputs (and shifted targets), sliced per rank."""

    def __init__(
        self,
        data_dir: str,
        batch_tokens: int,
        seq_len: int,
        rank: int,
        world: int,
        device: torch.device,
    ) -> None:
        per_rank = batch_tokens // world
        if per_rank % seq_len or per_rank == 0:
            raise UserError(
                f"train_batch_tokens {batch_tokens} must split into {world} ranks x whole "
                f"sequences of seq_len {seq_len}"
            )
        self.stream = TokenStream(list_shards(Path(data_dir), "train"))
        self.per_rank, self.seq_len, self.rank, self.world = per_rank, seq_len, rank, world
        self.device = device

    def next_batch(self) -> tuple[Tensor, Tensor]:
        """(inputs, targets), each (per_rank / seq_len, seq_len) int64 on the device."""
        # One extra token so the last input has a target; consecutive batches overlap by it.
        span = self.stream.take(self.per_rank * self.world + 1)
        self.stream.position -= 1
        start = self.rank * self.per_rank
        local = torch.from_numpy(span[start : start + self.per_rank + 1].astype(np.int64))
        x = local[:-1].view(-1, self.seq_len)
        y = local[1:].view(-1, self.seq_len)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def load_val_tokens(data_dir: str, seq_len: int, max_tokens: int) -> np.ndarray:
    """All validation tokens (or the first `max_tokens`), trimmed to whole sequences + 1."""
    tokens = np.concatenate([read_shard(p) for p in list_shards(Path(data_dir), "val")])
    if max_tokens > 0:
        tokens = tokens[: max_tokens + 1]
    usable = ((len(tokens) - 1) // seq_len) * seq_len
    if usable <= 0:
        raise UserError(
            f"{data_dir}: validation split has {len(tokens)} tokens, "
            f"fewer than one sequence of seq_len {seq_len}"
        )
    return tokens[: usable + 1]
