"""The sweep database's tables as typed SQLAlchemy models, and the run states.

Only the orchestrator writes here (docs/architecture.md); jobs write `result.json` and
`metrics.jsonl` into their run directory and the orchestrator records them when a job ends.

Tables (SCHEMA_VERSION 3; migrations.py upgrades older databases):
- `schema_info`: one row, the schema version the tables are in (created, or upgraded to).
- `sweeps`: one row per sweep name, with the spec text and its sha256.
- `runs`: one row per planned run (id = RunIdentity.run_id), its status, provenance, and the
  result fields as typed columns, so `pandas.read_sql("runs", engine)` can filter on
  `jepa_weight`, `val_bpb`, ... without parsing JSON. `params`, `command` and `result` are
  JSON kept as text (opaque provenance).
- `metrics`: one row per (run, step, name) from `metrics.jsonl`; a non-finite value is stored
  as NULL with `kind` saying which ('nan', 'inf', '-inf'), because SQLite turns NaN into NULL
  and PostgreSQL JSON refuses it.
- `promotions`: one row per promotion decision (a sweep's lane taking an earlier lane's
  winners), made once: the source lane, the rule and top it applied, when.
- `promotion_candidates`: its evidence, one row per candidate (arm, variant, match of the
  source lane): n, delta, interval, p-values, rank, selected or not and why, the runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 3


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


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone storage, so values are stored as naive UTC and given tzinfo=UTC
    when read back; a naive datetime is refused on the way in rather than guessed at.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; jepardy stores UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class SchemaInfo(Base):
    __tablename__ = "schema_info"

    version: Mapped[int] = mapped_column(primary_key=True)


class Sweep(Base):
    __tablename__ = "sweeps"

    name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    spec_path: Mapped[str] = mapped_column(sa.Text)
    spec_sha256: Mapped[str] = mapped_column(sa.String(64))
    spec_text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


_STATUS_TYPE = sa.Enum(
    RunStatus,
    name="run_status",
    native_enum=False,
    create_constraint=True,
    length=16,
    # Store the lower-case values ("done"), not the member names ("DONE").
    values_callable=lambda members: [m.value for m in members],
    validate_strings=True,
)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        sa.Index("ix_runs_sweep_lane_arm", "sweep", "lane", "arm"),
        sa.Index("ix_runs_status", "status"),
    )

    # --- identity (from RunIdentity) ---
    id: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    sweep: Mapped[str] = mapped_column(sa.ForeignKey("sweeps.name"))
    lane: Mapped[str] = mapped_column(sa.String(200))
    arm: Mapped[str] = mapped_column(sa.String(200))
    variant: Mapped[str] = mapped_column(sa.Text)
    match: Mapped[str] = mapped_column(sa.Text)
    seed: Mapped[int]
    params: Mapped[str] = mapped_column(sa.Text)  # canonical JSON
    # Registration order across the whole store: reports list arms in the order planned.
    seq: Mapped[int]
    # Flat copies of the params reports filter on most.
    jepa_weight: Mapped[float]
    ema: Mapped[bool]
    wallclock_s: Mapped[float | None]
    nproc: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(32))

    # --- state ---
    status: Mapped[RunStatus] = mapped_column(_STATUS_TYPE)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    exit_code: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # --- provenance ---
    host: Mapped[str | None] = mapped_column(sa.String(255))
    pid: Mapped[int | None]  # the orchestrator holding the run
    # The run's job: which executor runs it ("local", "slurm"), its id there (a local job's
    # process group id, a Slurm job id), where it runs (host or Slurm node list), and its
    # state in the executor's words as last seen; NULL before it is submitted.
    executor: Mapped[str | None] = mapped_column(sa.String(16))
    job_id: Mapped[str | None] = mapped_column(sa.String(64))
    job_nodes: Mapped[str | None] = mapped_column(sa.Text)
    job_state: Mapped[str | None] = mapped_column(sa.String(32))
    devices: Mapped[str | None] = mapped_column(sa.String(255))  # a local job's GPUs
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    run_dir: Mapped[str | None] = mapped_column(sa.Text)
    command: Mapped[str | None] = mapped_column(sa.Text)  # JSON argv
    git_commit: Mapped[str | None] = mapped_column(sa.String(64))
    # The run this one was derived from (a re-export of its final weights); NULL otherwise.
    parent_run: Mapped[str | None] = mapped_column(sa.String(16))

    # --- results (copied from result.json; non-finite floats are NULL) ---
    val_bpb: Mapped[float | None]
    val_loss: Mapped[float | None]
    prequant_val_bpb: Mapped[float | None]
    prequant_val_loss: Mapped[float | None]
    artifact_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    model_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    code_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    under_cap: Mapped[bool | None]
    steps: Mapped[int | None]
    train_time_s: Mapped[float | None]
    eval_time_s: Mapped[float | None]
    tokens_per_s: Mapped[float | None]
    jepa_loss: Mapped[float | None]
    jepa_pred_std: Mapped[float | None]
    code_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    log_tail: Mapped[str | None] = mapped_column(sa.Text)
    result: Mapped[str | None] = mapped_column(sa.Text)  # the whole result.json


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('finite', 'nan', 'inf', '-inf')", name="ck_metrics_kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(200))
    value: Mapped[float | None]
    kind: Mapped[str] = mapped_column(sa.String(8))


class PromotionDecision(Base):
    __tablename__ = "promotions"
    __table_args__ = (sa.ForeignKeyConstraint(["sweep"], ["sweeps.name"]),)

    sweep: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    lane: Mapped[str] = mapped_column(sa.String(200), primary_key=True)  # the promoted lane
    source_lane: Mapped[str] = mapped_column(sa.String(200))
    rule: Mapped[str] = mapped_column(sa.Text)  # as written; "" when top alone decides
    top: Mapped[int | None]
    note: Mapped[str] = mapped_column(sa.Text)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PromotionCandidate(Base):
    __tablename__ = "promotion_candidates"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["sweep", "lane"], ["promotions.sweep", "promotions.lane"], ondelete="CASCADE"
        ),
    )

    sweep: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    lane: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    arm: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    variant: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    match: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    position: Mapped[int]  # the source lane's order
    n: Mapped[int]
    control_n: Mapped[int]
    delta_bpb: Mapped[float | None]
    ci_low: Mapped[float | None]
    ci_high: Mapped[float | None]
    p_welch: Mapped[float | None]
    p_holm: Mapped[float | None]
    p_margin: Mapped[float | None]
    verdict: Mapped[str] = mapped_column(sa.Text)
    rank: Mapped[int | None]  # 1 = best delta among those passing the rule
    selected: Mapped[bool]
    reason: Mapped[str] = mapped_column(sa.Text)
    run_ids: Mapped[str] = mapped_column(sa.Text)  # JSON list: the arm's and control's runs


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
