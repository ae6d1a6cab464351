"""Gradient accumulation: the global batch does not depend on ranks nor micro-steps."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from jepardy.data.corpus import EmbeddedCorpus, build_embedded
from jepardy.errors import UserError
from jepardy.trainer.config import TrainConfig
from jepardy.trainer.data import TrainBatches, micro_steps
from jepardy.trainer.distributed import Dist
from jepardy.trainer.optim import assign_groups, build_optimizer, group_rules
from jepardy.trainer.train import build_objective, train_step

CPU = torch.device("cpu")
SEQ, BATCH = 32, 512  # 16 sequences per step


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedCorpus:
    return build_embedded(tmp_path_factory.mktemp("embedded"))


def step_sequences(corpus, world: int, micro: int, steps: int = 3) -> list[list[tuple]]:
    """Per step, the sorted (input, target) rows every rank and micro-step of it sees."""
    loaders = [
        TrainBatches(str(corpus.sp1024_dir), BATCH, SEQ, Dist(rank, world, CPU), micro)
        for rank in range(world)
    ]
    out = []
    for _ in range(steps):
        rows = []
        for loader in loaders:
            for x, y in loader.next_step():
                rows += [(tuple(a), tuple(b)) for a, b in zip(x.tolist(), y.tolist(), strict=True)]
        out.append(sorted(rows))
    return out


def test_every_split_sees_the_same_global_batch(corpus):
    whole = step_sequences(corpus, world=1, micro=0)
    assert all(len(rows) == BATCH // SEQ for rows in whole)
    assert whole[0] != whole[1]  # the stream moves on
    for world, micro in [(1, BATCH // 2), (1, SEQ), (2, 0), (2, BATCH // 4), (4, SEQ)]:
        assert step_sequences(corpus, world, micro) == whole, (world, micro)


def test_targets_are_the_next_tokens(corpus):
    (x, y), *_ = TrainBatches(str(corpus.sp1024_dir), BATCH, SEQ, Dist.local(), 0).next_step()
    assert torch.equal(x.flatten()[1:], y.flatten()[:-1])


def test_micro_steps_count_and_refusals():
    assert micro_steps(786_432, 0, 2048, 8) == 1
    assert micro_steps(786_432, 98_304, 2048, 1) == 8
    with pytest.raises(UserError, match="must split into 3 ranks"):
        micro_steps(512, 0, 32, 3)
    with pytest.raises(UserError, match="micro_batch_tokens 96"):
        micro_steps(512, 96, 32, 1)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_two_micro_steps_match_one_big_step(corpus, optimizer):
    """The same global batch as 1 x 1 or 1 x 2 micro-steps: the same loss and, after the
    optimizer steps, the same weights (to float rounding)."""
    config = TrainConfig(
        vocab_size=1024, d_model=32, n_heads=4, n_kv_heads=2, seq_len=SEQ, optimizer=optimizer
    )
    torch.manual_seed(0)
    reference = build_objective(config, CPU)
    results = []
    for micro in (0, BATCH // 2):
        objective = copy.deepcopy(reference)
        groups = assign_groups(objective, group_rules(config))
        opt = build_optimizer(groups, config)
        loader = TrainBatches(str(corpus.sp1024_dir), BATCH, SEQ, Dist.local(), micro)
        losses = [
            float(train_step(objective, loader.next_step(), opt, groups, config, CPU).total)
            for _ in range(3)
        ]
        results.append((losses, [p.detach().clone() for p in objective.parameters()]))
    (loss_a, weights_a), (loss_b, weights_b) = results
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    for a, b in zip(weights_a, weights_b, strict=True):
        # Adam turns tiny rounding differences of near-zero gradients into ~1e-5 moves;
        # one step moves a weight by up to lr = 3e-3.
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def accumulated_grads(objective, micro_batches) -> list[torch.Tensor]:
    objective.zero_grad(set_to_none=True)
    for x, y in micro_batches:
        (objective(x, y).total / len(micro_batches)).backward()
    return [p.grad.clone() for p in objective.parameters()]


@pytest.mark.parametrize(("var_weight", "same"), [(0.0, True), (1.0, False)])
def test_jepa_accumulation_equals_one_batch_only_without_the_variance_term(
    corpus, var_weight, same
):
    """The JEPA error is a mean over equal chunks, so it splits like cross-entropy; its
    variance term is a std over each micro-batch's patches, so it does not (data.py)."""
    config = TrainConfig(
        vocab_size=1024,
        d_model=32,
        n_heads=4,
        n_kv_heads=2,
        seq_len=SEQ,
        jepa_weight=0.5,
        jepa_var_weight=var_weight,
        jepa_std_target=10.0,  # far above the prediction's std: the term is active
    )
    torch.manual_seed(0)
    objective = build_objective(config, CPU)
    whole = TrainBatches(str(corpus.sp1024_dir), BATCH, SEQ, Dist.local(), 0).next_step()
    halves = TrainBatches(str(corpus.sp1024_dir), BATCH, SEQ, Dist.local(), BATCH // 2)
    grads_whole = accumulated_grads(objective, whole)
    grads_split = accumulated_grads(objective, halves.next_step())
    close = all(
        torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        for a, b in zip(grads_whole, grads_split, strict=True)
    )
    assert close is same
