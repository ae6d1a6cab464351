"""What a store holds right now: counts per state, the running jobs, a filtered runs list.

Plain pandas over `Database.runs_frame()`; the CLI's `status` and `runs` print these.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from jepardy.store.models import IDENTITY_COLUMNS, RunStatus

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


def running_jobs(runs: pd.DataFrame, now: datetime | None = None) -> pd.DataFrame:
    """The running runs: who holds them (host and pid of the orchestrator), their job (its
    executor, id there, state in the executor's words, nodes, local GPUs), for how long, and
    seconds since their last heartbeat."""
    now = now or datetime.now(UTC)
    running = runs[runs["status"] == RunStatus.RUNNING.value]
    return pd.DataFrame(
        {
            "id": running["id"],
            "sweep": running["sweep"],
            "lane": running["lane"],
            "arm": running["arm"],
            "seed": running["seed"],
            "host": running["host"],
            "pid": running["pid"],
            "executor": running["executor"],
            "job_id": running["job_id"],
            "job_state": running["job_state"],
            "job_nodes": running["job_nodes"],
            "devices": running["devices"],
            "elapsed_s": (now - running["started_at"]).dt.total_seconds().round(1),
            "heartbeat_age_s": (now - running["heartbeat_at"]).dt.total_seconds().round(1),
        }
    )


def filter_runs(
    runs: pd.DataFrame,
    *,
    sweep: str | None = None,
    status: str | None = None,
    lane: str | None = None,
    arm: str | None = None,
) -> pd.DataFrame:
    """The runs matching every given field, RUNS_COLUMNS only, in registration order."""
    mask = pd.Series(True, index=runs.index)
    for column, value in (("sweep", sweep), ("status", status), ("lane", lane), ("arm", arm)):
        if value is not None:
            mask &= runs[column] == value
    return runs.loc[mask, RUNS_COLUMNS]
