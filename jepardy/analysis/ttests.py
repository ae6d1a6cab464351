"""Student's t: Welch's and the paired t-test, row by row over padded matrices, and t
intervals and quantiles.

The statistics are the textbook ones that `scipy.stats.ttest_ind(equal_var=False)` and
`ttest_rel` compute (Welch 1947: t = (mean_a - mean_c) / sqrt(var_a/n_a + var_c/n_c) with
Welch-Satterthwaite degrees of freedom; paired: the one-sample t of the differences), and
their tails and quantiles are scipy's Student t itself, `scipy.special.stdtr` and `stdtrit`,
the functions `scipy.stats.t` evaluates. Only `scipy.stats`' import is left out: it costs a
second of a 2-core machine's time on every `jepardy report` (bench/cli_latency.py), while
`scipy.special` costs a fifth of it. tests/test_ttests.py checks every figure against
`scipy.stats` on random and degenerate samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special


@dataclass(frozen=True)
class TTest:
    """Per row: the t statistic, its degrees of freedom, and the standard error of the
    difference it divides by (NaN where a side has fewer than 2 values)."""

    t: np.ndarray
    df: np.ndarray
    se: np.ndarray
    diff: np.ndarray  # mean(a) - mean(c), or the mean paired difference

    def p_less(self) -> np.ndarray:
        """One-sided p of H1: the true difference is below 0."""
        return _cdf(self.df, self.t)

    def p_greater(self) -> np.ndarray:
        """One-sided p of H1: the true difference is above 0 (not 1 - p_less, which loses
        every digit of a p-value near 1)."""
        return _cdf(self.df, -self.t)

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The two-sided `level` interval of the difference."""
        half = t_quantile((1 + level) / 2, self.df) * self.se
        return self.diff - half, self.diff + half


def welch(a: np.ndarray, c: np.ndarray, shift: np.ndarray | float = 0.0) -> TTest:
    """Welch's test of each row of `a` (k, n_a) against the same row of `c` (k, n_c), with
    `shift` (per row) added to `a` first: the margin test."""
    a = np.asarray(a, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    n_a, n_c = a.shape[-1], c.shape[-1]
    with np.errstate(all="ignore"):
        share_a = a.var(axis=-1, ddof=1) / n_a
        share_c = c.var(axis=-1, ddof=1) / n_c
        se = np.sqrt(share_a + share_c)
        diff = a.mean(axis=-1) + shift - c.mean(axis=-1)
        df = (share_a + share_c) ** 2 / (share_a**2 / (n_a - 1) + share_c**2 / (n_c - 1))
        # Both sides constant: df is 0/0, which scipy takes as 1 (so constant sides that
        # differ give p 0 or 1, and their interval is the difference itself).
        df = np.where(np.isnan(df), 1.0, df)
        t = diff / se
    return TTest(t, df, se, diff)


def paired(a: np.ndarray, c: np.ndarray) -> TTest:
    """The paired test of each row of `a` against the same row of `c` (same shape, the
    columns in the same seeds' order): the one-sample t of the differences."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(c, dtype=np.float64)
    n = np.full(d.shape[:-1], float(d.shape[-1]))
    with np.errstate(all="ignore"):
        return one_sample(d.mean(axis=-1), d.var(axis=-1, ddof=1), n)


def one_sample(mean: np.ndarray, var: np.ndarray, n: np.ndarray) -> TTest:
    """The one-sample t of differences summarised per row: their mean, variance (ddof 1)
    and count (NaN where the variance is, as for a single difference)."""
    mean, n = np.asarray(mean, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(all="ignore"):
        # sqrt(var / n), as scipy's ttest_rel: its figures to the last bit, mostly.
        se = np.sqrt(np.asarray(var, dtype=np.float64) / n)
        t = mean / se
    return TTest(t, n - 1.0, se, mean)


def t_quantile(q: float | np.ndarray, df: float | np.ndarray) -> np.ndarray:
    """The Student t quantile (scipy.stats.t.ppf); NaN where df is not positive."""
    with np.errstate(all="ignore"):
        df = np.asarray(df, dtype=np.float64)
        return np.where(df > 0, special.stdtrit(np.where(df > 0, df, 1.0), q), np.nan)


def t_interval(
    level: float, df: np.ndarray, loc: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The two-sided `level` Student t interval around `loc` (scipy.stats.t.interval)."""
    half = t_quantile((1 + level) / 2, df) * np.asarray(scale, dtype=np.float64)
    return loc - half, loc + half


def _cdf(df: np.ndarray, t: np.ndarray) -> np.ndarray:
    """P(T <= t) for Student's T with `df` degrees of freedom; NaN where df is undefined."""
    with np.errstate(all="ignore"):
        ok = df > 0
        return np.where(ok, special.stdtr(np.where(ok, df, 1.0), t), np.nan)
