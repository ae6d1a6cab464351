"""What a store holds right now: counts per state, the running jobs, a filtered runs list.

Plain rows from the store's `Reader` (no pandas, no SQLAlchemy), as tables of columns
(`{name: [cell, ...]}`): `jepardy status` and `runs` print these, and answer before pandas
alone would have finished importing. Each query reads only the columns it shows.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from jepardy.errors import UserError
from jepardy.store.reader import Reader, parse_time
from jepardy.store.states import IDENTITY_COLUMNS, STALE_AFTER_S, RunStatus

# A table of cells by column, every column as long as the others.
Table = dict[str, list[Any]]

STATES = [s.value for s in RunStatus]
RUNS_COLUMNS = [
    *IDENTITY_COLUMNS,
    "status",
    "reason",
    "val_bpb",
    "artifact_bytes",
    "steps",
    "train_time_s",
]
RUNNING_COLUMNS = [
    *("id", "state", "sweep", "lane", "arm", "variant", "match", "seed", "host", "pid"),
    *("executor", "job_id", "job_state", "job_nodes", "devices", "elapsed_s", "heartbeat_age_s"),
]
# What `running_jobs` reads of a running run (besides its identity).
_RUNNING_READ = ("host", "pid", "executor", "job_id", "job_state", "job_nodes", "devices")


class KnowsSweeps(Protocol):
    """A store a name can be checked against: a Reader, or a Database (jepardy.store.engine)."""

    name: str

    def sweep_names(self) -> list[str]: ...


def status_counts(reader: Reader, sweep: str | None = None, every_state: bool = True) -> Table:
    """One row per sweep (sorted), one column per state in lifecycle order (every state, or
    with `every_state` False only those some sweep has runs in), plus total."""
    where, values = _where_sweep(sweep)
    sql = f"SELECT sweep, status, COUNT(*) FROM runs{where} GROUP BY sweep, status"
    counts: dict[str, dict[str, int]] = {}
    for name, state, count in reader.rows(sql, values)[1]:
        counts.setdefault(name, {})[state] = count
    sweeps = sorted(counts)
    states = [s for s in STATES if every_state or any(s in counts[n] for n in sweeps)]
    table: Table = {"sweep": sweeps}
    for state in states:
        table[state] = [counts[name].get(state, 0) for name in sweeps]
    table["total"] = [sum(counts[name].values()) for name in sweeps]
    return table


def running_jobs(
    reader: Reader,
    sweep: str | None = None,
    now: datetime | None = None,
    db: str | None = None,
) -> Table:
    """The running runs (of `sweep`, or all) in registration order: see `running_table`."""
    where, values = _where_sweep(sweep)
    status = "status = {p}"
    where = f"{where} AND {status}" if where else f" WHERE {status}"
    read = [*IDENTITY_COLUMNS, *_RUNNING_READ, "run_dir", "started_at", "heartbeat_at"]
    sql = f"SELECT {', '.join(read)} FROM runs{where} ORDER BY seq"
    rows = reader.records(sql, [*values, RunStatus.RUNNING.value])
    return running_table(rows, now or datetime.now(UTC), reader.spec_paths(), db)


def running_table(
    rows: Sequence[Mapping[str, Any]],
    now: datetime,
    specs: Mapping[str, str],
    db: str | None = None,
) -> Table:
    """The running runs `rows`: their state (`running`, or stale: see `running_state`), who
    holds them (host and pid of the orchestrator), their job (its executor, id there, state
    in the executor's words, nodes, local GPUs), for how long, and seconds since their last
    heartbeat. `specs`: each sweep's spec path, and `db` (None: the default one), named in
    the stale state's command (`resume_command`)."""
    table: Table = {name: [] for name in RUNNING_COLUMNS}
    for row in rows:
        age = _seconds_since(now, row["heartbeat_at"])
        spec = specs.get(str(row["sweep"]), "SPEC")
        resume = resume_command(spec, db, row.get("run_dir"), row.get("executor"))
        derived = {
            "state": running_state(age, resume),
            "elapsed_s": _seconds_since(now, row["started_at"]),
            "heartbeat_age_s": age,
        }
        for name in RUNNING_COLUMNS:
            table[name].append(derived[name] if name in derived else row[name])
    return table


def running_state(heartbeat_age_s: float | None, resume: str) -> str:
    """`running`, or, when the run's orchestrator stopped beating (heartbeat older than
    STALE_AFTER_S, or none), that it is stale and how to take it over (`resume`, the command
    of `resume_command`): the store still says running, but nothing will finish it until a
    sweep of its spec resumes it."""
    if heartbeat_age_s is not None and heartbeat_age_s <= STALE_AFTER_S:
        return "running"
    since = (
        "no heartbeat" if heartbeat_age_s is None else f"no heartbeat for {heartbeat_age_s:.0f} s"
    )
    return f"running (stale: {since}; resume with {resume})"


def resume_command(spec: str, db: str | None, run_dir: str | None, executor: str | None) -> str:
    """`jepardy sweep SPEC ...` that resumes a run's sweep from this directory, on the same
    store (`db`; None: the default) and run directories (the parent of the run's sweep
    folder, when it is not ./runs here) and executor. The spec path is as recorded (absolute
    since sweeps record it so); an older relative one not found from here is said so."""
    words = ["jepardy", "sweep", spec]
    if db is not None:
        words += ["--db", db]
    if run_dir:
        root = Path(run_dir).parent.parent
        if root.resolve() != Path("runs").resolve():
            words += ["--runs-dir", str(root)]
    if executor == "slurm":
        words += ["--executor", executor]
    command = shlex.join(words)
    if spec != "SPEC" and not Path(spec).is_absolute() and not Path(spec).exists():
        command += " (from where that sweep ran: its spec path was recorded relative)"
    return command


def select_runs(
    reader: Reader,
    *,
    sweep: str | None = None,
    status: str | None = None,
    lane: str | None = None,
    arm: str | None = None,
) -> Table:
    """The runs matching every given field, RUNS_COLUMNS only, in registration order.

    UserError for a status that is not a RunStatus, and for a lane or arm no run (of the
    sweep) has, the closest named: a typo must not read as "no such runs"."""
    if status is not None and status not in STATES:
        raise unknown_value("status", status, STATES, "jepardy's run states", "statuses")
    where, values = _where_sweep(sweep)
    for column, value in (("lane", lane), ("arm", arm)):
        if value is None:
            continue
        known = [
            name for (name,) in reader.rows(f"SELECT DISTINCT {column} FROM runs{where}", values)[1]
        ]
        if value not in known:
            raise unknown_value(column, value, sorted(map(str, known)), _where(sweep))
    conditions = [
        (c, v)
        for c, v in (("sweep", sweep), ("status", status), ("lane", lane), ("arm", arm))
        if v is not None
    ]
    clause = " AND ".join(f"{column} = {{p}}" for column, _ in conditions)
    where = f" WHERE {clause}" if clause else ""
    sql = f"SELECT {', '.join(RUNS_COLUMNS)} FROM runs{where} ORDER BY seq"
    names, rows = reader.rows(sql, [value for _, value in conditions])
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


def unknown_value(
    kind: str, value: str, known: Sequence[str], where: str, plural: str | None = None
) -> UserError:
    """The one-line error for a name that selects nothing because it does not exist: the
    closest known name (a typo is the usual cause) and every known one."""
    close = difflib.get_close_matches(value, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    listed = ", ".join(known[:20]) + (f", ... ({len(known)})" if len(known) > 20 else "")
    return UserError(
        f"no {kind} {value!r} in {where}{hint} {plural or kind + 's'}: {listed or 'none'}"
    )


def require_sweep(store: KnowsSweeps, name: str | None) -> None:
    """UserError unless `name` is None or a sweep of `store` (an unknown name would
    otherwise select nothing, silently)."""
    if name is None:
        return
    names = store.sweep_names()
    if name not in names:
        raise unknown_value("sweep", name, names, store.name)


def empty_selection(
    sweep: str | None, status: str | None, lane: str | None, arm: str | None
) -> str:
    """The one line that says a valid selection holds no runs, naming the selection."""
    fields = [f"{name} {value}" for name, value in (("lane", lane), ("arm", arm)) if value]
    which = f"{status} runs" if status else "runs"
    with_fields = f" with {', '.join(fields)}" if fields else ""
    return f"no {which}{with_fields} in {_where(sweep)}"


def _seconds_since(now: datetime, value: Any) -> float | None:
    then = parse_time(value)
    return None if then is None else round((now - then).total_seconds(), 1)


def _where_sweep(sweep: str | None) -> tuple[str, list[str]]:
    return (" WHERE sweep = {p}", [sweep]) if sweep is not None else ("", [])


def _where(sweep: str | None) -> str:
    return f"sweep {sweep}" if sweep else "the store"
