"""Training health: how far each module group moved, and how the gradients behaved.

The study's predictor never trained (it sat in no optimizer group), and a zero prediction
once blew its gradient up so that global clipping silenced every real gradient. Both are
visible in these numbers: a group whose weights did not move, a clip coefficient that
stays near zero. `jepardy report --health` turns them into flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from jepardy.trainer.optim import ParamGroup

MODULE_GROUPS = ("embeddings", "attention", "mlp", "jepa_predictor", "scalars")


def module_group(name: str, param: Tensor) -> str:
    """The module group of a TrainingObjective parameter, by its name and shape."""
    if name.startswith("predictor."):
        return "jepa_predictor"
    if param.ndim < 2:
        return "scalars"
    if ".attn." in name:
        return "attention"
    if ".mlp." in name:
        return "mlp"
    return "embeddings"  # token, bigram-hash and value embeddings and their projections


def module_drift(groups: list[ParamGroup], initial: dict[str, list[Tensor]]) -> dict[str, float]:
    """||w_end - w_init|| / ||w_init|| per module group (MODULE_GROUPS that exist)."""
    delta_sq: dict[str, float] = {}
    norm_sq: dict[str, float] = {}
    for g in groups:
        for name, p, w0 in zip(g.names, g.params, initial[g.name], strict=True):
            key = module_group(name, p)
            delta_sq[key] = delta_sq.get(key, 0.0) + float((p.detach().float() - w0).square().sum())
            norm_sq[key] = norm_sq.get(key, 0.0) + float(w0.square().sum())
    return {
        key: math.sqrt(delta_sq[key]) / math.sqrt(norm_sq[key])
        if norm_sq[key] > 0
        else math.sqrt(delta_sq[key])
        for key in MODULE_GROUPS
        if key in delta_sq
    }


def group_grad_norms(groups: list[ParamGroup]) -> dict[str, Tensor]:
    """Gradient norm per optimizer group, as tensors (no host sync); call before clipping."""
    norms = {}
    for g in groups:
        grads = [p.grad for p in g.params if p.grad is not None]
        if grads:
            norms[g.name] = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return norms


def clip_coefficient(grad_norm: float, max_norm: float) -> float:
    """The factor clipping multiplied the gradients by (1 when it did not clip)."""
    if max_norm <= 0 or not math.isfinite(grad_norm):
        return 1.0 if max_norm <= 0 else 0.0
    return min(1.0, max_norm / (grad_norm + 1e-6))


@dataclass
class GradHealth:
    """Gradient figures over the logged steps of a run."""

    logged_steps: int = 0
    nonfinite_steps: int = 0
    clip_coefs: list[float] = field(default_factory=list)

    def observe(self, grad_norm: float, max_norm: float) -> float:
        """Record one logged step's global (model) gradient norm; returns its clip coefficient."""
        self.logged_steps += 1
        if not math.isfinite(grad_norm):
            self.nonfinite_steps += 1
        coef = clip_coefficient(grad_norm, max_norm)
        self.clip_coefs.append(coef)
        return coef

    def summary(self) -> dict[str, float | int | None]:
        coefs = self.clip_coefs
        return {
            "logged_steps": self.logged_steps,
            "nonfinite_grad_norm_steps": self.nonfinite_steps,
            "clip_coef_min": min(coefs) if coefs else None,
            "clip_coef_max": max(coefs) if coefs else None,
            "clip_coef_last": coefs[-1] if coefs else None,
        }


def group_drift(groups: list[ParamGroup], initial: dict[str, list[Tensor]]) -> dict[str, float]:
    """||w_end - w_init|| / ||w_init|| per optimizer group: a group that did not move is loud."""
    drift = {}
    for g in groups:
        delta = math.sqrt(
            sum(
                float((p.detach().float() - w0).square().sum())
                for p, w0 in zip(g.params, initial[g.name], strict=True)
            )
        )
        norm = math.sqrt(sum(float(w0.square().sum()) for w0 in initial[g.name]))
        drift[g.name] = delta / norm if norm > 0 else delta
    return drift
