"""Muon: momentum SGD whose update of each weight matrix is orthogonalised.

For each matrix W with gradient G (after DDP's all-reduce and clipping):

    m <- mu * m + G                      momentum buffer
    U <- G + mu * m                      Nesterov
    O <- NewtonSchulz(U)                 ~ the orthogonal factor of U (singular values ~1)
    W <- W * (1 - lr * wd) - lr * sqrt(max(1, rows / cols)) * O

Figures from the challenge's train_gpt.py (openai/parameter-golf, after modded-nanogpt):
the quintic iteration X <- a X + (b A + c A^2) X with A = X X^T and (a, b, c) =
(3.4445, -4.7750, 2.0315), 5 steps, in bf16, on X = U / ||U||; the sqrt(max(1, rows/cols))
scale; decoupled weight decay (the leader stack's MUON_WD 0.04).

Under DDP every rank holds the same all-reduced gradients, so every rank could compute every
update. Instead each matrix has one owner rank (sizes balanced greedily, the same assignment
on every rank): the owner alone keeps its momentum and runs its Newton-Schulz iteration, and
one all-reduce (a sum where every other rank contributes zeros) gives every rank every
update. That spends the iterations once instead of `world` times, for one extra all-reduce
of the matrices' size; the result equals one rank's exactly (a sum of one value and zeros).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
_NS_EPS = 1e-7


def newton_schulz(grad: Tensor, steps: int, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """A matrix with the row and column spaces of `grad` whose singular values are all pushed
    towards 1 (into roughly [0.7, 1.2]: the quintic trades exactness for speed). (rows, cols)."""
    a, b, c = NS_COEFFICIENTS
    x = grad.to(dtype)
    transposed = x.size(0) > x.size(1)
    if transposed:  # iterate on the wide side: A = X X^T is the smaller square
        x = x.T
    x = x / (x.norm() + _NS_EPS)  # spectral norm <= Frobenius norm = 1: inside the basin
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


def owners(params: list[nn.Parameter], world: int) -> list[int]:
    """The rank that orthogonalises each parameter: largest first, to the least loaded rank
    (ties to the lowest rank). Deterministic, so every rank computes the same table."""
    load = [0] * world
    owner = [0] * len(params)
    for i in sorted(range(len(params)), key=lambda i: (-params[i].numel(), i)):
        rank = min(range(world), key=lambda r: (load[r], r))
        owner[i] = rank
        load[rank] += params[i].numel()
    return owner


class Muon(torch.optim.Optimizer):
    """Muon over 2-D parameters; `rank`/`world` shard the Newton-Schulz work (see above).

    Param groups carry lr, momentum (settable each step, for its warmup), weight_decay,
    ns_steps and nesterov."""

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict],
        lr: float,
        momentum: float,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        nesterov: bool = True,
        rank: int = 0,
        world: int = 1,
        ns_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            ns_steps=ns_steps,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon takes 2-D parameters; got shape {tuple(p.shape)}")
        self.rank, self.world, self.ns_dtype = rank, world, ns_dtype
        self._owner = {
            id(p): r
            for group in self.param_groups
            for p, r in zip(group["params"], owners(group["params"], world), strict=True)
        }

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            updates = self.local_updates(group, params)
            if self.world > 1:
                dist.all_reduce(updates)
            self.apply_updates(group, params, updates)

    @torch.no_grad()
    def local_updates(self, group: dict, params: list[nn.Parameter]) -> Tensor:
        """This rank's share: a flat buffer holding the orthogonalised update of every
        parameter it owns and zeros elsewhere. Advances the owned momentum buffers."""
        device = params[0].device
        flat = torch.zeros(sum(p.numel() for p in params), dtype=self.ns_dtype, device=device)
        momentum, offset = group["momentum"], 0
        for p in params:
            n = p.numel()
            if self._owner[id(p)] == self.rank:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.mul_(momentum).add_(p.grad)
                direction = p.grad.add(buf, alpha=momentum) if group["nesterov"] else buf
                update = newton_schulz(direction, group["ns_steps"], self.ns_dtype)
                flat[offset : offset + n] = update.reshape(-1)
            offset += n
        return flat

    @torch.no_grad()
    def apply_updates(self, group: dict, params: list[nn.Parameter], updates: Tensor) -> None:
        """W <- W (1 - lr wd) - lr sqrt(max(1, rows/cols)) O, for every parameter."""
        lr, wd, offset = group["lr"], group["weight_decay"], 0
        for p in params:
            n = p.numel()
            update = updates[offset : offset + n].view_as(p).to(p.dtype)
            if wd > 0:
                p.mul_(1.0 - lr * wd)
            p.add_(update, alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)
            offset += n
