"""What a store holds right now: counts per state, the running jobs, a filtered runs list.

Plain pandas over `Database.runs_frame()`; the CLI's `status` and `runs` print these.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from jepardy.errors import UserError
from jepardy.store.engine import Database
from jepardy.store.models import Sweep
from jepardy.store.states import IDENTITY_COLUMNS, STALE_AFTER_S, RunStatus

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


def status_counts(runs: pd.DataFrame, every_state: bool = True) -> pd.DataFrame:
    """One row per sweep, one column per state in lifecycle order (every state, or with
    `every_state` False only those some sweep has runs in), plus total."""
    counts = pd.crosstab(runs["sweep"], runs["status"]).reindex(columns=STATES, fill_value=0)
    if not every_state:
        counts = counts.loc[:, (counts != 0).any()]
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


def running_jobs(
    runs: pd.DataFrame, now: datetime | None = None, specs: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The running runs: their state (`running`, or stale: see `running_state`), who holds
    them (host and pid of the orchestrator), their job (its executor, id there, state in the
    executor's words, nodes, local GPUs), for how long, and seconds since their last
    heartbeat. `specs`: each sweep's spec path, named in the stale state's advice."""
    now = now or datetime.now(UTC)
    running = runs[runs["status"] == RunStatus.RUNNING.value]
    age = (now - running["heartbeat_at"]).dt.total_seconds().round(1)
    specs = specs or {}
    states = [
        running_state(None if pd.isna(a) else a, specs.get(str(sweep), "SPEC"))
        for a, sweep in zip(age.tolist(), running["sweep"].tolist(), strict=True)
    ]
    return pd.DataFrame(
        {
            "id": running["id"],
            "state": pd.Series(states, index=running.index, dtype=object),
            "sweep": running["sweep"],
            "lane": running["lane"],
            "arm": running["arm"],
            "variant": running["variant"],
            "match": running["match"],
            "seed": running["seed"],
            "host": running["host"],
            "pid": running["pid"],
            "executor": running["executor"],
            "job_id": running["job_id"],
            "job_state": running["job_state"],
            "job_nodes": running["job_nodes"],
            "devices": running["devices"],
            "elapsed_s": (now - running["started_at"]).dt.total_seconds().round(1),
            "heartbeat_age_s": age,
        }
    )


def running_state(heartbeat_age_s: float | None, spec: str) -> str:
    """`running`, or, when the run's orchestrator stopped beating (heartbeat older than
    STALE_AFTER_S, or none), that it is stale and how to take it over: the store still says
    running, but nothing will finish it until a sweep of its spec resumes it."""
    if heartbeat_age_s is not None and heartbeat_age_s <= STALE_AFTER_S:
        return "running"
    since = (
        "no heartbeat" if heartbeat_age_s is None else f"no heartbeat for {heartbeat_age_s:.0f} s"
    )
    return f"running (stale: {since}; resume with jepardy sweep {spec})"


def sweep_specs(database: Database) -> dict[str, str]:
    """Each sweep's spec path, as its last `jepardy sweep` gave it."""
    with database.engine.connect() as connection:
        rows = connection.execute(sa.select(Sweep.name, Sweep.spec_path)).all()
    return {name: path for name, path in rows}


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


def require_sweep(database: Database, name: str | None) -> None:
    """UserError unless `name` is None or a sweep of `database` (an unknown name would
    otherwise select nothing, silently)."""
    if name is None:
        return
    names = database.sweep_names()
    if name not in names:
        raise unknown_value("sweep", name, names, database.name)


def filter_runs(
    runs: pd.DataFrame,
    *,
    sweep: str | None = None,
    status: str | None = None,
    lane: str | None = None,
    arm: str | None = None,
) -> pd.DataFrame:
    """The runs matching every given field, RUNS_COLUMNS only, in registration order.

    UserError for a status that is not a RunStatus, and for a lane or arm no run has (the
    closest named): a typo must not read as "no such runs"."""
    if status is not None and status not in STATES:
        raise unknown_value("status", status, STATES, "jepardy's run states", "statuses")
    mask = pd.Series(True, index=runs.index)
    for column, value in (("sweep", sweep), ("status", status), ("lane", lane), ("arm", arm)):
        if value is None:
            continue
        if column in ("lane", "arm"):
            known = sorted({str(name) for name in runs[column].unique()})
            if value not in known:
                raise unknown_value(column, value, known, _where(sweep))
        mask &= runs[column] == value
    return runs.loc[mask, RUNS_COLUMNS]


def empty_selection(
    sweep: str | None, status: str | None, lane: str | None, arm: str | None
) -> str:
    """The one line that says a valid selection holds no runs, naming the selection."""
    fields = [f"{name} {value}" for name, value in (("lane", lane), ("arm", arm)) if value]
    which = f"{status} runs" if status else "runs"
    with_fields = f" with {', '.join(fields)}" if fields else ""
    return f"no {which}{with_fields} in {_where(sweep)}"


def _where(sweep: str | None) -> str:
    return f"sweep {sweep}" if sweep else "the store"
