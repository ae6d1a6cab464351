"""Validation loss and bits per byte, the challenge's score: plain and sliding-window.

val_loss is the mean cross-entropy in nats per token; val_bpb = (sum of losses / ln 2) /
(sum of the target tokens' UTF-8 bytes). Sums are float64 and all-reduced over ranks, as in
the challenge's train_gpt.py, so the figure does not depend on the number of ranks.

The plain evaluation cuts the tokens into sequences of seq_len and scores every target: a
target at position i of its sequence sees i tokens of context. The sliding-window evaluation
(`evaluate_sliding`) scores every target exactly once too, but with windows of seq_len that
advance by `stride` tokens and score only their last `stride` targets (the first window
scores all of its own), so every target after the first window sees at least
seq_len - stride tokens of context. The challenge's records evaluate so at stride 64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from jepardy.data.tokenizer import ByteTables
from jepardy.trainer.distributed import Dist
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


Forward = Callable[[Tensor], Tensor]  # token ids (B, T) -> hidden states (B, T, D)


@torch.no_grad()
def evaluate(
    gpt: GPT,
    val_tokens: np.ndarray,
    counter: ByteCounter,
    seq_len: int,
    batch_tokens: int,
    env: Dist,
    forward: Forward | None = None,
) -> EvalResult:
    """Score `gpt` on every whole sequence of `val_tokens`; ranks split the sequences.
    `forward` (default `gpt` itself) may be a compiled copy of it."""
    forward = forward if forward is not None else gpt
    rank, world, device = env.rank, env.world, env.device
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
            logits = gpt.logits(forward(x))
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        sums[0] += losses.double().sum()
        sums[1] += y.numel()
        sums[2] += counter.count(x, y).sum()
    gpt.train(was_training)
    return _result(sums, world)


def _result(sums: Tensor, world: int) -> EvalResult:
    """float64 (loss, tokens, bytes) sums of this rank -> the all-ranks result."""
    if world > 1:
        dist.all_reduce(sums)
    loss_sum, tokens, bytes_total = sums.tolist()
    return EvalResult(
        val_loss=loss_sum / tokens,
        val_bpb=loss_sum / math.log(2) / bytes_total,
        tokens=int(tokens),
        bytes_total=int(bytes_total),
    )


def sliding_windows(targets: int, seq_len: int, stride: int) -> list[tuple[int, int]]:
    """(start, first scored position) of every window over `targets` targets.

    Window k covers inputs [start, start + L) with L = min(seq_len, targets) and scores the
    targets at positions [first, L) of it, i.e. targets start + first ... start + L - 1. The
    first window scores all L; each next one ends `stride` later (the last one at `targets`)
    and scores only what the previous did not, so every target is scored exactly once.
    """
    length = min(seq_len, targets)
    windows = [(0, 0)]
    end = length
    while end < targets:
        new_end = min(end + stride, targets)
        start = new_end - length
        windows.append((start, end - start))
        end = new_end
    return windows


@torch.no_grad()
def evaluate_sliding(
    gpt: GPT,
    val_tokens: np.ndarray,
    counter: ByteCounter,
    seq_len: int,
    stride: int,
    batch_tokens: int,
    env: Dist,
    forward: Forward | None = None,
) -> EvalResult:
    """Score every target of `val_tokens` once with sliding windows (see the module doc);
    ranks split the windows. Logits are computed only where a window scores."""
    forward = forward if forward is not None else gpt
    rank, world, device = env.rank, env.world, env.device
    targets = len(val_tokens) - 1
    windows = sliding_windows(targets, seq_len, stride)
    length = min(seq_len, targets)
    first, last = len(windows) * rank // world, len(windows) * (rank + 1) // world
    per_batch = max(1, batch_tokens // world // length)
    tokens = torch.from_numpy(val_tokens.astype(np.int64)).to(device)
    offsets = torch.arange(length + 1, device=device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, tokens, bytes
    was_training = gpt.training
    gpt.eval()
    for lo in range(first, last, per_batch):
        batch = windows[lo : min(lo + per_batch, last)]
        starts = torch.tensor([start for start, _ in batch], device=device)
        span = tokens[starts[:, None] + offsets]  # (W, L + 1)
        x, y = span[:, :-1], span[:, 1:]
        # Positions before `keep` are scored by no window of this batch: skip their logits.
        keep = min(first_scored for _, first_scored in batch)
        scored_from = torch.tensor([f - keep for _, f in batch], device=device)  # (W,)
        with autocast(device):
            logits = gpt.logits(forward(x)[:, keep:])  # (W, L - keep, V)
        y, x = y[:, keep:], x[:, keep:]
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        mask = torch.arange(length - keep, device=device)[None, :] >= scored_from[:, None]
        sums[0] += (losses.view_as(y).double() * mask).sum()
        sums[1] += mask.sum()
        sums[2] += (counter.count(x, y) * mask).sum()
    gpt.train(was_training)
    return _result(sums, world)


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a disabled context on CPU (float32 there, for exactness)."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
    )
