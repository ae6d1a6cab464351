"""Optimizer groups and their audit, the lr schedule, split gradient clipping, weight EMA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jepardy.trainer.config import TrainConfig
from jepardy.trainer.optim import (
    GroupRule,
    OptimizerAuditError,
    WeightEMA,
    assign_groups,
    build_optimizer,
    clip_grad_norms,
    group_rules,
    group_table,
    lr_multiplier,
    muon_momentum,
    set_lr,
    set_muon_momentum,
)
from jepardy.trainer.train import build_objective

CPU = torch.device("cpu")


def tiny_config(**overrides) -> TrainConfig:
    base = dict(vocab_size=32, d_model=16, n_heads=2, n_kv_heads=1, n_layers=2)
    return TrainConfig(**(base | overrides))


# --- groups and their audit -----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"jepa_weight": 0.0},
        {"jepa_weight": 0.1},
        {"jepa_weight": 0.1, "jepa_target": "ema"},
    ],
)
def test_every_trainable_parameter_in_exactly_one_group(overrides):
    config = tiny_config(**overrides)
    objective = build_objective(config, CPU)
    groups = assign_groups(objective, group_rules(config))

    named = dict(objective.named_parameters())
    grouped_names = [n for g in groups for n in g.names]
    assert sorted(grouped_names) == sorted(named)  # all of them, none twice
    for g in groups:
        assert len(g.names) == len(g.params)
        for name, param in zip(g.names, g.params, strict=True):
            assert param is named[name]
    by_name = {g.name: g for g in groups}
    assert set(by_name) == {"embed", "matrix", "scalar"} | (
        {"jepa_predictor"} if config.jepa_weight > 0 else set()
    )
    if config.jepa_weight > 0:
        assert sorted(by_name["jepa_predictor"].names) == [
            "predictor.fc.weight",
            "predictor.proj.weight",
        ]
        assert by_name["jepa_predictor"].lr == config.jepa_lr
    assert by_name["embed"].names == ["gpt.embed.weight"]

    # The torch optimizer sees exactly these parameters too.
    optimizer = build_optimizer(groups, config)
    in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(in_optimizer) == len(named)
    assert {id(p) for p in in_optimizer} == {id(p) for p in named.values()}


def test_orphaned_parameter_is_refused_by_name():
    config = tiny_config(jepa_weight=0.1)
    objective = build_objective(config, CPU)
    objective.stray_gate = nn.Parameter(torch.zeros(3))
    with pytest.raises(OptimizerAuditError, match="in no optimizer group") as err:
        assign_groups(objective, group_rules(config))
    assert "stray_gate" in str(err.value)


def test_frozen_parameter_is_not_an_orphan():
    config = tiny_config()
    objective = build_objective(config, CPU)
    objective.frozen = nn.Parameter(torch.zeros(3), requires_grad=False)
    groups = assign_groups(objective, group_rules(config))
    assert "frozen" not in [n for g in groups for n in g.names]


def test_doubly_claimed_parameter_names_both_groups():
    config = tiny_config()
    objective = build_objective(config, CPU)
    rules = [
        *group_rules(config),
        GroupRule("all_vectors", lambda n, p: p.ndim == 1, 1e-3, 0.0),  # overlaps "scalar"
    ]
    with pytest.raises(OptimizerAuditError, match="in several optimizer groups") as err:
        assign_groups(objective, rules)
    message = str(err.value)
    assert "gpt.blocks.0.attn_scale (scalar and all_vectors)" in message
    assert "gpt.embed.weight" not in message


# --- the lr schedule ------------------------------------------------------------------------


def test_lr_multiplier_by_steps():
    c = tiny_config(iterations=100, warmup_steps=10, warmdown_frac=0.3, wallclock_s=0.0)
    expected = {
        0: 0.1,  # warmup: (step + 1) / warmup_steps
        4: 0.5,
        9: 1.0,
        50: 1.0,  # flat
        69: 1.0,  # progress 0.69: still flat
        70: 1.0,  # warmdown starts at progress 0.7
        85: 0.5,  # (1 - 0.85) / 0.3
        97: 0.1,
        99: 0.01 / 0.3,  # the last step
        100: 0.0,  # the end
    }
    for step, value in expected.items():
        assert lr_multiplier(step, elapsed_s=123.0, config=c) == pytest.approx(
            value, rel=1e-12, abs=1e-15
        ), step


def test_lr_multiplier_edge_settings():
    no_warmup = tiny_config(iterations=10, warmup_steps=0, warmdown_frac=0.5)
    assert lr_multiplier(0, 0.0, no_warmup) == 1.0
    assert lr_multiplier(5, 0.0, no_warmup) == pytest.approx(1.0)
    assert lr_multiplier(8, 0.0, no_warmup) == pytest.approx(0.4)
    no_warmdown = tiny_config(iterations=10, warmup_steps=2, warmdown_frac=0.0)
    assert [lr_multiplier(s, 0.0, no_warmdown) for s in (0, 1, 9, 10)] == [0.5, 1.0, 1.0, 1.0]
    all_warmdown = tiny_config(iterations=10, warmup_steps=0, warmdown_frac=1.0)
    assert [lr_multiplier(s, 0.0, all_warmdown) for s in (0, 5, 10)] == pytest.approx(
        [1.0, 0.5, 0.0]
    )


def test_lr_multiplier_with_wallclock_budget():
    c = tiny_config(iterations=1000, warmup_steps=10, warmdown_frac=0.3, wallclock_s=100.0)
    # Progress follows the clock when it is ahead of the step count.
    assert lr_multiplier(20, 50.0, c) == pytest.approx(1.0)
    assert lr_multiplier(20, 69.0, c) == pytest.approx(1.0)
    assert lr_multiplier(20, 85.0, c) == pytest.approx(0.5, rel=1e-12)
    assert lr_multiplier(20, 97.0, c) == pytest.approx(0.1, rel=1e-12)
    assert lr_multiplier(20, 100.0, c) == 0.0  # the clock is spent: lr reaches 0
    assert lr_multiplier(20, 250.0, c) == 0.0  # never negative past the budget
    # ... and follows the step cap when that is ahead of the clock.
    assert lr_multiplier(900, 10.0, c) == pytest.approx(1 / 3, rel=1e-12)
    assert lr_multiplier(1000, 10.0, c) == 0.0
    # Warmup multiplies the warmdown.
    assert lr_multiplier(0, 85.0, c) == pytest.approx(0.05, rel=1e-12)


# --- split gradient clipping ----------------------------------------------------------------


def fill_grads(params, value: float) -> None:
    for p in params:
        p.grad = torch.full_like(p, value)


def total_norm(params) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))


def test_clip_keeps_model_and_predictor_apart():
    config = tiny_config(jepa_weight=0.1)
    groups = assign_groups(build_objective(config, CPU), group_rules(config))
    model_params = [p for g in groups if g.name != "jepa_predictor" for p in g.params]
    predictor_params = [p for g in groups if g.name == "jepa_predictor" for p in g.params]
    n_model = sum(p.numel() for p in model_params)

    # The model's gradient norm is 0.5, under the clip; the predictor's is enormous.
    fill_grads(model_params, 0.5 / n_model**0.5)
    fill_grads(predictor_params, 1e6)
    before = [p.grad.clone() for p in model_params]
    norms = clip_grad_norms(groups, max_norm=1.0)

    assert float(norms["model"]) == pytest.approx(0.5, rel=1e-5)
    assert float(norms["jepa_predictor"]) > 1e6
    for p, g0 in zip(model_params, before, strict=True):
        assert torch.equal(p.grad, g0)  # untouched by the predictor's huge norm
    assert total_norm(predictor_params) == pytest.approx(1.0, rel=1e-4)

    # The model's own part is clipped when it is over the limit.
    fill_grads(model_params, 4.0 / n_model**0.5)
    clip_grad_norms(groups, max_norm=1.0)
    assert total_norm(model_params) == pytest.approx(1.0, rel=1e-4)


def test_clip_disabled_reports_norms_and_changes_nothing():
    config = tiny_config(jepa_weight=0.1)
    groups = assign_groups(build_objective(config, CPU), group_rules(config))
    params = [p for g in groups for p in g.params]
    fill_grads(params, 3.0)
    norms = clip_grad_norms(groups, max_norm=0.0)
    assert set(norms) == {"model", "jepa_predictor"}
    assert all(torch.equal(p.grad, torch.full_like(p, 3.0)) for p in params)
    n_pred = sum(p.numel() for g in groups if g.name == "jepa_predictor" for p in g.params)
    assert float(norms["jepa_predictor"]) == pytest.approx(3.0 * n_pred**0.5, rel=1e-5)


def test_clip_without_jepa_has_only_the_model_part():
    config = tiny_config()
    groups = assign_groups(build_objective(config, CPU), group_rules(config))
    fill_grads([p for g in groups for p in g.params], 1.0)
    assert set(clip_grad_norms(groups, max_norm=1.0)) == {"model"}


# --- weight EMA -----------------------------------------------------------------------------


def test_weight_ema_arithmetic():
    gpt = build_objective(tiny_config(), CPU).gpt
    with torch.no_grad():
        for p in gpt.parameters():
            p.fill_(1.0)
    ema = WeightEMA(gpt, decay=0.9)
    with torch.no_grad():
        for p in gpt.parameters():
            p.fill_(3.0)
    ema.update(gpt)  # 1 + 0.1 * (3 - 1) = 1.2
    for shadow in ema.shadow.values():
        torch.testing.assert_close(shadow, torch.full_like(shadow, 1.2))
    ema.update(gpt)  # 1.2 + 0.1 * (3 - 1.2) = 1.38
    assert set(ema.shadow) == {n for n, _ in gpt.named_parameters()}
    for shadow in ema.shadow.values():
        assert shadow.dtype == torch.float32
        torch.testing.assert_close(shadow, torch.full_like(shadow, 1.38))

    ema.copy_to(gpt)
    for p in gpt.parameters():
        torch.testing.assert_close(p.detach(), torch.full_like(p, 1.38))
    # The shadow is a copy: training the model further does not move it.
    with torch.no_grad():
        for p in gpt.parameters():
            p.fill_(7.0)
    assert all(torch.allclose(s, torch.full_like(s, 1.38)) for s in ema.shadow.values())


# --- the leader stack's groups, Muon and its schedule ---------------------------------------


def leader_config(**overrides) -> TrainConfig:
    from jepardy.trainer.config import config_from_params
    from jepardy.trainer.presets import reduced

    return config_from_params(reduced("leader_stack") | {"vocab_size": 32} | overrides)


@pytest.mark.parametrize("jepa_weight", [0.0, 0.1])
def test_leader_stack_groups_cover_every_parameter_once(jepa_weight):
    config = leader_config(jepa_weight=jepa_weight)
    objective = build_objective(config, CPU)
    groups = assign_groups(objective, group_rules(config))
    named = dict(objective.named_parameters())
    assert sorted(n for g in groups for n in g.names) == sorted(named)
    by_name = {g.name: g for g in groups}
    assert sorted(by_name["embed"].names) == [
        "gpt.bigram.table.weight",
        "gpt.embed.weight",
        "gpt.value_embed.table.weight",
    ]
    # Muon gets exactly the blocks' linear weights; gates and small projections go to Adam.
    assert by_name["matrix"].optimizer == "muon"
    assert all(
        n.startswith("gpt.blocks.") and n.endswith(".weight") and named[n].ndim == 2
        for n in by_name["matrix"].names
    )
    assert len(by_name["matrix"].names) == 6 * config.n_layers
    scalars = set(by_name["scalar"].names)
    assert {"gpt.skip_weights", "gpt.blocks.0.resid_mix", "gpt.bigram.proj.weight"} <= scalars
    assert by_name["scalar"].optimizer == "adamw"
    assert (by_name["scalar"].lr, by_name["scalar"].weight_decay) == (0.025, 0.04)
    assert (by_name["embed"].lr, by_name["embed"].weight_decay) == (0.035, 0.04)
    assert (by_name["matrix"].lr, by_name["matrix"].weight_decay) == (0.025, 0.04)
    if jepa_weight:
        # The predictor stays on AdamW at jepa_lr whatever the model's optimizer.
        assert by_name["jepa_predictor"].optimizer == "adamw"
        assert by_name["jepa_predictor"].lr == config.jepa_lr

    optimizer = build_optimizer(groups, config)
    kinds = [type(o).__name__ for o in optimizer.optimizers]
    assert kinds == ["AdamW", "Muon"]
    in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
    assert sorted(map(id, in_optimizer)) == sorted(map(id, named.values()))
    lines = group_table(groups)
    assert any(line.startswith("optimizer_group:matrix optimizer:muon ") for line in lines)


def test_scalar_lr_zero_follows_lr():
    config = tiny_config(lr=0.01)
    groups = {g.name: g for g in assign_groups(build_objective(config, CPU), group_rules(config))}
    assert groups["scalar"].lr == 0.01


def test_muon_momentum_warmup():
    c = tiny_config(
        muon_momentum=0.99, muon_momentum_warmup_start=0.92, muon_momentum_warmup_steps=100
    )
    assert muon_momentum(0, c) == pytest.approx(0.92)
    assert muon_momentum(50, c) == pytest.approx(0.955)
    assert muon_momentum(100, c) == pytest.approx(0.99)
    assert muon_momentum(5000, c) == pytest.approx(0.99)
    assert muon_momentum(0, tiny_config(muon_momentum_warmup_steps=0)) == 0.95


def test_schedules_reach_every_optimizer():
    config = leader_config()
    groups = assign_groups(build_objective(config, CPU), group_rules(config))
    optimizer = build_optimizer(groups, config)
    set_lr(optimizer, 0.5)
    set_muon_momentum(optimizer, 0.9)
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.5 * group["base_lr"])
        if group["optimizer"] == "muon":
            assert group["momentum"] == 0.9
    # A training step moves every group (Muon's included).
    objective = build_objective(config, CPU)
    groups = assign_groups(objective, group_rules(config))
    optimizer = build_optimizer(groups, config)
    before = [p.detach().clone() for p in objective.parameters()]
    for p in objective.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, objective.parameters(), strict=True))
