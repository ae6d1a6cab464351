"""The JEPA auxiliary loss: where its gradient goes, its guards, its arithmetic, its patches."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jepardy.trainer.config import TrainConfig
from jepardy.trainer.jepa import (
    JepaSettings,
    Predictor,
    TargetEncoder,
    TrainingObjective,
    jepa_loss,
    patch_context,
    patch_targets,
)
from jepardy.trainer.model import GPT, GPTShape
from jepardy.trainer.train import build_objective

SHAPE = GPTShape(
    vocab_size=32,
    n_layers=2,
    d_model=16,
    n_heads=2,
    n_kv_heads=1,
    mlp_mult=2,
    rope_base=10000.0,
    logit_softcap=30.0,
    init_std=0.02,
)
SETTINGS = JepaSettings(weight=0.1, patch_size=4, var_weight=0.02, std_target=0.5)


def make_gpt(seed: int = 0) -> GPT:
    """A tiny GPT whose residual output layers are not zero (as after some training), so
    gradients reach every block weight, not only the zero-initialised output layers."""
    torch.manual_seed(seed)
    gpt = GPT(SHAPE)
    for block in gpt.blocks:
        nn.init.normal_(block.attn.proj.weight, std=0.02)
        nn.init.normal_(block.mlp.proj.weight, std=0.02)
    return gpt


def make_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, SHAPE.vocab_size, (2, 17), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def jepa_grads(objective: TrainingObjective, idx, targets) -> dict[str, torch.Tensor]:
    """Gradients of the JEPA loss alone (not the total) w.r.t. every parameter."""
    objective.zero_grad(set_to_none=True)
    losses = objective(idx, targets)
    losses.jepa.backward()
    return {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}


# --- (1) where the JEPA gradient goes -------------------------------------------------------


def test_jepa_gradient_reaches_blocks_embedding_and_predictor():
    objective = TrainingObjective(make_gpt(), SETTINGS, None)
    grads = jepa_grads(objective, *make_batch())
    expected = [
        "gpt.embed.weight",
        "predictor.fc.weight",
        "predictor.proj.weight",
        *(
            f"gpt.blocks.{i}.{w}.weight"
            for i in range(SHAPE.n_layers)
            for w in ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc", "mlp.proj")
        ),
    ]
    for name in expected:
        assert name in grads, f"{name} got no JEPA gradient"
        assert torch.isfinite(grads[name]).all(), name
        assert grads[name].abs().max() > 0, f"{name} got an all-zero JEPA gradient"


def test_online_target_is_stop_grad():
    """The embedding's JEPA gradient is the forward-path gradient only: identical to a run
    whose target comes from a detached copy of the embedding."""
    idx, targets = make_batch()
    objective = TrainingObjective(make_gpt(), SETTINGS, None)
    got = jepa_grads(objective, idx, targets)["gpt.embed.weight"]

    gpt = objective.gpt
    gpt.zero_grad(set_to_none=True)
    objective.predictor.zero_grad(set_to_none=True)
    hidden = gpt(idx)
    pred = objective.predictor(patch_context(hidden, SETTINGS.patch_size))
    target = patch_targets(idx, gpt.embed.weight.detach().clone(), SETTINGS.patch_size)
    jepa_loss(pred, target, SETTINGS.var_weight, SETTINGS.std_target).loss.backward()
    forward_only = gpt.embed.weight.grad

    # Had the target kept its graph, the embedding would get a second gradient term.
    torch.testing.assert_close(got, forward_only, rtol=0, atol=0)


def test_patch_targets_carry_no_gradient_to_their_source():
    source = torch.randn(SHAPE.vocab_size, SHAPE.d_model, requires_grad=True)
    idx, _ = make_batch()
    target = patch_targets(idx, source, SETTINGS.patch_size)
    assert not target.requires_grad
    pred = torch.randn(target.shape, requires_grad=True)
    jepa_loss(pred, target, 0.02, 0.5).loss.backward()
    assert source.grad is None
    assert pred.grad is not None and pred.grad.abs().max() > 0


def test_ema_target_encoder_is_a_buffer_and_gets_no_gradient():
    gpt = make_gpt()
    encoder = TargetEncoder(gpt.embed.weight, decay=0.995)
    objective = TrainingObjective(gpt, SETTINGS, encoder)
    assert "target_encoder.weight" in dict(objective.named_buffers())
    assert all(not n.startswith("target_encoder") for n, _ in objective.named_parameters())
    assert not encoder.weight.requires_grad
    # A copy, not a view of the embedding.
    assert encoder.weight.data_ptr() != gpt.embed.weight.data_ptr()

    idx, targets = make_batch()
    grads = jepa_grads(objective, idx, targets)
    assert encoder.weight.grad is None
    assert grads["gpt.embed.weight"].abs().max() > 0  # the forward path still trains it


def test_ema_target_is_used_and_updated():
    gpt = make_gpt()
    encoder = TargetEncoder(gpt.embed.weight, decay=0.9)
    objective = TrainingObjective(gpt, SETTINGS, encoder)
    idx, targets = make_batch()
    before = objective(idx, targets).jepa.item()
    with torch.no_grad():
        encoder.weight.copy_(torch.randn_like(encoder.weight))
    assert objective(idx, targets).jepa.item() != pytest.approx(before, abs=1e-4)

    old = encoder.weight.clone()
    new_embedding = torch.randn_like(old)
    encoder.update(new_embedding)
    torch.testing.assert_close(encoder.weight, 0.9 * old + 0.1 * new_embedding)


# --- (2) the predictor at init --------------------------------------------------------------


def test_predictor_output_at_init_is_not_zero():
    torch.manual_seed(0)
    predictor = Predictor(d_model=16, init_std=0.02)
    out = predictor(torch.randn(2, 3, 16))
    assert out.shape == (2, 3, 16)
    assert out.abs().max() > 0
    # Not zero per position either: every prediction has a direction.
    assert (out.norm(dim=-1) > 1e-6).all()


def test_gradients_finite_for_zero_context_and_zero_prediction():
    torch.manual_seed(0)
    predictor = Predictor(d_model=16, init_std=0.02)
    context = torch.zeros(2, 3, 16, requires_grad=True)
    target = torch.randn(2, 3, 16)
    terms = jepa_loss(predictor(context), target, 0.02, 0.5)
    terms.loss.backward()
    assert torch.isfinite(terms.loss)
    for tensor in (context, predictor.fc.weight, predictor.proj.weight):
        assert torch.isfinite(tensor.grad).all()

    # A prediction that is exactly zero: unit() is guarded, its gradient stays bounded.
    pred = torch.zeros(2, 3, 16, requires_grad=True)
    jepa_loss(pred, target, 0.02, 0.5).loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().max() < 1e7


# --- (3) jepa_loss by hand ------------------------------------------------------------------


@pytest.mark.parametrize("layout", [(1, 2), (2, 1)])  # (B, N): std is over batch and patches
def test_jepa_loss_by_hand(layout):
    pred = torch.tensor([[3.0, 4.0], [0.0, 2.0]]).view(*layout, 2)
    target = torch.tensor([[1.0, 0.0], [0.0, 5.0]]).view(*layout, 2)
    # unit(pred) = (0.6, 0.8), (0, 1); unit(target) = (1, 0), (0, 1)
    # squared errors: 0.4^2, 0.8^2, 0, 0 -> mean over all 4 (rows and width) = 0.8 / 4 = 0.2
    # population std per dim: dim0 of (3, 0) = 1.5, dim1 of (4, 2) = 1.0; mean 1.25
    inactive = jepa_loss(pred, target, var_weight=0.02, std_target=0.5)
    assert inactive.loss.item() == pytest.approx(0.2, abs=1e-6)
    assert inactive.pred_std.item() == pytest.approx(1.25, abs=1e-6)
    # std_target 2: relu(2 - 1.5) = 0.5, relu(2 - 1) = 1, mean 0.75
    active = jepa_loss(pred, target, var_weight=0.02, std_target=2.0)
    assert active.loss.item() == pytest.approx(0.2 + 0.02 * 0.75, abs=1e-6)
    assert jepa_loss(pred, target, 1.0, 2.0).loss.item() == pytest.approx(0.95, abs=1e-6)


def test_jepa_loss_pinned_to_the_study_formula():
    """The study's formula (its train_gpt.py, compute_jepa_loss), written out in plain
    Python on a fixed input: mean over batch, patches and width of the squared difference
    of the L2-normalised vectors, plus var_weight * mean over dims of relu(std_target -
    population std). Here B = 1, N = 3, D = 4."""
    rows_pred = [[1.0, 2.0, 2.0, 0.0], [0.0, -3.0, 4.0, 0.0], [2.0, 0.0, 0.0, 0.0]]
    rows_target = [[0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 6.0, 0.0, 8.0]]

    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    errors = [
        (a - b) ** 2
        for p, t in zip(rows_pred, rows_target, strict=True)
        for a, b in zip(unit(p), unit(t), strict=True)
    ]
    mse = sum(errors) / len(errors)  # 12 terms: the width is averaged, not summed
    stds = []
    for d in range(4):
        col = [r[d] for r in rows_pred]
        mean = sum(col) / 3
        stds.append(math.sqrt(sum((x - mean) ** 2 for x in col) / 3))
    variance = sum(max(0.0, 0.5 - s) for s in stds) / 4
    expected = mse + 0.02 * variance
    # The same figure, rounded, as a pin: a change of the formula moves it.
    assert expected == pytest.approx(0.374722, abs=1e-6)

    terms = jepa_loss(torch.tensor([rows_pred]), torch.tensor([rows_target]), 0.02, 0.5)
    assert terms.loss.item() == pytest.approx(expected, abs=1e-6)
    # What the study's own expression gives (F.mse_loss of the normalised vectors).
    pred, target = torch.tensor([rows_pred]), torch.tensor([rows_target])
    study = (
        torch.nn.functional.mse_loss(
            torch.nn.functional.normalize(pred, dim=-1),
            torch.nn.functional.normalize(target, dim=-1),
        )
        + 0.02 * torch.relu(0.5 - pred.std(dim=(0, 1), correction=0)).mean()
    )
    assert terms.loss.item() == pytest.approx(study.item(), abs=1e-7)


def test_jepa_loss_unit_vectors():
    # Mean over the width: a squared distance of 4 (opposite) over 3 dims is 4 / 3.
    e = torch.eye(3)
    same = jepa_loss(e.view(1, 3, 3), (5 * e).view(1, 3, 3), 0.0, 0.0)
    assert same.loss.item() == pytest.approx(0.0, abs=1e-6)
    opposite = jepa_loss(e.view(1, 3, 3), (-e).view(1, 3, 3), 0.0, 0.0)
    assert opposite.loss.item() == pytest.approx(4.0 / 3, abs=1e-6)
    orthogonal = jepa_loss(e.view(1, 3, 3), e.roll(1, dims=0).view(1, 3, 3), 0.0, 0.0)
    assert orthogonal.loss.item() == pytest.approx(2.0 / 3, abs=1e-6)
    # Rows of the identity: each dim holds (1, 0, 0) in some order; std = sqrt(2)/3.
    assert same.pred_std.item() == pytest.approx(math.sqrt(2) / 3, abs=1e-6)


# --- (4) no JEPA, no predictor --------------------------------------------------------------


def test_weight_zero_has_no_predictor_and_only_gpt_parameters():
    config = TrainConfig(vocab_size=32, d_model=16, n_heads=2, n_kv_heads=1, jepa_weight=0.0)
    objective = build_objective(config, torch.device("cpu"))
    assert objective.predictor is None
    assert objective.jepa is None
    assert objective.target_encoder is None
    names = {n for n, _ in objective.named_parameters()}
    assert names == {f"gpt.{n}" for n, _ in objective.gpt.named_parameters()}
    losses = objective(*make_batch())
    assert losses.jepa is None and losses.jepa_pred_std is None
    assert losses.total is losses.cross_entropy

    with_jepa = build_objective(
        TrainConfig(vocab_size=32, d_model=16, n_heads=2, n_kv_heads=1, jepa_weight=0.1),
        torch.device("cpu"),
    )
    assert with_jepa.predictor is not None
    assert {n for n, _ in with_jepa.named_parameters()} - names == {
        "predictor.fc.weight",
        "predictor.proj.weight",
    }


def test_total_is_cross_entropy_plus_weighted_jepa():
    objective = TrainingObjective(make_gpt(), SETTINGS, None)
    losses = objective(*make_batch())
    expected = losses.cross_entropy + SETTINGS.weight * losses.jepa
    assert losses.total.item() == pytest.approx(expected.item(), rel=1e-6)


# --- (5) patches ----------------------------------------------------------------------------


def test_patch_context_takes_last_position_of_every_patch_but_the_last():
    # hidden[0, t] = (t, 10 t): the position can be read off the values.
    t = torch.arange(16, dtype=torch.float32)
    hidden = torch.stack([t, 10 * t], dim=-1).view(1, 16, 2)
    context = patch_context(hidden, patch_size=4)
    assert context.shape == (1, 3, 2)
    assert context[0, :, 0].tolist() == [3.0, 7.0, 11.0]
    assert context[0, :, 1].tolist() == [30.0, 70.0, 110.0]


def test_patch_targets_are_rms_normalised_means_of_every_patch_but_the_first():
    # Embedding row v = (v, 1): a patch's mean embedding is (mean id, 1).
    vocab = torch.arange(16, dtype=torch.float32)
    embedding = torch.stack([vocab, torch.ones(16)], dim=-1)
    idx = torch.arange(16).view(1, 16)  # patches {0..3}, {4..7}, {8..11}, {12..15}
    targets = patch_targets(idx, embedding, patch_size=4)
    assert targets.shape == (1, 3, 2)
    expected = []
    for mean_id in (5.5, 9.5, 13.5):  # the first patch (mean 1.5) has no predecessor
        rms = math.sqrt((mean_id**2 + 1.0) / 2)
        expected.append([mean_id / rms, 1.0 / rms])
    torch.testing.assert_close(targets, torch.tensor([expected]), rtol=1e-6, atol=1e-6)
    # The order of tokens inside a patch does not matter, the patch they are in does.
    shuffled = torch.tensor([[3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12]])
    torch.testing.assert_close(patch_targets(shuffled, embedding, 4), targets)
    swapped = torch.tensor([[0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15]])
    assert not torch.allclose(patch_targets(swapped, embedding, 4), targets)
