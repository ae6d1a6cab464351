"""One optimizer step: forward/backward over the micro-batches, clip, step, zero."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
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
    """Forward/backward over the micro-batches (gradients averaged; DDP all-reduces on the
    last one only), clip, step, zero. No host synchronisation."""
    n = len(micro_batches)
    parts: list[StepLosses] = []
    for i, (x, y) in enumerate(micro_batches):
        last = i == n - 1
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last else None
        with sync or contextlib.nullcontext():
            with autocast(device):
                losses = model(x, y)
            (losses.total / n).backward()
        parts.append(losses)
    per_group = group_grad_norms(groups) if log_step else {}
    grad_norms = clip_grad_norms(groups, config.grad_clip)
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
