"""Optimizer groups from an explicit rule table, their audit, the schedules, and weight EMA.

The study's predictor sat in no optimizer group and never trained. Here every trainable
parameter must be claimed by exactly one rule, or the trainer refuses to start and names
the orphaned and doubly-claimed parameters.

The groups (names of TrainingObjective.named_parameters()):
- embed: the embedding tables (token; bigram and value-embedding tables when on). AdamW.
- matrix: the blocks' linear weights. Muon with `optimizer = "muon"`, else AdamW.
- scalar: everything else of the GPT: per-channel scales and gates, mixing weights, skip
  weights, the small bigram / value-embedding projections. AdamW.
- jepa_predictor: the JEPA predictor. Always AdamW at `jepa_lr`, whatever `optimizer` says:
  it is a training-only auxiliary (clipped apart from the model, never exported), so its
  optimizer stays the same across the arms and optimizers a sweep compares; Muon's update
  is shaped for the network's own weight matrices, and putting the predictor under it would
  couple `jepa_lr` to the matrix schedule and its momentum warmup.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from jepardy.trainer.config import TrainConfig
from jepardy.trainer.distributed import Dist
from jepardy.trainer.model import GPT
from jepardy.trainer.muon import Muon

# The GPT's embedding tables, by parameter name.
EMBEDDING_TABLES = frozenset(
    {"gpt.embed.weight", "gpt.bigram.table.weight", "gpt.value_embed.table.weight"}
)


class OptimizerAuditError(RuntimeError):
    """Some trainable parameter is in no optimizer group, or in more than one."""


@dataclass(frozen=True)
class GroupRule:
    """A named optimizer group: which parameters it claims and how they are optimized."""

    name: str
    claims: Callable[[str, nn.Parameter], bool]
    lr: float
    weight_decay: float
    optimizer: str = "adamw"  # "adamw" | "muon"


def is_block_matrix(name: str, param: nn.Parameter) -> bool:
    """The blocks' linear weights (attention q/k/v/proj, MLP fc/proj)."""
    return name.startswith("gpt.blocks.") and name.endswith(".weight") and param.ndim == 2


def group_rules(config: TrainConfig) -> list[GroupRule]:
    """The rule table. Names are those of TrainingObjective.named_parameters()."""

    def in_gpt(name: str) -> bool:
        return name.startswith("gpt.")

    def is_scalar(name: str, param: nn.Parameter) -> bool:
        return in_gpt(name) and name not in EMBEDDING_TABLES and not is_block_matrix(name, param)

    return [
        GroupRule(
            "embed", lambda n, p: n in EMBEDDING_TABLES, config.embed_lr, config.adam_weight_decay
        ),
        GroupRule("matrix", is_block_matrix, config.lr, config.weight_decay, config.optimizer),
        GroupRule("scalar", is_scalar, config.scalar_lr or config.lr, config.adam_weight_decay),
        GroupRule("jepa_predictor", lambda n, p: n.startswith("predictor."), config.jepa_lr, 0.0),
    ]


@dataclass(frozen=True)
class ParamGroup:
    name: str
    names: list[str]
    params: list[nn.Parameter]
    lr: float
    weight_decay: float
    optimizer: str = "adamw"

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
            r.optimizer,
        )
        for r in rules
        if members[r.name]
    ]


class Optimizers:
    """The torch optimizers of one run (AdamW, and Muon when asked for), stepped together.

    `param_groups` lists every group of every optimizer; each remembers its "name",
    "optimizer" and "base_lr", so schedules can set them all (`set_lr`, `set_muon_momentum`).
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(o.state_dict()) for o in self.optimizers]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for o, state in zip(self.optimizers, states, strict=True):
            o.load_state_dict(state)


def build_optimizer(
    groups: list[ParamGroup],
    config: TrainConfig,
    env: Dist | None = None,
) -> Optimizers:
    """AdamW over the AdamW groups and Muon over the Muon groups (sharded over the ranks of
    `env`, see muon.py; default one CPU process). Fused AdamW and bf16 Newton-Schulz on CUDA;
    on CPU the float32 reference path."""
    env = env or Dist.local()
    on_cuda = env.device.type == "cuda"

    def torch_group(g: ParamGroup) -> dict[str, Any]:
        return {
            "params": g.params,
            "lr": g.lr,
            "base_lr": g.lr,
            "weight_decay": g.weight_decay,
            "name": g.name,
            "optimizer": g.optimizer,
        }

    optimizers: list[torch.optim.Optimizer] = []
    adam_groups = [torch_group(g) for g in groups if g.optimizer == "adamw"]
    if adam_groups:
        optimizers.append(
            torch.optim.AdamW(
                adam_groups,
                betas=(config.beta1, config.beta2),
                eps=1e-8,
                **({"fused": True} if on_cuda else {}),
            )
        )
    muon_groups = [torch_group(g) for g in groups if g.optimizer == "muon"]
    if muon_groups:
        optimizers.append(
            Muon(
                muon_groups,
                lr=config.lr,
                momentum=muon_momentum(0, config),
                ns_steps=config.muon_ns_steps,
                rank=env.rank,
                world=env.world,
                ns_dtype=torch.bfloat16 if on_cuda else torch.float32,
            )
        )
    return Optimizers(optimizers)


def group_table(groups: list[ParamGroup]) -> list[str]:
    """Human-readable lines: group, optimizer, tensors, parameters, lr."""
    return [
        f"optimizer_group:{g.name} optimizer:{g.optimizer} tensors:{len(g.params)} "
        f"params:{g.numel} lr:{g.lr:g} weight_decay:{g.weight_decay:g}"
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


def muon_momentum(step: int, config: TrainConfig) -> float:
    """Muon's momentum: linear from `muon_momentum_warmup_start` to `muon_momentum` over the
    first `muon_momentum_warmup_steps` steps, then constant (the challenge's schedule)."""
    if config.muon_momentum_warmup_steps <= 0:
        return config.muon_momentum
    frac = min(1.0, step / config.muon_momentum_warmup_steps)
    return (1 - frac) * config.muon_momentum_warmup_start + frac * config.muon_momentum


def set_lr(optimizer: Optimizers | torch.optim.Optimizer, multiplier: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier


def set_muon_momentum(optimizer: Optimizers, momentum: float) -> None:
    for group in optimizer.param_groups:
        if group.get("optimizer") == "muon":
            group["momentum"] = momentum


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
            grads = [p.grad for p in params if p.grad is not None]
            norms[part] = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return norms


class WeightEMA:
    """Exponential moving average of a model's parameters, kept in float32."""

    def __init__(self, model: GPT, decay: float) -> None:
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: GPT) -> None:
        """One fused (foreach) lerp over every parameter: a handful of kernels, no sync."""
        names = list(self.shadow)
        params = dict(model.named_parameters())
        torch._foreach_lerp_(
            [self.shadow[n] for n in names],
            [params[n].detach().float() for n in names],
            1.0 - self.decay,
        )

    @torch.no_grad()
    def copy_to(self, model: GPT) -> None:
        for name, param in model.named_parameters():
            param.copy_(self.shadow[name].to(param.dtype))
