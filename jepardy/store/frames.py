"""The store's one read path to pandas: the runs table as a tidy DataFrame.

    from jepardy.store.frames import load_runs
    runs = load_runs("results.db")                    # one row per done run, params as columns

Reports, `runs`, `show`, `status` and the pandas API all read through `read_runs`: one SQL
builder (only the columns asked for), one raw-cursor fetch, one set of dtype rules
(`tidy_runs`). Readers open the database read-only (`engine.open_reader`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from jepardy.store.reader import (
    PACKED,
    RESULT_TEXT,
    SEPARATOR,
    Reader,
    RunsQuery,
    in_chunks,
    reading,
    runs_query,
)
from jepardy.store.states import IDENTITY_COLUMNS
from jepardy.trainer.config import ARTIFACT_CAP_BYTES

if TYPE_CHECKING:
    from jepardy.store.engine import Database

# The runs columns every report reads; provenance blobs (result, log_tail, command) stay in SQL.
RUN_COLUMNS = [
    *IDENTITY_COLUMNS,
    "seq",
    "kind",  # a re-export ("export") is never a control (analysis.summary.is_control)
    "parent_run",  # a re-export's source run, which the compare table pairs it with
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
INT_COLUMNS = (
    *("artifact_bytes", "model_bytes", "code_bytes", "steps", "nproc", "seq"),
    *("pid", "exit_code", "attempts"),
)
DATETIME_COLUMNS = ("created_at", "started_at", "finished_at", "heartbeat_at")
ARM_KEYS = ["sweep", "lane", "match", "arm", "variant"]
CATEGORY_COLUMNS = (*ARM_KEYS, "status")
PARAM_PREFIX = "param_"


def load_runs(
    db: str | Path | Database,
    *,
    sweep: str | None = None,
    status: str | None = "done",
    details: bool = True,
    provenance: bool = False,
    params: bool | Sequence[str] = True,
) -> pd.DataFrame:
    """The runs of `db` (a Database, a SQLAlchemy URL or a SQLite path) as a tidy DataFrame:
    the pandas API of the reports.

    One row per run in registration order; only runs with `status` (all when None); the
    columns of RUN_COLUMNS, with `details` also DETAIL_COLUMNS, with `provenance` also
    PROVENANCE_COLUMNS (the whole result.json as text, git commit, run directory). The
    `params` JSON becomes one column per key (see `tidy_runs`): every key when `params` is
    True, only the named keys for a list, none for False (the typed copies of
    MIRRORED_PARAMS are always there). UserError for an unknown status, and for a database
    that does not exist (reading never creates one).
    """
    columns = [
        *RUN_COLUMNS,
        *(DETAIL_COLUMNS if details else ()),
        *(PROVENANCE_COLUMNS if provenance else ()),
    ]
    return read_runs(db, sweep=sweep, status=status, columns=columns, params=params)


def read_runs(
    db: str | Path | Reader | Database,
    *,
    sweep: str | None,
    status: str | None,
    columns: Sequence[str] | None,
    params: bool | Sequence[str],
    result_fields: Sequence[str] = (),
) -> pd.DataFrame:
    """The one read path from the runs table to pandas: the named `columns` (every column
    for None) of the runs of one sweep (or all) with one status (or any), through
    `tidy_runs`'s dtype rules. `params` as for `load_runs`; with False and "params" in
    `columns`, the JSON text is kept. `result_fields`: top-level fields of each run's
    result.json, as text columns `result.<field>`, parsed only from the results that name
    one of them."""
    with reading(db) as reader:
        query = runs_query(reader, sweep, status, columns, params, result_fields, CATEGORY_COLUMNS)
        frame = _frame(reader, query)
        if query.packed and not _unpacked(frame, query.packed):
            # A key holds the separator: read the key columns one by one instead.
            frame = _frame(
                reader, runs_query(reader, sweep, status, columns, params, result_fields)
            )
    frame = frame[query.columns]
    if params is False:
        return tidy_runs(frame, params=None, expand=False)
    keys = None if params is True else list(params)
    return tidy_runs(frame, params=keys)


def _frame(reader: Reader, query: RunsQuery) -> pd.DataFrame:
    names, rows = reader.rows(query.sql, query.values)
    frame = pd.DataFrame.from_records(rows, columns=names)
    if query.result_fields:
        results = [_result(text) for text in frame.pop(RESULT_TEXT).tolist()]
        for field in query.result_fields:
            frame[f"result.{field}"] = [_field_text(result.get(field)) for result in results]
    return frame


def _result(text: object) -> dict[str, Any]:
    """A result JSON as a dict; {} where missing, not JSON, or not an object."""
    if not isinstance(text, str):
        return {}
    try:
        result = json.loads(text)
    except ValueError:
        return {}
    return result if isinstance(result, dict) else {}


def _field_text(value: object) -> str | None:
    """A result field as text, as the database would have cast it: a string as it is,
    anything else as JSON writes it (NaN too); None where absent or null."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _unpacked(frame: pd.DataFrame, packed: Sequence[str]) -> bool:
    """Replace `frame`'s PACKED column by the key columns `packed`, as categoricals: one
    factorization of the joined keys, then each column's codes from the few hundred distinct
    joins (the rows never make a string per key). False, and `frame` unchanged, when a
    joined key does not split into as many values (one held the separator)."""
    joined = pd.Categorical(frame[PACKED].to_numpy(dtype=object))
    parts = [str(text).split(SEPARATOR) for text in joined.categories]
    if any(len(part) != len(packed) for part in parts):
        return False
    frame.pop(PACKED)
    for i, name in enumerate(packed):
        # str categories even with no rows, as tidy_runs' astype(str) gives them.
        column = pd.Categorical(pd.Index([part[i] for part in parts], dtype=str))
        codes = column.codes[joined.codes] if parts else joined.codes
        frame[name] = pd.Categorical.from_codes(codes, dtype=column.dtype)
    return True


def tidy_runs(
    runs: pd.DataFrame, params: Sequence[str] | None = None, *, expand: bool = True
) -> pd.DataFrame:
    """A runs frame (`Store.runs_frame()`, `pandas.read_sql("runs", ...)` or `load_runs`)
    made tidy: registration order, the key columns (sweep, lane, match, arm, variant) and
    `status` as categoricals of their strings, result columns as float64 / Int64,
    `under_cap` recomputed from artifact_bytes (<NA> when unknown), and the `params` JSON
    expanded into one column per key (only the keys in `params` when given). A key that
    names a typed copy (MIRRORED_PARAMS) fills that column where present; a key that clashes
    with any other column becomes `param_<key>`. Idempotent: a frame without `params` is
    only normalised.
    """
    frame = runs.copy()
    if "seq" in frame.columns:
        frame = frame.sort_values("seq", kind="stable")
    frame = _typed_columns(frame.reset_index(drop=True))
    if expand and "params" in frame.columns:
        frame = _expand_params(frame, params)
    return frame


def _typed_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The dtype rules of `tidy_runs`, on whichever of their columns `frame` has."""
    present = set(frame.columns)
    for name in present.intersection(CATEGORY_COLUMNS):
        if not isinstance(frame[name].dtype, pd.CategoricalDtype):
            # Categories (sorted, so ordering stays lexical): a sweep's 100,000 runs share a
            # few hundred keys, and every report groups and joins on them repeatedly.
            frame[name] = frame[name].astype(str).astype("category")
    for names, dtype in ((FLOAT_COLUMNS, "float64"), (INT_COLUMNS, "Int64")):
        for name in present.intersection(names):
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(dtype)
    if "seed" in frame.columns:
        frame["seed"] = pd.to_numeric(frame["seed"]).astype("int64")
    if "ema" in frame.columns:
        # A raw cursor gives SQLite's 0/1; the column is never NULL (store.Run.ema).
        frame["ema"] = frame["ema"].astype(bool)
    if "artifact_bytes" in frame.columns:
        # Recomputed rather than trusted: the cap is the challenge's rule, not the trainer's.
        # Nullable: unknown (<NA>) where the size is, so no reader takes it as under the
        # cap and none shows it as False.
        under = frame["artifact_bytes"].astype("Int64") <= ARTIFACT_CAP_BYTES
        frame["under_cap"] = under.astype("boolean")
    for name in present.intersection(DATETIME_COLUMNS):
        frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
    return frame


def _expand_params(frame: pd.DataFrame, keys: Sequence[str] | None) -> pd.DataFrame:
    """Replace the `params` JSON text column by one column per key (or per key of `keys`)."""
    texts = frame.pop("params")
    if keys is not None:
        keys = _mentioned(texts, keys)
        if not keys:
            return frame  # no run has any of them: nothing to parse
    records = _parse_all(texts)
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
        elif key in frame.columns or key == "params":
            # A param named "params" (an old ingest of a `params:N` log line) would be read as
            # the JSON column by the next tidy pass.
            frame[f"{PARAM_PREFIX}{key}"] = values.infer_objects()
        else:
            frame[key] = values.infer_objects()
    return frame


def _mentioned(texts: pd.Series, keys: Sequence[str]) -> list[str]:
    """`keys` less those that no params text contains (as JSON writes a key, in quotes): a
    report asks for the MATCH_PARAMS, which many sweeps never set, and searching the text
    is a hundredth of the time of parsing 100,000 objects. Keeps every key when a value is
    neither text nor missing."""
    values = [value for value in texts.tolist() if not _missing(value)]
    if set(map(type, values)) - {str}:
        return list(keys)
    joined = "\n".join(values)
    return [key for key in keys if json.dumps(key) in joined or json.dumps(key)[1:-1] != key]


def _parse_all(texts: pd.Series) -> list[dict[str, Any]]:
    """Every params JSON object ({} where missing: runs_query leaves out the params that
    name none of the keys asked for); one json.loads of them all when they are all text (a
    tenth of the time of 100,000 separate calls), else one by one."""
    values = texts.tolist()
    if all(isinstance(text, str) or _missing(text) for text in values):
        present = [text for text in values if isinstance(text, str)]
        parsed = iter(json.loads("[" + ",".join(present) + "]"))
        return [next(parsed) if isinstance(text, str) else {} for text in values]
    return [
        json.loads(text) if isinstance(text, str) else {} if _missing(text) else dict(text)
        for text in values
    ]


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def is_param_column(name: str) -> bool:
    """A column of a tidy runs frame that holds a param (not a key, result or helper)."""
    others = {*RUN_COLUMNS, *DETAIL_COLUMNS, *PROVENANCE_COLUMNS} - set(MIRRORED_PARAMS)
    return name not in others and not name.startswith("_")


def read_metrics(
    db: str | Path | Reader | Database, run_ids: Sequence[str], names: Sequence[str]
) -> pd.DataFrame:
    """The metric points (each run's metrics.jsonl, recorded when its job ended) named
    `names` of the runs `run_ids`: columns run_id, step, name, value (NaN where the run
    logged a non-finite value), sorted by run, name and step."""
    rows: list[tuple[object, ...]] = []
    with reading(db) as reader:
        wanted = ", ".join(["{p}"] * len(names))
        for chunk in in_chunks(run_ids):
            ids = ", ".join(["{p}"] * len(chunk))
            sql = (
                "SELECT run_id, step, name, value FROM metrics "
                f"WHERE run_id IN ({ids}) AND name IN ({wanted})"
            )
            rows.extend(reader.rows(sql, [*chunk, *names])[1])
    points = pd.DataFrame.from_records(rows, columns=["run_id", "step", "name", "value"])
    points["value"] = pd.to_numeric(points["value"], errors="coerce").astype("float64")
    points["step"] = pd.to_numeric(points["step"]).astype("int64")
    return points.sort_values(["run_id", "name", "step"], kind="stable").reset_index(drop=True)
