"""`jepardy ingest`: challenge logs, record folders and results tables into the store.

Every ingested run is a row of the runs table like a sweep's, with kind "ingested", so
`jepardy report` compares it like any other:

- sweep `ingested:<folder>` (the folder holding the file, or the record folder), lane
  "logs" for log runs and "table" for table rows, arm from the log's file name without its
  seed (`train_seed42.log` -> "train") or "table"; `--sweep`, `--lane` and `--set` relabel.
- seed: printed by the log (`seed:1337`), else in its file name (`train_seed42.log`,
  `seed_1337/`), else `--set seed=N`, else -1 (unknown); a log whose seed line and file
  name disagree keeps the log's and is flagged.
- params: what the log printed (`logresult.run_params`) or the table's param columns, then
  `--set key=value` for the keys they leave out.
- status "done" when a final metric was found (a table row: a val_bpb or val_loss cell),
  else "failed" with the reason; the result JSON holds the per-field provenance (line and
  label, or column), every metric line, the flags, and what submission.json claimed.
- In a file with several runs, the last finished one is the file's reported run; the
  others get variant `attempt:<n>` so they never pool with it. A run printed in two files
  (a `logs/<id>.txt` copy of `train_seed42.log`) is taken once, from the shallower file.

A run's id hashes (sweep, source path relative to the ingested folder, the run's index in
the file, the sha256 of its text; batch.py), so ingesting the same files again adds nothing.
This module reads logs and record folders; table_runs.py turns tables' rows into runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jepardy.errors import UserError
from jepardy.ingest.batch import KIND, Batch, IngestedRun, IngestReport, file_sha256, ingest_id
from jepardy.ingest.labels import (
    UNKNOWN_SEED,
    Labels,
    TypedSets,
    arm_from_path,
    checked_name,
    seed_from_path,
    typed_sets,
)
from jepardy.ingest.logparse import ParsedRun, parse_log
from jepardy.ingest.logresult import metric_series, run_params, run_result
from jepardy.ingest.records import (
    LOG_SUFFIXES,
    README,
    SUBMISSION,
    Submission,
    folder_checks,
    log_files,
    read_submission,
    record_folders,
    seed_flags,
)
from jepardy.ingest.table_runs import TABLE_SUFFIXES, table_batch
from jepardy.ingest.tables import TableMapping, is_results, read_tables
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import Store

LOG_LANE = "logs"
TAIL_LINES = 40


def ingest(paths: Sequence[Path], store: Store, labels: Labels | None = None) -> IngestReport:
    """Read every path and record the runs the store does not hold yet (status done or
    failed). Runs already in the store are left untouched and counted as `existing`."""
    labels = labels or Labels()
    batches, report = read_paths(paths, labels)
    by_sweep: dict[str, list[Batch]] = {}
    for batch in batches:
        if batch.runs:
            by_sweep.setdefault(batch.sweep, []).append(batch)
    for sweep, group in by_sweep.items():
        runs = list({r.identity.run_id: r for b in group for r in b.runs}.values())
        known = store.statuses([r.identity.run_id for r in runs])
        new = [r for r in runs if r.identity.run_id not in known]
        report.existing += [r for r in runs if r.identity.run_id in known]
        text = json.dumps([b.description for b in group], indent=1, sort_keys=True)
        store.upsert_sweep(sweep, " ".join(str(b.path) for b in group), text)
        store.register_runs([run.identity for run in new], git_commit=None)
        for run in new:
            store.record_result(run.identity.run_id, run.outcome)
        report.added += new
        report.sweeps.append(sweep)
    return report


def read_paths(paths: Sequence[Path], labels: Labels) -> tuple[list[Batch], IngestReport]:
    """Every path as batches of runs, without touching a store (a pure read)."""
    sets = typed_sets(labels.sets)
    mapping = TableMapping(dict(labels.maps))
    report = IngestReport()
    batches: list[Batch] = []
    tables_read = False
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: not found; {_ALLOWED}")
        suffix = path.suffix.lower()
        if path.is_dir():
            folders = record_folders(path)
            if not folders:
                raise UserError(f"{path}: no record folder or log below it; {_ALLOWED}")
            batches += [_record_batch(f, labels, sets, report) for f in folders]
        elif suffix in TABLE_SUFFIXES:
            batches.append(table_batch(path, labels, sets, mapping, report))
            tables_read = True
        elif suffix in LOG_SUFFIXES:
            batches.append(_log_batch(path, labels, sets, report))
        elif path.name == SUBMISSION:
            raise UserError(f"{path}: ingest the record folder that holds it ({path.parent})")
        else:
            raise UserError(f"{path}: unknown file type {suffix or '(none)'}; {_ALLOWED}")
    if labels.maps and not tables_read:
        raise UserError("--map: applies to tables (.csv, .tsv, .md); no table was ingested")
    if unused := mapping.unused_maps():
        raise UserError(f"--map {unused[0]}: no column of that name in the tables read")
    return batches, report


_ALLOWED = "expected a log (.log, .txt), a table (.csv, .tsv, .md) or a record folder"


# --- logs ------------------------------------------------------------------------------------


def _record_batch(folder: Path, labels: Labels, sets: TypedSets, report: IngestReport) -> Batch:
    sweep = checked_name(labels.sweep or f"ingested:{folder.name}", "sweep")
    batch = Batch(sweep, folder.resolve())
    submission = read_submission(folder)
    if submission is not None:
        report.notes += submission.problems
    seen: dict[str, str] = {}
    files: dict[str, str] = {}
    reported: list[tuple[str, dict[str, Any]]] = []
    for path in log_files(folder):
        relative = path.relative_to(folder)
        file = _LogFile(path, relative, sweep, labels, sets, submission)
        runs = _log_runs(file, report, seen)
        if runs is None:
            continue
        files[relative.as_posix()] = file_sha256(path)
        batch.runs += runs
        reported += [
            (relative.as_posix(), r.outcome.result) for r in runs if r.outcome.result["reported"]
        ]
    checks = folder_checks(submission, reported) if submission and submission.data else []
    report.checks += checks
    batch.description = {
        "ingested": str(folder.resolve()),
        "files": files,
        "submission": submission.data if submission else None,
        "checks": [{"ok": c.ok, "text": c.text} for c in checks],
    }
    readme = folder / README
    if readme.is_file():
        report.notes += _readme_hint(readme)
    return batch


def _log_batch(path: Path, labels: Labels, sets: TypedSets, report: IngestReport) -> Batch:
    folder = path.parent.resolve()
    sweep = checked_name(labels.sweep or f"ingested:{folder.name}", "sweep")
    batch = Batch(sweep, path.resolve())
    runs = _log_runs(_LogFile(path, Path(path.name), sweep, labels, sets, None), report, {})
    batch.runs = runs or []
    batch.description = {"ingested": str(path.resolve()), "files": {path.name: file_sha256(path)}}
    return batch


@dataclass(frozen=True)
class _LogFile:
    """One log file being read, and what labels its runs."""

    path: Path
    relative: Path  # to the ingested folder: part of every run's identity
    sweep: str
    labels: Labels
    sets: TypedSets
    submission: Submission | None


def _log_runs(
    file: _LogFile, report: IngestReport, seen: dict[str, str]
) -> list[IngestedRun] | None:
    """The runs of one log file; None (with a note) when it is not a train log. `seen` maps
    the fingerprints of runs already taken to where they were found."""
    parsed = [r for r in parse_log(_read_log(file.path)).runs if _is_run(r)]
    if not parsed:
        report.notes.append(f"{file.path}: not a train log (no step, size, metric or model line)")
        return None
    results = [run_result(r) for r in parsed]
    finished = [i for i, result in enumerate(results) if result["status"] == "done"]
    reported = (finished or [len(parsed) - 1])[-1]
    runs = []
    for i, (run, result) in enumerate(zip(parsed, results, strict=True)):
        if run.has_body and run.fingerprint in seen:
            where = f"{file.path} run {run.index + 1}"
            report.notes.append(f"{where}: a copy of {seen[run.fingerprint]}")
            continue
        seen.setdefault(run.fingerprint, f"{file.relative.as_posix()} run {run.index + 1}")
        result["reported"] = i == reported
        variant = "" if i == reported else f"attempt:{run.index + 1}"
        runs.append(_log_run(file, run, result, variant, len(parsed)))
    return runs


def _log_run(
    file: _LogFile, run: ParsedRun, result: dict[str, Any], variant: str, count: int
) -> IngestedRun:
    sets = file.sets
    params, flags = run_params(run)
    printed = params.get("seed")
    named = seed_from_path(file.relative)
    if isinstance(printed, int) and named is not None and printed != named:
        flags.append(f"seed: the log prints {printed}, the file name says {named}")
    seed = printed if isinstance(printed, int) else named
    seed = seed if seed is not None else sets.labels.get("seed", UNKNOWN_SEED)
    if seed != UNKNOWN_SEED:
        params["seed"] = seed
    for key, value in sets.params.items():
        params.setdefault(key, value)
    submission = file.submission
    if submission is not None and seed in submission.per_seed:
        result["submission"] = submission.per_seed[seed]
        flags += seed_flags(submission, seed, result)
    source = file.relative.as_posix()
    result["flags"] = [*result["flags"], *flags]
    result["source"] = {
        "type": "log",
        "path": str(file.path.resolve()),
        "relpath": source,
        "run": run.index + 1,
        "runs_in_file": count,
        "lines": [run.first_line, run.last_line],
        "sha256": run.sha256,
    }
    world = params.get("world_size")
    return IngestedRun(
        identity=RunIdentity(
            run_id=ingest_id(file.sweep, source, run.index, run.sha256),
            sweep=file.sweep,
            lane=checked_name(file.labels.lane or LOG_LANE, "lane"),
            arm=checked_name(str(sets.labels.get("arm") or arm_from_path(file.relative)), "arm"),
            variant=variant or str(sets.labels.get("variant", "")),
            match=str(sets.labels.get("match", "")),
            seed=seed,
            params=dict(sorted(params.items())),
            nproc=world if isinstance(world, int) and not isinstance(world, bool) else 0,
            kind=KIND,
        ),
        outcome=RunOutcome(
            status=result["status"],
            reason=result["reason"],
            result=result,
            metrics=metric_series(run),
            log_tail="\n".join(run.text.split("\n")[-TAIL_LINES:]),
        ),
        source=f"{source} run {run.index + 1}",
    )


def _is_run(run: ParsedRun) -> bool:
    return run.has_body or run.model_params is not None or run.exception is not None


def _read_log(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None


def _readme_hint(readme: Path) -> list[str]:
    try:
        tables = read_tables(readme, str(readme))
    except UserError:
        return []
    mapping = TableMapping({})
    found = sum(1 for t in tables if is_results(mapping.columns(t)))
    if not found:
        return []
    return [f"{readme}: {found} results table(s) not ingested; `jepardy ingest {readme}` adds them"]
