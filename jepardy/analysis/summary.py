"""Runs as a tidy pandas DataFrame, and per-group summaries: the pandas API of the reports.

    from jepardy.analysis.summary import load_runs, summarize
    runs = load_runs("results.db")                    # one row per done run, params as columns
    summarize(runs, by=["lane", "arm", "jepa_weight"])  # n, mean, std, sem, 95% t-interval

Every report (`jepardy report`) is computed from `tidy_runs` output, so the numbers a pandas
user gets from `summarize` are the ones the tables print.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats

from jepardy.errors import UserError
from jepardy.store.core import Run, RunStatus, Store, open_store
from jepardy.trainer.config import ARTIFACT_CAP_BYTES

# The runs columns every report reads; provenance blobs (result, log_tail, command) stay in SQL.
RUN_COLUMNS = [
    "id",
    "sweep",
    "lane",
    "arm",
    "variant",
    "match",
    "seed",
    "seq",
    "status",
    "params",
    "jepa_weight",
    "ema",
    "wallclock_s",
    "val_bpb",
    "val_loss",
    "artifact_bytes",
    "under_cap",
]
# More result columns, for pandas users (`load_runs(details=True)`, the default).
DETAIL_COLUMNS = [
    "nproc",
    "prequant_val_bpb",
    "prequant_val_loss",
    "model_bytes",
    "code_bytes",
    "steps",
    "train_time_s",
    "tokens_per_s",
    "code_sha256",
]
PROVENANCE_COLUMNS = ["result", "git_commit", "run_dir"]
# Typed copies of params in the runs table (store._run_row): the JSON value wins where the
# spec set it, the typed column (with the store's default) fills in where it did not.
MIRRORED_PARAMS = ("seed", "jepa_weight", "ema", "wallclock_s")
FLOAT_COLUMNS = (
    "val_bpb",
    "val_loss",
    "prequant_val_bpb",
    "prequant_val_loss",
    "train_time_s",
    "tokens_per_s",
)
INT_COLUMNS = ("artifact_bytes", "model_bytes", "code_bytes", "steps", "nproc", "seq")
ARM_KEYS = ["sweep", "lane", "match", "arm", "variant"]
CATEGORY_COLUMNS = (*ARM_KEYS, "status")
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
PARAM_PREFIX = "param_"


def load_runs(
    db: str | Path | Store,
    *,
    sweep: str | None = None,
    status: str | None = "done",
    details: bool = True,
    provenance: bool = False,
    params: bool | Sequence[str] = True,
) -> pd.DataFrame:
    """The runs of `db` (a Store, a SQLAlchemy URL or a SQLite path) as a tidy DataFrame.

    One row per run in registration order; only runs with `status` (all when None); the
    columns of RUN_COLUMNS, with `details` also DETAIL_COLUMNS, with `provenance` also
    PROVENANCE_COLUMNS (the whole result.json as text, git commit, run directory). The
    `params` JSON becomes one column per key (see `tidy_runs`): every key when `params` is
    True, only the named keys for a list, none for False (the typed copies of
    MIRRORED_PARAMS are always there). UserError for an unknown status, and for a SQLite
    path that does not exist (reading never creates a database).
    """
    if not isinstance(db, Store) and "://" not in str(db) and not Path(db).exists():
        raise UserError(f"database {db} does not exist")
    store = db if isinstance(db, Store) else open_store(db)
    table = Run.__table__
    names = [
        *RUN_COLUMNS,
        *(DETAIL_COLUMNS if details else ()),
        *(PROVENANCE_COLUMNS if provenance else ()),
    ]
    if params is False:
        names.remove("params")
    # No ORDER BY: tidy_runs sorts by seq, faster than SQLite's sort of an unindexed column.
    query = sa.select(*(table.c[name] for name in names))
    if sweep is not None:
        query = query.where(table.c.sweep == sweep)
    if status is not None:
        if status not in {member.value for member in RunStatus}:
            allowed = ", ".join(member.value for member in RunStatus)
            raise UserError(f"unknown run status {status!r}; allowed: {allowed}")
        query = query.where(table.c.status == status)
    keys = None if isinstance(params, bool) else list(params)
    return tidy_runs(_fetch(store.engine, query), params=keys)


def _fetch(engine: sa.Engine, query: sa.Select[Any]) -> pd.DataFrame:
    """Rows of `query` through the DB-API cursor, as a DataFrame of raw column values.

    `pandas.read_sql` on a SQLAlchemy connection runs every value through SQLAlchemy's
    result processing, about half of the time for 100,000 runs (bench/report.py); the raw
    cursor skips it, and `tidy_runs` does the few conversions a report needs. Parameters
    are rendered as literals by the dialect, so the text is valid on any backend.
    """
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
        cursor.close()
    finally:
        connection.close()
    return pd.DataFrame.from_records(rows, columns=names)


def tidy_runs(runs: pd.DataFrame, params: Sequence[str] | None = None) -> pd.DataFrame:
    """A runs frame (`Store.runs_frame()`, `pandas.read_sql("runs", ...)` or `load_runs`)
    made tidy: registration order, the key columns (sweep, lane, match, arm, variant) and
    `status` as categoricals of their strings, result columns as float64 / Int64,
    `under_cap` recomputed from artifact_bytes (False when unknown), and the `params` JSON
    expanded into one column per key (only the keys in `params` when given). A key that
    names a typed copy (MIRRORED_PARAMS) fills that column where present; a key that clashes
    with any other column becomes `param_<key>`. Idempotent: a frame without `params` is
    only normalised.
    """
    frame = runs.copy()
    if "seq" in frame.columns:
        frame = frame.sort_values("seq", kind="stable")
    frame = frame.reset_index(drop=True)
    for name in CATEGORY_COLUMNS:
        if name in frame.columns and not isinstance(frame[name].dtype, pd.CategoricalDtype):
            # Categories (sorted, so ordering stays lexical): a sweep's 100,000 runs share a
            # few hundred keys, and every report groups and joins on them repeatedly.
            frame[name] = frame[name].astype(str).astype("category")
    for name in FLOAT_COLUMNS:
        if name in frame.columns:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    for name in INT_COLUMNS:
        if name in frame.columns:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("Int64")
    frame["seed"] = pd.to_numeric(frame["seed"]).astype("int64")
    if "ema" in frame.columns:
        # A raw cursor gives SQLite's 0/1; the column is never NULL (store.Run.ema).
        frame["ema"] = frame["ema"].astype(bool)
    if "artifact_bytes" in frame.columns:
        # Recomputed rather than trusted: the cap is the challenge's rule, not the trainer's.
        frame["under_cap"] = (frame["artifact_bytes"] <= ARTIFACT_CAP_BYTES).fillna(False)
        frame["under_cap"] = frame["under_cap"].astype(bool)
    if "params" in frame.columns:
        frame = _expand_params(frame, params)
    return frame


def _expand_params(frame: pd.DataFrame, keys: Sequence[str] | None) -> pd.DataFrame:
    """Replace the `params` JSON text column by one column per key (or per key of `keys`)."""
    records = _parse_all(frame.pop("params"))
    if keys is None:
        params = pd.DataFrame.from_records(records, index=frame.index)
    else:
        columns = {key: [record.get(key) for record in records] for key in keys}
        params = pd.DataFrame(columns, index=frame.index, dtype=object)
        params = params.loc[:, params.notna().any()]  # a key no run has stays absent
    for key in params.columns:
        values = params[key]
        if key in MIRRORED_PARAMS and key in frame.columns:
            frame[key] = values.where(values.notna(), frame[key]).infer_objects()
        elif key in frame.columns:
            frame[f"{PARAM_PREFIX}{key}"] = values.infer_objects()
        else:
            frame[key] = values.infer_objects()
    return frame


def _parse_all(texts: pd.Series) -> list[dict[str, Any]]:
    """Every params JSON object; one json.loads of them all when they are all text (a
    tenth of the time of 100,000 separate calls), else one by one."""
    values = texts.tolist()
    if all(isinstance(text, str) for text in values):
        return json.loads("[" + ",".join(values) + "]") if values else []
    return [json.loads(text) if isinstance(text, str) else dict(text or {}) for text in values]


def is_param_column(name: str) -> bool:
    """A column of a tidy runs frame that holds a param (not a key, result or helper)."""
    others = {*RUN_COLUMNS, *DETAIL_COLUMNS, *PROVENANCE_COLUMNS} - set(MIRRORED_PARAMS)
    return name not in others and not name.startswith("_")


def require_metric(runs: pd.DataFrame, metric: str) -> None:
    """UserError unless `metric` is a column of `runs`."""
    if metric not in runs.columns:
        raise UserError(f"no column {metric!r} in the runs; a metric is a result column")


def axis_values(runs: pd.DataFrame, axis: str) -> pd.Series:
    """The numeric values of param `axis` for every run (NaN where a run lacks it).

    UserError when no run has the param, or when a value is not a number.
    """
    if axis not in runs.columns:
        known = sorted(name for name in runs.columns if is_param_column(name))
        raise UserError(f"no run has param {axis!r}; params found: {', '.join(known) or 'none'}")
    raw = runs[axis]
    if raw.dtype == bool or pd.api.types.is_bool_dtype(raw):
        raw = raw.astype("float64")
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = raw.notna() & values.isna()
    if bad.any():
        sample = ", ".join(repr(v) for v in raw[bad].unique()[:3])
        raise UserError(f"param {axis!r} is not numeric ({sample}); an axis must be a number")
    return values


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
    return (
        rows.groupby(list(keys), sort=False, dropna=False, observed=True)
        .ngroup()
        .to_numpy(dtype=np.int64)
    )


def split_lists(values: np.ndarray, sorted_codes: np.ndarray) -> list[list[Any]]:
    """`values` (ordered by their group codes `sorted_codes`, 0..G-1) as one list per group."""
    if not len(values):
        return []
    # Slicing one Python list is several times faster than np.split into G arrays.
    flat = values.tolist()
    bounds = [0, *(np.flatnonzero(np.diff(sorted_codes)) + 1).tolist(), len(flat)]
    with paused_gc():
        return [flat[start:end] for start, end in itertools.pairwise(bounds)]


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic containers.

    Tens of thousands of new lists trigger collections that scan every tracked object of a
    100,000-run frame; that took longer than building the lists (bench/report.py).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    # scipy's Student t interval with n - 1 degrees of freedom; NaN for n < 2 (no interval).
    with np.errstate(invalid="ignore"):
        low, high = stats.t.interval(level, n - 1, loc=table["mean"].to_numpy(), scale=sem)
    return table.assign(sem=sem, ci_low=low, ci_high=high)


def split_pairs(text: str) -> dict[str, str]:
    """`"k=v,k2=v2"` (a PlannedRun's match or variant) as a dict; "" gives {}."""
    pairs = (part.partition("=") for part in text.split(",") if part)
    return {key: value for key, _, value in pairs}


def drop_key(text: str, key: str) -> str:
    """A match or variant string without `key`'s `k=v` pair, order kept."""
    return ",".join(part for part in text.split(",") if part and part.partition("=")[0] != key)
