"""Validation loss and bits per byte, the challenge's score.

val_loss is the mean cross-entropy in nats per token; val_bpb = (sum of losses / ln 2) /
(sum of the target tokens' UTF-8 bytes). Sums are float64 and all-reduced over ranks, as in
the challenge's train_gpt.py, so the figure does not depend on the number of ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from jepardy.data.tokenizer import ByteTables
from jepardy.trainer.model import GPT


@dataclass(frozen=True)
class EvalResult:
    val_loss: float  # nats per token
    val_bpb: float  # bits per byte
    tokens: int
    bytes_total: int


class ByteCounter:
    """Per-target-token byte counts on the device, from the tokenizer's tables.

    A target's bytes are its piece's bytes, plus one for a leading-space marker unless the
    previous token is a boundary (control/unknown) token.
    """

    def __init__(self, tables: ByteTables, device: torch.device) -> None:
        self.base = torch.as_tensor(tables.base_bytes.astype(np.int64), device=device)
        self.space = torch.as_tensor(tables.has_leading_space, device=device)
        self.boundary = torch.as_tensor(tables.is_boundary, device=device)

    def count(self, prev: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.base[target] + (self.space[target] & ~self.boundary[prev]).long()


@torch.no_grad()
def evaluate(
    gpt: GPT,
    val_tokens: np.ndarray,
    counter: ByteCounter,
    seq_len: int,
    batch_tokens: int,
    rank: int,
    world: int,
    device: torch.device,
) -> EvalResult:
    """Score `gpt` on every whole sequence of `val_tokens`; ranks split the sequences."""
    n_seqs = (len(val_tokens) - 1) // seq_len
    first, last = n_seqs * rank // world, n_seqs * (rank + 1) // world
    seqs_per_batch = max(1, batch_tokens // world // seq_len)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, tokens, bytes
    was_training = gpt.training
    gpt.eval()
    for start in range(first, last, seqs_per_batch):
        stop = min(start + seqs_per_batch, last)
        span = val_tokens[start * seq_len : stop * seq_len + 1].astype(np.int64)
        local = torch.from_numpy(span).to(device)
        x, y = local[:-1].view(-1, seq_len), local[1:].view(-1, seq_len)
        with autocast(device):
            losses = gpt.token_losses(x, y)
        sums[0] += losses.double().sum()
        sums[1] += y.numel()
        sums[2] += counter.count(x, y).sum()
    gpt.train(was_training)
    if world > 1:
        dist.all_reduce(sums)
    loss_sum, tokens, bytes_total = sums.tolist()
    return EvalResult(
        val_loss=loss_sum / tokens,
        val_bpb=loss_sum / math.log(2) / bytes_total,
        tokens=int(tokens),
        bytes_total=int(bytes_total),
    )


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a disabled context on CPU (float32 there, for exactness)."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
    )
