"""Per-group summaries of tidy runs (`jepardy.store.frames`): the pandas API of the reports.

    from jepardy.store.frames import load_runs
    from jepardy.analysis.summary import summarize
    runs = load_runs("results.db")                    # one row per done run, params as columns
    summarize(runs, by=["lane", "arm", "jepa_weight"])  # n, mean, std, sem, 95% t-interval

Every report (`jepardy report`) is computed from `tidy_runs` output, so the numbers a pandas
user gets from `summarize` are the ones the tables print.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from jepardy.analysis.ttests import t_interval
from jepardy.collector import paused_gc
from jepardy.errors import UserError
from jepardy.store.frames import ARM_KEYS, is_param_column
from jepardy.trainer.config import ARTIFACT_CAP_BYTES

CONTROL_ARM = "control"
EXPORT_KIND = "export"  # a re-export of a run's final weights (`jepardy export`)

SUMMARY_COLUMNS = [
    "n",
    "mean",
    "std",
    "sem",
    "ci_low",
    "ci_high",
    "seeds",
    "values",
    "artifact_bytes",
    "over_cap_runs",
]


def is_control(runs: pd.DataFrame) -> pd.Series:
    """Which runs are their lane's control. A re-export of a control run is not one: it is
    another artifact of a training already counted, so as a control it would pair with each
    arm as an extra seed; it is reported as a variant of its own instead."""
    # Compared as they are: a categorical compares its codes, not 100,000 strings.
    control = runs["arm"] == CONTROL_ARM
    if "kind" in runs.columns:
        control &= runs["kind"] != EXPORT_KIND
    return control


def require_metric(runs: pd.DataFrame, metric: str) -> None:
    """UserError unless `metric` is a column of `runs`."""
    if metric not in runs.columns:
        raise UserError(f"no column {metric!r} in the runs; a metric is a result column")


def too_few_values(option: str, values: pd.Series, sweeps: pd.Series, needs: str) -> UserError:
    """The one-line error of a curve or horizon request with no series of two or more axis
    values: which values the done runs have and in which sweeps, and what is needed.
    `values` and `sweeps` are aligned (NaN where a run has no value): the sweeps named are
    those of the values, or, with none, every one searched."""
    found = sorted(pd.unique(values.dropna()))
    where_found = sweeps[values.notna().to_numpy()] if found else sweeps
    names = ", ".join(sorted({str(name) for name in where_found.unique()}))
    where = f"sweep {names}" if names else "the store"
    shown = ", ".join(f"{value:g}" for value in found[:10])
    if not found:
        return UserError(f"{option}: no done run in {where} has a value of it")
    if len(found) == 1:
        return UserError(f"{option}: one value ({shown}) in {where}; {needs}")
    return UserError(
        f"{option}: no arm ran two or more of its values ({shown}) in {where}; {needs}"
    )


def axis_values(runs: pd.DataFrame, axis: str) -> pd.Series:
    """The numeric values of param `axis` for every run (NaN where a run lacks it).

    UserError when no run has the param, or when a value is not a number.
    """
    if axis not in runs.columns:
        known = numeric_params(runs)
        raise UserError(
            f"no run has param {axis!r}; numeric params found: {', '.join(known) or 'none'}"
        )
    raw = runs[axis]
    if raw.dtype == bool or pd.api.types.is_bool_dtype(raw):
        raw = raw.astype("float64")
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = raw.notna() & values.isna()
    if bad.any():
        sample = ", ".join(repr(v) for v in raw[bad].unique()[:3])
        raise UserError(f"param {axis!r} is not numeric ({sample}); an axis must be a number")
    return values


def numeric_params(runs: pd.DataFrame) -> list[str]:
    """The params of `runs` (columns, sorted) whose every value is a number or true/false:
    those a curve or horizons may take as an axis. A result field read beside them
    (`result.<field>`) is not a param."""
    names = [n for n in runs.columns if is_param_column(n) and not n.startswith("result.")]
    return sorted(name for name in names if _is_number_column(runs[name]))


def _is_number_column(values: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return bool(values.notna().any())
    present = values.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    return bool(len(present)) and bool(numbers.notna().all())


def summarize(
    runs: pd.DataFrame,
    by: str | Sequence[str] = tuple(ARM_KEYS),
    metric: str = "val_bpb",
    level: float = 0.95,
) -> pd.DataFrame:
    """Per group of `by`: n, mean, std, sem, the t-based `level` interval, every seed's value.

    Only runs with a finite `metric` count. Columns: `by`, then SUMMARY_COLUMNS: n, mean,
    std (ddof=1; NaN when n == 1), sem (std / sqrt(n)), ci_low / ci_high (mean -+
    t_{(1+level)/2, n-1} * sem; NaN when n == 1), seeds and values (lists, by seed),
    artifact_bytes (largest in the group) and over_cap_runs (runs over ARTIFACT_CAP_BYTES).
    Groups are in order of first appearance.
    """
    keys = [by] if isinstance(by, str) else list(by)
    require_metric(runs, metric)
    rows = runs[runs[metric].notna()]
    # One factorisation of the keys; every aggregate below groups the integer codes, which
    # is what keeps a 100,000-run report fast (grouping string columns repeatedly is not).
    codes = group_codes(rows, keys)
    order = np.lexsort((rows["seed"].to_numpy(), codes))  # by group, then seed
    coded = pd.DataFrame(
        {
            "_g": codes,
            "value": rows[metric].to_numpy(dtype=np.float64),
            "size": _numeric(rows, "artifact_bytes"),
        }
    )
    coded["over"] = coded["size"] > ARTIFACT_CAP_BYTES
    grouped = coded.groupby("_g", sort=True)
    table = grouped.agg(
        n=("value", "count"),
        mean=("value", "mean"),
        std=("value", "std"),
        artifact_bytes=("size", "max"),
        over_cap_runs=("over", "sum"),
    )
    first = rows.iloc[np.unique(codes, return_index=True)[1]]
    table.index = pd.RangeIndex(len(table))
    for key in reversed(keys):
        table.insert(0, key, first[key].to_numpy())
    table["seeds"] = split_lists(rows["seed"].to_numpy()[order], codes[order])
    table["values"] = split_lists(coded["value"].to_numpy()[order], codes[order])
    table = add_t_interval(table, level)
    table["artifact_bytes"] = table["artifact_bytes"].round().astype("Int64")
    table["over_cap_runs"] = table["over_cap_runs"].astype("int64")
    return table[[*keys, *SUMMARY_COLUMNS]]


def group_codes(rows: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """Integer group ids of `rows` by `keys`, numbered in order of first appearance."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    combined = _combined_codes(rows, keys)
    if combined is not None:
        return pd.factorize(combined)[0].astype(np.int64)  # numbered as first seen
    return (
        rows.groupby(list(keys), sort=False, dropna=False, observed=True)
        .ngroup()
        .to_numpy(dtype=np.int64)
    )


def _combined_codes(rows: pd.DataFrame, keys: Sequence[str]) -> np.ndarray | None:
    """One int64 per row that is equal exactly where all `keys` are, when every key is an
    integer, boolean or categorical column (a report's keys are): factorising one integer
    column is several times faster than grouping several. None otherwise."""
    combined = np.zeros(len(rows), dtype=np.int64)
    for key in keys:
        column = rows[key]
        if isinstance(column.dtype, pd.CategoricalDtype):
            values = column.cat.codes.to_numpy(dtype=np.int64)  # -1: missing, its own group
        elif isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":
            values = column.to_numpy(dtype=np.int64)
        else:
            return None
        low = int(values.min())
        width = int(values.max()) - low + 1
        if int(combined.max()) >= (2**62) // width:
            return None  # the mixed-radix number would overflow
        combined = combined * width + (values - low)
    return combined


def split_lists(values: np.ndarray, sorted_codes: np.ndarray) -> list[list[Any]]:
    """`values` (ordered by their group codes `sorted_codes`, 0..G-1) as one list per group."""
    if not len(values):
        return []
    # Slicing one Python list is several times faster than np.split into G arrays.
    flat = values.tolist()
    bounds = [0, *(np.flatnonzero(np.diff(sorted_codes)) + 1).tolist(), len(flat)]
    with paused_gc():
        return [flat[start:end] for start, end in itertools.pairwise(bounds)]


def map_unique(column: pd.Series, function: Callable[[Any], Any]) -> pd.Series:
    """`function` of every value of `column`, called once per distinct value (a sweep's
    100,000 runs have a few hundred distinct matches and variants)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    mapped = np.empty(len(uniques), dtype=object)
    mapped[:] = [function(value) for value in uniques]
    return pd.Series(mapped[codes], index=column.index).infer_objects()


def _numeric(rows: pd.DataFrame, name: str) -> np.ndarray:
    """Column `name` as float64 (NaN where missing or absent)."""
    if name not in rows.columns:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def add_t_interval(table: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Add sem, ci_low, ci_high to a frame with n, mean, std columns (see `summarize`)."""
    n = table["n"].to_numpy(dtype=np.float64)
    sem = table["std"].to_numpy(dtype=np.float64) / np.sqrt(n)
    # The Student t interval with n - 1 degrees of freedom; NaN for n < 2 (no interval).
    low, high = t_interval(level, n - 1, table["mean"].to_numpy(dtype=np.float64), sem)
    return table.assign(sem=sem, ci_low=low, ci_high=high)


def kendall_tau(x: pd.Series, y: pd.Series) -> tuple[float, float]:
    """Kendall's tau of two rankings and its p-value (`scipy.stats.kendalltau`); NaNs when
    one is constant."""
    # Imported here: scipy.stats costs a report without horizons or promotions a second.
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant input: NaN
        result = stats.kendalltau(x, y)
    return float(result.statistic), float(result.pvalue)


def split_pairs(text: str) -> dict[str, str]:
    """`"k=v,k2=v2"` (a RunIdentity's match or variant) as a dict; "" gives {}."""
    pairs = (part.partition("=") for part in text.split(",") if part)
    return {key: value for key, _, value in pairs}


def drop_key(text: str, key: str) -> str:
    """A match or variant string without `key`'s `k=v` pair, order kept."""
    return ",".join(part for part in text.split(",") if part and part.partition("=")[0] != key)
