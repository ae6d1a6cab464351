"""Health flags and the figures behind them: module drift, clip coefficients, collapse."""

from __future__ import annotations

import math

import torch

from jepardy.analysis.flags import run_flags
from jepardy.trainer.config import config_from_params
from jepardy.trainer.health import GradHealth, clip_coefficient, module_drift, module_group
from jepardy.trainer.optim import assign_groups, group_rules
from jepardy.trainer.train import build_objective


def test_healthy_result_has_no_flags() -> None:
    result = {
        "module_drift": {"embeddings": 0.8, "attention": 0.5, "jepa_predictor": 0.2},
        "jepa_pred_std": 0.9,
        "jepa_std_target": 0.5,
        "grad_health": {"clip_coef_max": 1.0, "nonfinite_grad_norm_steps": 0},
    }
    assert run_flags(result) == []


def test_the_studys_defects_are_flagged() -> None:
    # An untrained predictor, a collapsed prediction, and clipping that silenced every step.
    result = {
        "module_drift": {"embeddings": 0.8, "jepa_predictor": 0.0},
        "jepa_pred_std": 0.01,
        "jepa_std_target": 0.5,
        "grad_health": {"clip_coef_max": 3e-9, "nonfinite_grad_norm_steps": 2},
    }
    assert run_flags(result) == [
        "frozen: jepa_predictor moved 0",
        "collapse: jepa_pred_std 0.01 < target 0.5",
        "gradients silenced: clip coefficient <= 3e-09",
        "non-finite grad norm at 2 logged steps",
    ]


def test_clip_coefficient() -> None:
    assert clip_coefficient(0.5, 1.0) == 1.0
    assert math.isclose(clip_coefficient(1e9, 1.0), 1e-9, rel_tol=1e-6)
    assert clip_coefficient(float("nan"), 1.0) == 0.0
    assert clip_coefficient(5.0, 0.0) == 1.0  # clipping off
    health = GradHealth()
    health.observe(2.0, 1.0)
    health.observe(float("inf"), 1.0)
    assert health.summary()["nonfinite_grad_norm_steps"] == 1
    assert math.isclose(health.summary()["clip_coef_max"], 0.5, rel_tol=1e-5)


def test_every_parameter_has_a_module_group_and_drift_sees_each() -> None:
    config = config_from_params({"jepa_weight": 0.1, "d_model": 32, "n_layers": 2})
    objective = build_objective(config, torch.device("cpu"))
    groups = assign_groups(objective, group_rules(config))
    seen = {module_group(n, p) for n, p in objective.named_parameters()}
    assert seen == {"embeddings", "attention", "mlp", "jepa_predictor", "scalars"}
    initial = {g.name: [p.detach().float().clone() for p in g.params] for g in groups}
    with torch.no_grad():
        objective.predictor.fc.weight.mul_(2.0)  # only the predictor moves
    drift = module_drift(groups, initial)
    assert drift["jepa_predictor"] > 0.1
    assert drift["attention"] == drift["mlp"] == drift["embeddings"] == 0.0
