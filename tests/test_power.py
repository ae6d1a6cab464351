"""The power figures `jepardy plan` prints, against a direct simulation: 20,000 draws of an
arm's and a control's seeds, each tested by scipy's Welch test as the compare table does."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats

from jepardy.analysis.power import detectable_difference, seeds_needed, welch_power
from jepardy.analysis.rules import LEADERBOARD, RECORD, make_rule

DRAWS = 20_000
SEED_SD = 0.0012  # bpb, about a leader-stack run's seed noise


def _simulated_power(difference: float, n: int, alpha: float, sided: str) -> float:
    """Share of DRAWS simulated sweeps (n seeds per arm, fixed rng) whose Welch test calls
    the arm significantly lower; the same draws for every difference, so the share is
    monotone in it."""
    rng = np.random.default_rng(20260417)
    control = rng.normal(1.10, SEED_SD, size=(DRAWS, n))
    arm = rng.normal(1.10, SEED_SD, size=(DRAWS, n)) - difference
    if sided == "two":
        p = stats.ttest_ind(arm, control, axis=1, equal_var=False).pvalue
        return float(np.mean((p < alpha) & (arm.mean(axis=1) < control.mean(axis=1))))
    p = stats.ttest_ind(arm, control, axis=1, equal_var=False, alternative="less").pvalue
    return float(np.mean(p < alpha))


def _simulated_detectable(n: int, alpha: float, sided: str, power: float = 0.8) -> float:
    return optimize.brentq(
        lambda d: _simulated_power(d, n, alpha, sided) - power, 0.0, 20 * SEED_SD, xtol=1e-7
    )


@pytest.mark.parametrize(
    ("rule", "family"),
    [(RECORD, 1), (LEADERBOARD, 1), (make_rule(alpha=0.05, sided="two"), 1), (RECORD, 3)],
    ids=["record", "leaderboard", "two-sided-0.05", "record-holm-3-arms"],
)
def test_detectable_difference_at_3_seeds_matches_simulation(rule, family: int) -> None:
    computed = detectable_difference(SEED_SD, 3, rule, family=family)
    simulated = _simulated_detectable(3, rule.alpha / family, rule.sided)
    assert computed == pytest.approx(simulated, rel=0.05)


def test_student_approximation_would_fail_the_same_check() -> None:
    """Why Welch's own degrees of freedom matter: df = 2n - 2 overstates the power."""
    student = optimize.brentq(
        lambda d: stats.nct.sf(stats.t.ppf(0.99, 4), 4, d / (SEED_SD * np.sqrt(2 / 3))) - 0.8,
        0.0,
        20 * SEED_SD,
    )
    assert student < 0.9 * _simulated_detectable(3, 0.01, "one")


def test_power_and_seeds_needed_agree() -> None:
    d = detectable_difference(SEED_SD, 5, RECORD)
    assert welch_power(d, SEED_SD, 5, RECORD.alpha, "one") == pytest.approx(0.8, abs=1e-4)
    n = seeds_needed(0.002, SEED_SD, RECORD)
    assert welch_power(0.002, SEED_SD, n, 0.01, "one") >= 0.8
    assert welch_power(0.002, SEED_SD, n - 1, 0.01, "one") < 0.8
    assert _simulated_power(0.002, n, 0.01, "one") == pytest.approx(
        welch_power(0.002, SEED_SD, n, 0.01, "one"), abs=0.015
    )
    assert seeds_needed(1e-7, SEED_SD, RECORD) is None  # past MAX_SEEDS
    assert np.isnan(detectable_difference(SEED_SD, 1, RECORD))


@pytest.mark.parametrize("n", [2, 3, 10])
def test_quadrature_agrees_with_scipy_beta_expect(n: int) -> None:
    half, nc = (n - 1) / 2, 0.002 / (SEED_SD * np.sqrt(2 / n))

    def given_share(share: float) -> float:
        welch_df = (n - 1) / (share**2 + (1 - share) ** 2)
        return stats.nct.sf(stats.t.ppf(0.99, welch_df), 2 * n - 2, nc)

    expected = stats.beta(half, half).expect(given_share)
    assert welch_power(0.002, SEED_SD, n, 0.01, "one") == pytest.approx(expected, abs=1e-5)
