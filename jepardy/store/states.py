"""What readers and writers of the store share, without SQLAlchemy: the schema version, the
run states, the records that move a run between them, and the runs table's key columns.

`jepardy status`, `runs` and `report` read a SQLite store through the standard library alone
(jepardy.store.reader), so nothing here may import SQLAlchemy or pandas; the tables
themselves are in jepardy.store.models.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from jepardy.errors import UserError

SCHEMA_VERSION = 3


def check_readable(version: int | None, name: str) -> None:
    """UserError unless a reader can read database `name`, whose schema is at `version`
    (None: it holds no jepardy tables). Readers never upgrade: a writer does."""
    if version is None:
        raise UserError(f"database {name} holds no jepardy runs")
    if version != SCHEMA_VERSION:
        raise UserError(
            f"database {name} is at schema version {version}; a writing command "
            f"(jepardy sweep, jepardy ingest) upgrades it to {SCHEMA_VERSION}"
        )


def judge_version(versions: list[int], name: str, target: int) -> int | None:
    """The schema version a database's `schema_info` rows hold, None when it has none yet
    (a fresh database). UserError, naming the database `name`, when there are several rows or
    the version is neither `target` nor an older one (every older version has an upgrade
    step: jepardy.store.migrations)."""
    if not versions:
        return None
    if len(versions) == 1 and 1 <= versions[0] <= target:
        return versions[0]
    found = ", ".join(map(str, versions))
    newer = len(versions) == 1 and versions[0] > target
    why = "a newer jepardy wrote it; upgrade jepardy" if newer else "no upgrade starts there"
    raise UserError(
        f"database {name} has schema version {found}; this jepardy reads version {target} ({why})"
    )


class RunStatus(enum.StrEnum):
    """The one state enum of a run; every backend's states are mapped onto it at the edge."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"  # its orchestrator stopped it (Ctrl-C) or died
    CANCELLED = "cancelled"  # stopped on purpose from outside (`jepardy cancel`, scancel)


TERMINAL = frozenset(
    {
        RunStatus.DONE,
        RunStatus.FAILED,
        RunStatus.TIMEOUT,
        RunStatus.INTERRUPTED,
        RunStatus.CANCELLED,
    }
)
# A run may be (re)claimed from these states; never from running (someone holds it) or done.
CLAIMABLE = (TERMINAL - {RunStatus.DONE}) | {RunStatus.PENDING}


@dataclass(frozen=True)
class Claim:
    """A running run's holder: the orchestrator's host and pid, the executor that runs its
    job and the job's id there (None until recorded), its run directory, its heartbeat."""

    run_id: str
    host: str | None
    pid: int | None
    executor: str | None
    job_id: str | None
    run_dir: str | None
    heartbeat_at: datetime | None


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, as the store records it: the verdict (a terminal RunStatus), its
    one-line reason, the job's exit code, what the run wrote (result.json, metrics.jsonl) and
    the end of its log."""

    status: RunStatus
    reason: str = ""
    exit_code: int | None = None
    result: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    log_tail: str = ""

    def __post_init__(self) -> None:
        # A status given as its value ("done") is held as the enum member.
        object.__setattr__(self, "status", RunStatus(self.status))

    def with_status(self, status: RunStatus, reason: str) -> RunOutcome:
        return replace(self, status=status, reason=reason)


@dataclass(frozen=True)
class JobRecord:
    """What an executor said about a run's job: its id, its state in the executor's own
    words (Slurm's PENDING, RUNNING, ...), where it runs (a host or a Slurm node list) and,
    for a local job, its CUDA_VISIBLE_DEVICES. None keeps the recorded value."""

    run_id: str
    job_id: str
    state: str | None = None
    nodes: str | None = None
    devices: str | None = None


# The runs columns that say which run a row is (RunIdentity's fields, id for run_id); every
# table of runs starts with them.
# An orchestrator refreshes its runs' heartbeat this often; a running run whose heartbeat is
# older than STALE_AFTER_S belongs to an orchestrator that is gone (the tracker takes such
# runs over; `jepardy status` says so). Here, not in launch, because readers need it too.
HEARTBEAT_S = 10.0
STALE_AFTER_S = 6 * HEARTBEAT_S

IDENTITY_COLUMNS = ("id", "sweep", "lane", "arm", "variant", "match", "seed")

# result.json field -> column type it is coerced to.
RESULT_FIELDS: dict[str, type] = {
    "val_bpb": float,
    "val_loss": float,
    "prequant_val_bpb": float,
    "prequant_val_loss": float,
    "artifact_bytes": int,
    "model_bytes": int,
    "code_bytes": int,
    "under_cap": bool,
    "steps": int,
    "train_time_s": float,
    "eval_time_s": float,
    "tokens_per_s": float,
    "jepa_loss": float,
    "jepa_pred_std": float,
    "code_sha256": str,
}
