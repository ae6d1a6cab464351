"""Rows of results tables as ingested runs: lane "table", arm "table", the params that
differ between a table's rows as the variant, a row without a metric a failed run.

A run's `match` (the runs an arm is compared with: its control shares it) is the table's
match column, or else built as a sweep builds it, `key=value,...` over the match keys the
row sets: the budget and data params the compare table requires an arm and its control to
share (`MATCH_KEYS`: wallclock_s, iterations, train_batch_tokens, seq_len, ...). So an arm
at 600 s is compared with the control at 600 s and the same seed, never with a pool of
controls of every budget. Those keys are then left out of the variant.

The tables themselves (CSV, TSV, markdown; columns mapped by name and `--map`) are read by
tables.py; this module labels their rows and turns them into runs and result dicts.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from jepardy.analysis.matching import MATCH_COLUMNS, MATCH_PARAMS
from jepardy.ingest.batch import KIND, Batch, IngestedRun, IngestReport, file_sha256, ingest_id
from jepardy.ingest.labels import UNKNOWN_SEED, Labels, TypedSets, checked_name
from jepardy.ingest.tables import (
    METRIC_FIELDS,
    Column,
    TableMapping,
    TextTable,
    TypedRow,
    is_results,
    read_tables,
    summary_row,
    typed_row,
)
from jepardy.spec.expand import format_value
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome
from jepardy.trainer.config import ARTIFACT_CAP_BYTES

TABLE_LANE = "table"
TABLE_ARM = "table"
TABLE_SUFFIXES = (".csv", ".tsv", ".md")
# The params an arm and its control must share (nproc, kind and code_sha256 are not params
# of a table row).
MATCH_KEYS = frozenset(MATCH_PARAMS) | frozenset(MATCH_COLUMNS)


def table_batch(
    path: Path, labels: Labels, sets: TypedSets, mapping: TableMapping, report: IngestReport
) -> Batch:
    """The runs of every results table in the file at `path` (a table without a metric
    column, a summary row or a file without tables: a note in `report`)."""
    folder = path.parent.resolve()
    sweep = checked_name(labels.sweep or f"ingested:{folder.name}", "sweep")
    batch = Batch(sweep, path.resolve())
    tables = read_tables(path, str(path))
    if not tables:
        report.notes.append(f"{path}: no table found")
    for table in tables:
        batch.runs += _table_runs(path, table, sweep, labels, sets, mapping, report)
    batch.description = {"ingested": str(path.resolve()), "files": {path.name: file_sha256(path)}}
    return batch


def _table_runs(
    path: Path,
    table: TextTable,
    sweep: str,
    labels: Labels,
    sets: TypedSets,
    mapping: TableMapping,
    report: IngestReport,
) -> list[IngestedRun]:
    columns = mapping.columns(table)
    if not is_results(columns):
        header = " | ".join(table.header)
        report.notes.append(
            f"{table.where()}: no val_bpb or val_loss column ({header}); skipped "
            "(--map 'COLUMN=val_bpb' names one)"
        )
        return []
    rows = []
    for line, cells in table.rows:
        word = summary_row(columns, cells)
        if word is not None:
            report.notes.append(f"{table.source}: line {line}: summary row {word!r}; skipped")
            continue
        rows.append(typed_row(table, columns, line, cells))
    matched_on = _match_keys(table, columns, rows, sets, report)
    varying = [k for k in _varying([r.params for r in rows]) if k not in matched_on]
    return [
        _table_run(path, table, sweep, labels, sets, row, index, (varying, matched_on))
        for index, row in enumerate(rows)
    ]


def _match_keys(
    table: TextTable,
    columns: list[Column],
    rows: list[TypedRow],
    sets: TypedSets,
    report: IngestReport,
) -> list[str]:
    """The MATCH_KEYS the table's rows (or `--set`) give, sorted, which make each run's
    match; none when the table has a match column or `--set match=` names one. Said in a
    note, as the match decides which control every arm is compared with."""
    if "match" in sets.labels or any(c.kind == "label" and c.field == "match" for c in columns):
        return []
    given = {k for row in rows for k in row.params} | set(sets.params)
    keys = sorted(given & MATCH_KEYS)
    if keys:
        report.notes.append(f"{table.where()}: no match column; matched on {', '.join(keys)}")
    return keys


def _table_run(
    path: Path,
    table: TextTable,
    sweep: str,
    labels: Labels,
    sets: TypedSets,
    row: TypedRow,
    index: int,
    keys: tuple[list[str], list[str]],
) -> IngestedRun:
    """One results-table row as an ingested run; `keys` are the params that make its
    variant and those that make its match."""
    varying, matched_on = keys
    params = {**row.params}
    for key, value in sets.params.items():
        params.setdefault(key, value)
    given = {**sets.labels, **row.labels}
    seed = int(given.get("seed", UNKNOWN_SEED))
    if seed != UNKNOWN_SEED:
        params["seed"] = seed
    result = _row_result(path, table, row)
    content = hashlib.sha256(
        "\n".join(["|".join(table.header), "|".join(row.cells)]).encode()
    ).hexdigest()
    variant = _label(params, varying)
    return IngestedRun(
        identity=RunIdentity(
            run_id=ingest_id(sweep, path.name, f"table{table.index}.row{index}", content),
            sweep=sweep,
            lane=checked_name(str(given.get("lane") or labels.lane or TABLE_LANE), "lane"),
            arm=checked_name(str(given.get("arm") or TABLE_ARM), "arm"),
            variant=str(given.get("variant", variant)),
            match=str(given.get("match", _label(params, matched_on))),
            seed=seed,
            params=dict(sorted(params.items())),
            nproc=0,
            kind=KIND,
        ),
        outcome=RunOutcome(
            status=result["status"],
            reason=result["reason"],
            result=result,
            metrics=[],
            log_tail="",
        ),
        source=f"{path.name} table {table.index + 1} line {row.line}",
    )


def _row_result(path: Path, table: TextTable, row: TypedRow) -> dict[str, Any]:
    result: dict[str, Any] = dict(row.results)
    has_metric = any(
        isinstance(result.get(f), float) and math.isfinite(result[f]) for f in METRIC_FIELDS
    )
    if "artifact_bytes" in result:
        result["under_cap"] = result["artifact_bytes"] <= ARTIFACT_CAP_BYTES
    result |= {
        "status": "done" if has_metric else "failed",
        "reason": "" if has_metric else f"line {row.line}: no val_bpb or val_loss value",
        "provenance": {k: {"line": row.line, "column": c} for k, c in row.provenance.items()},
        "columns": row.unmapped,
        "source": {
            "type": "table",
            "path": str(path.resolve()),
            "table": table.index + 1,
            "header_line": table.line,
            "line": row.line,
        },
    }
    return result


def _varying(rows: list[dict[str, Any]]) -> list[str]:
    """The params (seed aside) whose value differs between rows, sorted."""
    keys = sorted({k for row in rows for k in row} - {"seed"})
    return [k for k in keys if len({json.dumps(row.get(k)) for row in rows}) > 1]


def _label(params: dict[str, Any], keys: list[str]) -> str:
    """`k=v,...` over the `keys` a run's params hold, values written as a sweep writes them."""
    return ",".join(f"{k}={format_value(params[k])}" for k in keys if k in params)
