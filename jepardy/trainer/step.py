"""One optimizer step: forward/backward over the micro-batches, clip, step, zero."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel

from jepardy.trainer.config import TrainConfig
from jepardy.trainer.eval import autocast
from jepardy.trainer.health import group_grad_norms
from jepardy.trainer.jepa import StepLosses
from jepardy.trainer.optim import Optimizers, ParamGroup, clip_grad_norms


@dataclass(frozen=True)
class StepStats:
    """One optimizer step's figures, as device tensors (read on log steps only)."""

    total: torch.Tensor
    cross_entropy: torch.Tensor
    jepa: torch.Tensor | None
    jepa_pred_std: torch.Tensor | None
    grad_norms: dict[str, torch.Tensor]
    group_grad_norms: dict[str, torch.Tensor]


def _mean(values: list[torch.Tensor | None]) -> torch.Tensor | None:
    if values[0] is None:
        return None
    return torch.stack([v.detach() for v in values if v is not None]).mean()


def train_step(
    model: nn.Module,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor]],
    optimizer: Optimizers,
    groups: list[ParamGroup],
    config: TrainConfig,
    device: torch.device,
    log_step: bool = False,
) -> StepStats:
    """Forward/backward over the micro-batches (gradients averaged), clip, step, zero. No
    host synchronisation.

    Under DDP the ranks' gradients are averaged by DDP's all-reduce in the last backward, or,
    with `grad_clip_before_average` and clipping on, by one all-reduce after each rank has
    clipped its own gradient, as the challenge's record and the study do (norms logged are
    then rank 0's own)."""
    n = len(micro_batches)
    ddp = isinstance(model, DistributedDataParallel)
    clip_first = ddp and config.grad_clip > 0 and config.grad_clip_before_average
    parts: list[StepLosses] = []
    for i, (x, y) in enumerate(micro_batches):
        sync = model.no_sync() if ddp and (clip_first or i < n - 1) else None
        with sync or contextlib.nullcontext():
            with autocast(device):
                losses = model(x, y)
            (losses.total / n).backward()
        parts.append(losses)
    per_group = group_grad_norms(groups) if log_step else {}
    grad_norms = clip_grad_norms(groups, config.grad_clip)
    if clip_first:
        average_gradients([p for g in groups for p in g.params])
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepStats(
        total=_mean([p.total for p in parts]),
        cross_entropy=_mean([p.cross_entropy for p in parts]),
        jepa=_mean([p.jepa for p in parts]),
        jepa_pred_std=_mean([p.jepa_pred_std for p in parts]),
        grad_norms=grad_norms,
        group_grad_norms=per_group,
    )


def average_gradients(params: list[nn.Parameter]) -> None:
    """Average the gradients over the ranks in one flat all-reduce (SUM then divide: gloo has
    no AVG)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(averaged)
