"""Power of the report's test before a sweep runs: the smallest difference n seeds per arm
can detect, and the seeds a difference needs (`jepardy plan`).

The test is the one the compare table decides by (analysis/significance.py): Welch's t-test
of an arm's n seeds against its control's n seeds, one-sided (H1: the arm is lower) or
two-sided as the rule says, at the rule's level divided by the arms that share a control
(the strictest step of Holm's adjustment, which the verdicts use).

Welch's power has no closed form, but with equal n and equal seed sd it is exact through
scipy's distributions: with equal n, Welch's statistic equals Student's, which follows the
noncentral t with 2n - 2 degrees of freedom and noncentrality d / (sd * sqrt(2 / n))
(`scipy.stats.nct`); Welch's degrees of freedom, (n - 1) / (r^2 + (1 - r)^2), depend only on
the share r = s1^2 / (s1^2 + s2^2) of the two sample variances, which is
Beta((n - 1) / 2, (n - 1) / 2) and independent of the statistic (a ratio of independent
chi-squares is independent of their sum). Power is then the Beta expectation of the
noncentral t's tail beyond Welch's critical value (scipy's Beta quantiles and
`scipy.integrate.fixed_quad`). The Student
approximation (df = 2n - 2 always) overstates Welch's power: at 3 seeds and p < 0.01 it
gives a detectable difference 19% too small (tests/test_power.py checks both against a
direct simulation of 20,000 seed draws).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize, stats

from jepardy.analysis.rules import Rule

DEFAULT_POWER = 0.8
MAX_SEEDS = 1000  # `seeds_needed` looks no further
QUADRATURE_NODES = 64


def welch_power(difference: float, seed_sd: float, n: int, alpha: float, sided: str) -> float:
    """The probability that Welch's test of n seeds against n seeds calls a true
    improvement `difference` (> 0, in the metric's units) significant at `alpha`, with
    seed standard deviation `seed_sd` in both groups."""
    df = 2 * n - 2
    noncentrality = difference / (seed_sd * math.sqrt(2.0 / n))
    tail = alpha / 2 if sided == "two" else alpha
    half = (n - 1) / 2

    def at_quantile(q: np.ndarray) -> np.ndarray:
        share = stats.beta.ppf(q, half, half)
        welch_df = (n - 1) / (share**2 + (1 - share) ** 2)
        # Two-sided: only the improvement's tail counts (a "significant" result the other
        # way detects no improvement).
        return stats.nct.sf(stats.t.ppf(1 - tail, welch_df), df, noncentrality)

    # The expectation over the share, taken over its quantiles: smooth there even where
    # the Beta density is not (n = 2), so a fixed Gauss-Legendre rule agrees with
    # `stats.beta(half, half).expect` to 1e-6 in a millisecond.
    return float(integrate.fixed_quad(at_quantile, 0.0, 1.0, n=QUADRATURE_NODES)[0])


def detectable_difference(
    seed_sd: float, n: int, rule: Rule, family: int = 1, power: float = DEFAULT_POWER
) -> float:
    """The smallest true improvement that n seeds per arm detect with probability `power`
    under `rule` (its alpha split over `family` arms sharing a control), in the units of
    `seed_sd`. NaN for n < 2 (no test)."""
    if n < 2 or not seed_sd > 0:
        return math.nan
    alpha = rule.alpha / family

    def short(difference: float) -> float:
        return welch_power(difference, seed_sd, n, alpha, rule.sided) - power

    high = seed_sd
    while short(high) < 0:
        high *= 2
    return float(optimize.brentq(short, 0.0, high, xtol=seed_sd * 1e-6))


def seeds_needed(
    difference: float, seed_sd: float, rule: Rule, family: int = 1, power: float = DEFAULT_POWER
) -> int | None:
    """The fewest seeds per arm that detect a true improvement `difference` with
    probability `power` under `rule` (alpha split over `family`); None past MAX_SEEDS."""
    alpha = rule.alpha / family
    low, high = 2, 2
    while welch_power(difference, seed_sd, high, alpha, rule.sided) < power:
        if high >= MAX_SEEDS:
            return None
        low, high = high, min(2 * high, MAX_SEEDS)
    # Power grows with n: bisect between the last n too few and the first enough.
    while high - low > 1:
        middle = (low + high) // 2
        if welch_power(difference, seed_sd, middle, alpha, rule.sided) < power:
            low = middle
        else:
            high = middle
    return high
