"""Token batches for training and the validation tokens, read from challenge shards.

Every rank reads the same stream and takes its own slices of each global batch, so the
tokens a step sees depend on the global batch only, not on the number of ranks nor on the
gradient accumulation: the global batch of `batch_tokens` inputs is cut into
`world * micro_steps` chunks of whole sequences, and micro-step j of rank r takes chunk
j * world + r. Any split covers the same sequences.

Without JEPA, and with JEPA's variance term off, the loss is a mean over equal chunks, so
1 rank x 2 micro-steps, 2 ranks x 1 and 1 rank x 1 see the same gradient. With the variance
term on they do not: it is relu(std_target - std) with the std taken over one micro-batch's
patches (one rank's micro-batch, as in the study's train_gpt.py, which computes it per rank
and per micro-step), and a mean of per-chunk stds is not the std of the whole batch. To
reproduce the study's variance term, keep its micro-batch: its 8 // world micro-steps of
786,432 / 8 = 98,304 tokens (48 sequences of 2048) on the leader stack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from jepardy.data.shards import list_shards, read_shard
from jepardy.errors import UserError
from jepardy.trainer.distributed import Dist


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


def micro_steps(batch_tokens: int, micro_batch_tokens: int, seq_len: int, world: int) -> int:
    """Micro-steps per optimizer step; UserError when the batch does not split into `world`
    ranks x micro-steps x whole sequences (`micro_batch_tokens` 0: one micro-step)."""
    per_rank = batch_tokens // world
    micro = micro_batch_tokens or per_rank
    if batch_tokens % world or per_rank % micro or micro % seq_len or micro == 0:
        raise UserError(
            f"train_batch_tokens {batch_tokens} must split into {world} ranks x micro-batches "
            f"of micro_batch_tokens {micro} x whole sequences of seq_len {seq_len}"
        )
    return per_rank // micro


class TrainBatches:
    """Global batches of `batch_tokens` inputs (and shifted targets), this rank's share cut
    into micro-batches of `micro_batch_tokens` (0: one micro-batch per rank)."""

    def __init__(
        self,
        data_dir: str,
        batch_tokens: int,
        seq_len: int,
        env: Dist,
        micro_batch_tokens: int = 0,
    ) -> None:
        rank, world = env.rank, env.world
        self.micro_steps = micro_steps(batch_tokens, micro_batch_tokens, seq_len, world)
        self.stream = TokenStream(list_shards(Path(data_dir), "train"))
        self.batch_tokens, self.seq_len, self.rank, self.world = batch_tokens, seq_len, rank, world
        self.micro = batch_tokens // world // self.micro_steps
        self.device = env.device

    def next_step(self) -> list[tuple[Tensor, Tensor]]:
        """This rank's micro-batches of the next global batch: (inputs, targets) pairs, each
        (micro_batch_tokens / seq_len, seq_len) int64 on the device."""
        # One extra token so the last input has a target; consecutive batches overlap by it.
        span = self.stream.take(self.batch_tokens + 1)
        self.stream.position -= 1
        chunks = [j * self.world + self.rank for j in range(self.micro_steps)]
        local = np.stack([span[c * self.micro : (c + 1) * self.micro + 1] for c in chunks])
        tokens = torch.from_numpy(local.astype(np.int64))  # (micro_steps, micro + 1)
        if self.device.type == "cuda":
            # Pinned, so the copy is asynchronous and the step loop never waits on it.
            tokens = tokens.pin_memory().to(self.device, non_blocking=True)
        return [(row[:-1].view(-1, self.seq_len), row[1:].view(-1, self.seq_len)) for row in tokens]


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
