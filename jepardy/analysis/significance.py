"""Significance tests of arms against their matched control (design/orchestrator.md,
"Statistics"), vectorised over many arm/control pairs.

Welch's t-test (`scipy.stats.ttest_ind(equal_var=False)`'s figures, from
jepardy.analysis.ttests) is the primary one; the paired test on per-seed differences
(`scipy.stats.ttest_rel`'s) sits beside it when arm and control ran the same seeds; the
challenge's margin is Welch on the arm shifted by the margin. Pairs are bucketed by their
sample sizes so each bucket is one vectorised call (a 100,000-run store has tens of
thousands of pairs).

The only hand-written procedure is Holm's step-down adjustment: scipy has none
(`scipy.stats.false_discovery_control` is Benjamini-Hochberg, which controls the false
discovery rate, not the family-wise error a "p < 0.01" claim needs), and statsmodels is not
a dependency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from jepardy.analysis import ttests

# The level, margin and sides verdicts are decided by are settings (analysis/rules.py).
CI_LEVEL = 0.95


@dataclass(frozen=True)
class Samples:
    """Values of many groups in one padded matrix: row g holds group g's values in its first
    n[g] columns (seed order), NaN after."""

    values: np.ndarray  # (groups, max n) float64
    n: np.ndarray  # (groups,) int64


def pack(groups: pd.Series, values: pd.Series, n_groups: int) -> Samples:
    """Pack `values` into a Samples matrix by integer group id `groups` (0..n_groups-1),
    keeping their order within each group (sort by seed first for paired tests)."""
    gid = groups.to_numpy(dtype=np.int64)
    pos = groups.groupby(groups).cumcount().to_numpy(dtype=np.int64)
    n = np.bincount(gid, minlength=n_groups).astype(np.int64)
    matrix = np.full((n_groups, int(n.max(initial=0))), np.nan)
    matrix[gid, pos] = values.to_numpy(dtype=np.float64)
    return Samples(matrix, n)


@dataclass(frozen=True)
class PairTests:
    """Per pair (arm i vs control j): Welch t, df, one-sided p (H1: arm mean < control mean)
    and p_worse (the other side, H1: arm mean > control mean), the two-sided CI_LEVEL
    interval of arm - control, the margin test's p, and the paired t, one-sided p and its
    other side (NaN where seeds differ or n < 2)."""

    t_welch: np.ndarray
    df_welch: np.ndarray
    p_welch: np.ndarray
    p_worse: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_margin: np.ndarray
    t_paired: np.ndarray
    p_paired: np.ndarray
    p_paired_worse: np.ndarray


def compare_pairs(
    samples: Samples,
    arm: np.ndarray,
    control: np.ndarray,
    paired: np.ndarray,
    margin: np.ndarray,
) -> PairTests:
    """Test each arm group `arm[k]` against control group `control[k]` (row ids of `samples`).

    `paired[k]`: both groups ran the same seeds, in the same order, so the paired test applies.
    `margin[k]`: the improvement H0 allows, in the metric's units (NaN: no margin test); the
    margin test is Welch on arm + margin against control, one-sided, so a small p says the
    arm beats the control by more than the margin. Pairs with n < 2 on either side get NaN.
    """
    k = len(arm)
    out = {name: np.full(k, np.nan) for name in PairTests.__dataclass_fields__}
    n_arm, n_ctl = samples.n[arm], samples.n[control]
    testable = (n_arm >= 2) & (n_ctl >= 2)
    buckets = pd.DataFrame({"a": n_arm, "c": n_ctl})[testable].groupby(["a", "c"]).indices
    for (na, nc), where in buckets.items():
        idx = np.flatnonzero(testable)[where]
        a = samples.values[arm[idx], :na]
        c = samples.values[control[idx], :nc]
        _welch_bucket(out, idx, a, c, margin[idx])
        same = idx[paired[idx]]
        if len(same):
            _paired_bucket(
                out, same, samples.values[arm[same], :na], samples.values[control[same], :nc]
            )
    return PairTests(**out)


def _welch_bucket(
    out: dict[str, np.ndarray], idx: np.ndarray, a: np.ndarray, c: np.ndarray, margin: np.ndarray
) -> None:
    welch = ttests.welch(a, c)
    low, high = welch.interval(CI_LEVEL)
    out["t_welch"][idx] = welch.t
    out["df_welch"][idx] = welch.df
    out["p_welch"][idx] = welch.p_less()
    # The other direction, so that a significant loss is named as one.
    out["p_worse"][idx] = welch.p_greater()
    out["ci_low"][idx] = low
    out["ci_high"][idx] = high
    shifted = ttests.welch(a, c, shift=np.nan_to_num(margin)).p_less()
    out["p_margin"][idx] = np.where(np.isnan(margin), np.nan, shifted)


def _paired_bucket(
    out: dict[str, np.ndarray], idx: np.ndarray, a: np.ndarray, c: np.ndarray
) -> None:
    result = ttests.paired(a, c)
    out["t_paired"][idx] = result.t
    out["p_paired"][idx] = result.p_less()
    out["p_paired_worse"][idx] = result.p_greater()


def holm(p: pd.Series, family: pd.Series) -> pd.Series:
    """Holm's step-down adjusted p-values within each family (NaN p-values are left out).

    Holm (1979): sort a family's m p-values ascending, p_(1) <= ... <= p_(m); the adjusted
    value of p_(i) is max_{j <= i} min(1, (m - j + 1) * p_(j)). Rejecting where the adjusted
    p < alpha controls the family-wise error rate at alpha for any dependence between tests.
    """
    valid = p.notna()
    frame = pd.DataFrame({"p": p[valid], "family": family[valid]})
    frame = frame.sort_values(["family", "p"], kind="stable")
    rank = frame.groupby("family", sort=False).cumcount()  # j - 1
    m = frame.groupby("family", sort=False)["p"].transform("size")
    scaled = ((m - rank) * frame["p"]).clip(upper=1.0)
    frame["adjusted"] = scaled.groupby(frame["family"], sort=False).cummax()
    return frame["adjusted"].reindex(p.index)
