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

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jepardy.store.states import RunStatus


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
