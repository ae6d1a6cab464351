"""Optimizer groups from an explicit rule table, their audit, the schedule, and weight EMA.

The study's predictor sat in no optimizer group and never trained. Here every trainable
parameter must be claimed by exactly one rule, or the trainer refuses to start and names
the orphaned and doubly-claimed parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jepardy.trainer.config import TrainConfig
from jepardy.trainer.model import GPT


class OptimizerAuditError(RuntimeError):
    """Some trainable parameter is in no optimizer group, or in more than one."""


@dataclass(frozen=True)
class GroupRule:
    """A named optimizer group: which parameters it claims and how they are optimized."""

    name: str
    claims: Callable[[str, nn.Parameter], bool]
    lr: float
    weight_decay: float


def group_rules(config: TrainConfig) -> list[GroupRule]:
    """The rule table. Names are those of TrainingObjective.named_parameters()."""

    def in_gpt(name: str) -> bool:
        return name.startswith("gpt.")

    return [
        GroupRule("embed", lambda n, p: n == "gpt.embed.weight", config.embed_lr, 0.0),
        GroupRule(
            "matrix",
            lambda n, p: in_gpt(n) and n != "gpt.embed.weight" and p.ndim >= 2,
            config.lr,
            config.weight_decay,
        ),
        GroupRule("scalar", lambda n, p: in_gpt(n) and p.ndim < 2, config.lr, 0.0),
        GroupRule("jepa_predictor", lambda n, p: n.startswith("predictor."), config.jepa_lr, 0.0),
    ]


@dataclass(frozen=True)
class ParamGroup:
    name: str
    names: list[str]
    params: list[nn.Parameter]
    lr: float
    weight_decay: float

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)


def assign_groups(module: nn.Module, rules: Iterable[GroupRule]) -> list[ParamGroup]:
    """Put every trainable parameter in exactly one group; raise OptimizerAuditError naming
    every orphaned or doubly-claimed parameter otherwise. Empty groups are dropped."""
    rules = list(rules)
    members: dict[str, list[tuple[str, nn.Parameter]]] = {r.name: [] for r in rules}
    orphans, doubles = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        claimed_by = [r.name for r in rules if r.claims(name, param)]
        if not claimed_by:
            orphans.append(name)
        elif len(claimed_by) > 1:
            doubles.append(f"{name} ({' and '.join(claimed_by)})")
        else:
            members[claimed_by[0]].append((name, param))
    if orphans or doubles:
        parts = []
        if orphans:
            parts.append(f"in no optimizer group: {', '.join(orphans)}")
        if doubles:
            parts.append(f"in several optimizer groups: {', '.join(doubles)}")
        raise OptimizerAuditError("optimizer audit failed; parameters " + "; ".join(parts))
    return [
        ParamGroup(
            r.name,
            [n for n, _ in members[r.name]],
            [p for _, p in members[r.name]],
            r.lr,
            r.weight_decay,
        )
        for r in rules
        if members[r.name]
    ]


def build_optimizer(groups: list[ParamGroup], config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the audited groups; each torch param group remembers its base lr."""
    torch_groups = [
        {
            "params": g.params,
            "lr": g.lr,
            "base_lr": g.lr,
            "weight_decay": g.weight_decay,
            "name": g.name,
        }
        for g in groups
    ]
    return torch.optim.AdamW(torch_groups, betas=(config.beta1, config.beta2), eps=1e-8)


def group_table(groups: list[ParamGroup]) -> list[str]:
    """Human-readable lines: group, optimizer, tensors, parameters, lr."""
    return [
        f"optimizer_group:{g.name} optimizer:adamw tensors:{len(g.params)} params:{g.numel} "
        f"lr:{g.lr:g} weight_decay:{g.weight_decay:g}"
        for g in groups
    ]


def lr_multiplier(step: int, elapsed_s: float, config: TrainConfig) -> float:
    """Linear warmup over `warmup_steps`, then flat, then linear warmdown to 0 over the last
    `warmdown_frac` of the run. Progress is elapsed / wallclock_s when a budget is set (so the
    decay ends when the clock does), else step / iterations."""
    warmup = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps > 0 else 1.0
    if config.wallclock_s > 0:
        progress = min(1.0, max(elapsed_s / config.wallclock_s, step / config.iterations))
    else:
        progress = step / config.iterations
    if config.warmdown_frac <= 0 or progress < 1.0 - config.warmdown_frac:
        return warmup
    return warmup * max(0.0, (1.0 - progress) / config.warmdown_frac)


def set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier


def clip_grad_norms(groups: list[ParamGroup], max_norm: float) -> dict[str, Tensor]:
    """Clip the model's gradients and the training-only (JEPA predictor) gradients
    separately, so that training-only parameters cannot shrink the model's updates.

    Returns the pre-clip norm of each part as a tensor (no host sync).
    """
    parts = {
        "model": [p for g in groups if g.name != "jepa_predictor" for p in g.params],
        "jepa_predictor": [p for g in groups if g.name == "jepa_predictor" for p in g.params],
    }
    norms = {}
    for part, params in parts.items():
        if not params:
            continue
        if max_norm > 0:
            norms[part] = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            norms[part] = torch.linalg.vector_norm(
                torch.stack(
                    [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
                )
            )
    return norms


class WeightEMA:
    """Exponential moving average of a model's parameters, kept in float32."""

    def __init__(self, model: GPT, decay: float) -> None:
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: GPT) -> None:
        for name, param in model.named_parameters():
            self.shadow[name].lerp_(param.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: GPT) -> None:
        for name, param in model.named_parameters():
            param.copy_(self.shadow[name].to(param.dtype))
