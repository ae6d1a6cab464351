"""jepardy's t-tests give scipy.stats' figures: random samples of every size the reports
meet, and the degenerate ones (equal values, constant sides, a single value)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from jepardy.analysis import ttests

SIZES = [(2, 2), (2, 5), (3, 3), (4, 7), (10, 3), (30, 30)]


def _samples(n_a: int, n_c: int, rows: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n_a * 100 + n_c)
    scale_a = rng.uniform(1e-4, 2.0, (rows, 1))
    scale_c = rng.uniform(1e-4, 2.0, (rows, 1))
    a = rng.normal(rng.normal(0, 1, (rows, 1)), scale_a, (rows, n_a))
    c = rng.normal(rng.normal(0, 1, (rows, 1)), scale_c, (rows, n_c))
    return a, c


def _degenerate(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows scipy treats specially: both sides constant and equal, both constant and
    different, one side constant."""
    a = np.array([[1.0] * n, [1.0] * n, [1.0] * n, [0.5 + 0.1 * i for i in range(n)]])
    c = np.array([[1.0] * n, [2.0] * n, [0.5 + 0.1 * i for i in range(n)], [3.0] * n])
    return a, c


def _scipy(call, *args, **kwargs):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return call(*args, **kwargs)


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-300, equal_nan=True)


def _welch_matches(a: np.ndarray, c: np.ndarray) -> None:
    """t, df, both one-sided p and the 95% interval of Welch's test are scipy's."""
    ours = ttests.welch(a, c)
    for alternative, p in (("less", ours.p_less()), ("greater", ours.p_greater())):
        theirs = _scipy(stats.ttest_ind, a, c, axis=1, equal_var=False, alternative=alternative)
        _close(ours.t, theirs.statistic)
        _close(ours.df, theirs.df)
        _close(p, theirs.pvalue)
    two_sided = _scipy(stats.ttest_ind, a, c, axis=1, equal_var=False)
    interval = _scipy(two_sided.confidence_interval, 0.95)
    for ours_end, theirs_end in zip(ours.interval(0.95), interval, strict=True):
        _close(ours_end, theirs_end)


@pytest.mark.parametrize(("n_a", "n_c"), SIZES)
def test_welch_is_scipys(n_a: int, n_c: int) -> None:
    _welch_matches(*_samples(n_a, n_c))


@pytest.mark.parametrize(("n_a", "n_c"), SIZES)
def test_the_margin_test_is_welch_on_the_shifted_arm(n_a: int, n_c: int) -> None:
    a, c = _samples(n_a, n_c)
    margin = np.linspace(0.0, 0.5, len(a))
    ours = ttests.welch(a, c, shift=margin).p_less()
    theirs = _scipy(
        stats.ttest_ind, a + margin[:, None], c, axis=1, equal_var=False, alternative="less"
    )
    _close(ours, theirs.pvalue)


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_paired_is_scipys(n: int) -> None:
    a, c = _samples(n, n)
    ours = ttests.paired(a, c)
    theirs = _scipy(stats.ttest_rel, a, c, axis=1, alternative="less")
    _close(ours.t, theirs.statistic)
    _close(ours.p_less(), theirs.pvalue)


@pytest.mark.parametrize("n", [2, 4])
def test_degenerate_samples_match_scipy(n: int) -> None:
    a, c = _degenerate(n)
    _welch_matches(a, c)
    paired = _scipy(stats.ttest_rel, a, c, axis=1, alternative="less")
    _close(ttests.paired(a, c).p_less(), paired.pvalue)


def test_intervals_and_quantiles_are_scipys() -> None:
    df = np.array([1.0, 2.0, 3.5, 9.0, 29.0, 1e6, 0.0, np.nan])
    for q in (0.5, 0.9, 0.975, 0.995):
        _close(ttests.t_quantile(q, df), _scipy(stats.t.ppf, q, df))
    loc = np.linspace(-1, 1, len(df))
    scale = np.linspace(0.1, 2, len(df))
    ours = ttests.t_interval(0.95, df, loc, scale)
    theirs = _scipy(stats.t.interval, 0.95, df, loc=loc, scale=scale)
    for ours_end, theirs_end in zip(ours, theirs, strict=True):
        _close(ours_end, theirs_end)
