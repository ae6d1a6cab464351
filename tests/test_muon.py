"""Muon: the Newton-Schulz orthogonalisation, the update rule, and its sharding over ranks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from jepardy.trainer.muon import NS_COEFFICIENTS, Muon, newton_schulz, owners


def random_matrix(rows: int, cols: int, seed: int, condition: float = 1.0) -> torch.Tensor:
    """A matrix with singular values spread log-uniformly over [1/condition, 1] x 3."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=g))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g))
    k = min(rows, cols)
    s = 3.0 * torch.logspace(0, -torch.log10(torch.tensor(condition)).item(), k)
    return u[:, :k] @ torch.diag(s) @ v[:, :k].T


@pytest.mark.parametrize("shape", [(64, 64), (32, 96), (96, 32)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_newton_schulz_singular_values_near_one(shape, dtype):
    grad = random_matrix(*shape, seed=1, condition=30.0)
    out = newton_schulz(grad, steps=5, dtype=dtype)
    assert out.shape == grad.shape and out.dtype == dtype
    singular = torch.linalg.svdvals(out.float())
    # The quintic's coefficients trade exactness for speed: every singular value lands in a
    # band around 1 instead of on it (modded-nanogpt measures about [0.7, 1.2]).
    assert singular.min() > 0.6 and singular.max() < 1.25, singular
    # ... and it keeps the direction: close to the orthogonal polar factor U V^T.
    u, _, vh = torch.linalg.svd(grad, full_matrices=False)
    polar = u @ vh
    cosine = (out.float() * polar).sum() / (out.float().norm() * polar.norm())
    assert cosine > 0.98


def test_newton_schulz_ignores_the_gradients_scale():
    grad = random_matrix(32, 48, seed=2, condition=10.0)
    small = newton_schulz(grad * 1e-2, 5, torch.float32)
    large = newton_schulz(grad * 1e2, 5, torch.float32)
    torch.testing.assert_close(small, large, rtol=0, atol=1e-4)
    assert NS_COEFFICIENTS == (3.4445, -4.7750, 2.0315)


def test_owners_balance_the_work_and_agree_across_ranks():
    params = [nn.Parameter(torch.zeros(n, 8)) for n in (64, 8, 32, 32, 16, 64)]
    table = owners(params, world=2)
    assert table == owners(params, world=2)  # deterministic
    load = [sum(p.numel() for p, r in zip(params, table, strict=True) if r == k) for k in (0, 1)]
    # Largest first to the least loaded: 64, 64, 32, 32, 16, 8 rows alternate ranks.
    assert load == [8 * (64 + 32 + 16), 8 * (64 + 32 + 8)]
    assert owners(params, world=1) == [0] * len(params)


def make_params(seed: int = 0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(r, c, generator=g)) for r, c in ((16, 8), (8, 24), (12, 12))]


def set_grads(params: list[nn.Parameter], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def test_one_step_by_hand():
    params = make_params()
    before = [p.detach().clone() for p in params]
    opt = Muon(params, lr=0.1, momentum=0.9, ns_steps=5, weight_decay=0.5, ns_dtype=torch.float32)
    set_grads(params, seed=3)
    grads = [p.grad.clone() for p in params]
    opt.step()
    for p, w0, grad in zip(params, before, grads, strict=True):
        # First step: buffer = grad; Nesterov direction = grad + 0.9 * grad.
        update = newton_schulz(1.9 * grad, 5, torch.float32)
        scale = max(1.0, p.shape[0] / p.shape[1]) ** 0.5
        expected = w0 * (1 - 0.1 * 0.5) - 0.1 * scale * update
        torch.testing.assert_close(p.detach(), expected)


def test_sharded_updates_sum_to_the_single_rank_updates():
    """Two ranks with the same (all-reduced) gradients, each orthogonalising its own share:
    the sum of their buffers (what the all-reduce computes) is one rank's buffer exactly,
    over several steps (momentum included)."""
    single = make_params()
    ranks = [copy.deepcopy(single) for _ in range(2)]
    opt_single = Muon(single, lr=0.05, momentum=0.95, ns_dtype=torch.float32)
    opts = [
        Muon(ranks[r], lr=0.05, momentum=0.95, rank=r, world=2, ns_dtype=torch.float32)
        for r in range(2)
    ]
    for step in range(3):
        for params in (single, *ranks):
            set_grads(params, seed=10 + step)
        group = opt_single.param_groups[0]
        expected = opt_single.local_updates(group, single)
        shares = [o.local_updates(o.param_groups[0], ranks[r]) for r, o in enumerate(opts)]
        assert all(share.abs().sum() > 0 for share in shares)  # both ranks did work
        assert torch.equal(shares[0] + shares[1], expected)
        opt_single.apply_updates(group, single, expected)
        for r, o in enumerate(opts):
            o.apply_updates(o.param_groups[0], ranks[r], shares[0] + shares[1])
    for params in ranks:
        for p, q in zip(params, single, strict=True):
            assert torch.equal(p, q)


def test_muon_refuses_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        Muon([nn.Parameter(torch.zeros(4))], lr=0.1, momentum=0.9)
