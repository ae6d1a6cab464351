"""The sweep database: typed SQLAlchemy models and the few transitions the orchestrator makes.

Only the orchestrator writes here (docs/architecture.md); jobs write `result.json` and
`metrics.jsonl` into their run directory and the orchestrator records them when a job ends.

Tables (SCHEMA_VERSION 2; migrations.py upgrades older databases):
- `schema_info`: one row, the schema version the tables are in (created, or upgraded to).
- `sweeps`: one row per sweep name, with the spec text and its sha256.
- `runs`: one row per planned run (id = PlannedRun.run_id), its status, provenance, and the
  result fields as typed columns, so `pandas.read_sql("runs", engine)` can filter on
  `jepa_weight`, `val_bpb`, ... without parsing JSON. `params`, `command` and `result` are
  JSON kept as text (opaque provenance).
- `metrics`: one row per (run, step, name) from `metrics.jsonl`; a non-finite value is stored
  as NULL with `kind` saying which ('nan', 'inf', '-inf'), because SQLite turns NaN into NULL
  and PostgreSQL JSON refuses it.

SQLite is used the way concurrent writers need it (design/orchestrator.md, "Storage"): WAL,
a busy timeout, `synchronous=NORMAL`, foreign keys on, and write transactions opened with
`BEGIN IMMEDIATE`, so a writer waits for the lock up front instead of failing with SQLITE_BUSY
when a deferred read transaction tries to upgrade.

PostgreSQL (any SQLAlchemy URL, e.g. `postgresql+psycopg://user:pw@host/db`) gets the same
discipline: a write transaction first takes a transaction-level advisory lock
(`pg_advisory_xact_lock`, waiting at most the busy timeout via `SET LOCAL lock_timeout`), so
writers queue instead of racing on read-then-write steps (registration order, a sweep's first
row, creating the schema when many processes open a fresh database at once) and can neither
deadlock nor fail serialization against each other. Reads never wait for writers.

On both backends every transient lock error therefore happens while a transaction takes its
lock, before any of its statements run; that step is retried `_LOCK_ATTEMPTS` times with
jittered exponential backoff. A lock still held after that becomes a one-line `UserError`
naming the database.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jepardy.errors import UserError
from jepardy.store import migrations

SCHEMA_VERSION = 2
DEFAULT_BUSY_TIMEOUT_MS = 30_000

# Execution option that makes the "begin" listeners take the write lock (SQLite: BEGIN
# IMMEDIATE; PostgreSQL: the advisory lock _PG_WRITE_LOCK).
_WRITE_OPTION = "jepardy_write"
# Bound on the number of ids in one IN (...) clause (SQLite limits bound parameters).
_IN_CHUNK = 500
# Taking a transaction's lock is tried this many times in all, with jittered exponential
# backoff from _BACKOFF_S seconds between tries, before the lock error becomes a UserError.
_LOCK_ATTEMPTS = 4
_BACKOFF_S = 0.1
# The PostgreSQL advisory lock every write transaction takes first (its BEGIN IMMEDIATE).
_PG_WRITE_LOCK = int.from_bytes(b"jepardy", "big")
# PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock, lock timeout.
_PG_TRANSIENT = frozenset({"40001", "40P01", "55P03"})

_log = logging.getLogger(__name__)


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


class TransitionError(UserError):
    """A run cannot make the requested transition (for example it is already running)."""


class RunLike(Protocol):
    """What the store needs of a planned run (jepardy.spec.parse.PlannedRun satisfies it)."""

    @property
    def run_id(self) -> str: ...
    @property
    def sweep(self) -> str: ...
    @property
    def lane(self) -> str: ...
    @property
    def arm(self) -> str: ...
    @property
    def variant(self) -> str: ...
    @property
    def match(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def nproc(self) -> int: ...
    @property
    def kind(self) -> str: ...


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
class JobRecord:
    """What an executor said about a run's job: its id, its state in the executor's own
    words (Slurm's PENDING, RUNNING, ...), where it runs (a host or a Slurm node list) and,
    for a local job, its CUDA_VISIBLE_DEVICES. None keeps the recorded value."""

    run_id: str
    job_id: str
    state: str | None = None
    nodes: str | None = None
    devices: str | None = None


@dataclass(frozen=True)
class StoredRun:
    """A run read back from the store, with PlannedRun's fields."""

    run_id: str
    sweep: str
    lane: str
    arm: str
    variant: str
    match: str
    seed: int
    params: dict[str, Any]
    nproc: int
    kind: str


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

    # --- identity (from PlannedRun) ---
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


# result.json field -> column type it is coerced to.
_RESULT_FIELDS: dict[str, type] = {
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


def _claim_columns() -> tuple[sa.ColumnElement[Any], ...]:
    """The runs columns of a Claim, in its field order."""
    return (Run.id, Run.host, Run.pid, Run.executor, Run.job_id, Run.run_dir, Run.heartbeat_at)


def _same(column: sa.ColumnElement[Any], value: Any) -> sa.ColumnElement[bool]:
    """column = value, where a None value matches NULL."""
    return column.is_(None) if value is None else column == value


def _now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: Any) -> str:
    """Canonical JSON text (sorted keys, no whitespace), as run identity uses."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _coerce(run_id: str, name: str, value: Any, to: type) -> Any:
    """One result.json field as its column's type; None for absent or non-finite values."""
    if value is None:
        return None
    bad_type = isinstance(value, str) != (to is str) or isinstance(value, dict | list)
    if bad_type:
        raise UserError(
            f"result.json of run {run_id}: field {name!r} should be {to.__name__}, found {value!r}"
        )
    if to is float:
        value = float(value)
        return value if math.isfinite(value) else None
    return to(value)


def _result_columns(run_id: str, result: dict[str, Any] | None) -> dict[str, Any]:
    """The typed result columns for one run; every column is set (None when absent)."""
    result = result or {}
    columns = {
        name: _coerce(run_id, name, result.get(name), to) for name, to in _RESULT_FIELDS.items()
    }
    columns["result"] = None if not result else json.dumps(result, sort_keys=True)
    return columns


def _metric_row(run_id: str, metric: dict[str, Any]) -> dict[str, Any]:
    """One metrics.jsonl object as a metrics row; a missing value counts as NaN."""
    raw = metric.get("value")
    value = math.nan if raw is None else float(raw)
    if math.isnan(value):
        kind = "nan"
    elif math.isinf(value):
        kind = "inf" if value > 0 else "-inf"
    else:
        kind = "finite"
    return {
        "run_id": run_id,
        "step": int(metric["step"]),
        "name": str(metric["name"]),
        "value": value if kind == "finite" else None,
        "kind": kind,
    }


def _run_row(run: RunLike, seq: int, git_commit: str | None, now: datetime) -> dict[str, Any]:
    """A pending runs row for one planned run."""
    params = dict(run.params)
    wallclock = params.get("wallclock_s")
    return {
        "id": run.run_id,
        "sweep": run.sweep,
        "lane": run.lane,
        "arm": run.arm,
        "variant": run.variant,
        "match": run.match,
        "seed": int(run.seed),
        "params": _dumps(params),
        "seq": seq,
        "jepa_weight": float(params.get("jepa_weight", 0.0)),
        "ema": bool(params.get("ema", False)),
        "wallclock_s": None if wallclock is None else float(wallclock),
        "nproc": int(run.nproc),
        "kind": run.kind,
        "status": RunStatus.PENDING,
        "reason": "",
        "created_at": now,
        "git_commit": git_commit,
        "parent_run": getattr(run, "parent_run", None),
    }


def _is_transient(exc: DBAPIError) -> bool:
    """Whether `exc` is lock contention that a later try may not meet: SQLite busy or locked,
    a PostgreSQL serialization failure, deadlock or lock timeout."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _PG_TRANSIENT:
        return True
    if getattr(orig, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return True
    return "database is locked" in str(orig).lower()


def _backoff_s(attempt: int) -> float:
    """Seconds to sleep after failed try `attempt` (1-based): half of an exponentially growing
    delay plus a random part of the other half, so that waiting writers spread out."""
    delay = _BACKOFF_S * 2 ** (attempt - 1)
    return delay / 2 + random.uniform(0, delay / 2)


def _sqlite_url(url: str | Path) -> str:
    """A URL for `url`: anything without '://' is a file path for SQLite."""
    text = str(url)
    if "://" in text:
        return text
    return f"sqlite:///{text}"


def _install_sqlite_hooks(engine: sa.Engine, busy_timeout_ms: int) -> None:
    """Pragmas on every connection, and BEGIN under our control (the pysqlite recipe).

    pysqlite emits its own deferred BEGIN lazily before the first write, which defeats both
    BEGIN IMMEDIATE and transactional DDL; switching it to autocommit and emitting BEGIN
    from SQLAlchemy's "begin" event puts the transaction boundaries where SQLAlchemy has them.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching to WAL itself needs the lock.
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _install_postgresql_hooks(engine: sa.Engine, busy_timeout_ms: int) -> None:
    """Write transactions take the store's advisory lock first, waiting at most the busy
    timeout (a lock timeout, SQLSTATE 55P03, is retried like SQLite's busy)."""

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        if connection.get_execution_options().get(_WRITE_OPTION, False):
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(busy_timeout_ms)}")
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})")


class Store:
    """The sweep database. Every method is one short transaction.

    Build it with `open_store`; `engine` is public so pandas users can `read_sql` any table.
    """

    def __init__(self, engine: sa.Engine, name: str, busy_timeout_ms: int) -> None:
        self.engine = engine
        self.name = name  # what error messages call the database (file path or URL)
        self._busy_timeout_ms = busy_timeout_ms
        self._write_engine = engine.execution_options(**{_WRITE_OPTION: True})

    # --- plumbing ---

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[Session]:
        """One transaction, committed when the block ends, rolled back when it raises.

        A write transaction holds the database's write lock from the start (BEGIN IMMEDIATE,
        the PostgreSQL advisory lock); taking a lock is retried (`_begin`), the block runs
        once. A lock error that outlasts the retries becomes a one-line UserError.
        """
        try:
            with self._begin(write) as session:
                yield session
                session.commit()
        except OperationalError as exc:
            if _is_transient(exc):
                raise UserError(
                    f"database {self.name} is locked by another process (busy timeout "
                    f"{self._busy_timeout_ms} ms); try again when it is free"
                ) from exc
            raise

    def _begin(self, write: bool) -> Session:
        """A session whose transaction has begun (and for a write, holds the write lock).

        Transient lock errors while beginning are retried with jittered backoff; the last
        one is raised.
        """
        bind = self._write_engine if write else self.engine
        for attempt in range(1, _LOCK_ATTEMPTS + 1):
            session = Session(bind, expire_on_commit=False)
            try:
                session.begin()
                session.connection()  # runs the "begin" hooks: BEGIN IMMEDIATE, advisory lock
                return session
            except OperationalError as exc:
                session.close()
                if attempt == _LOCK_ATTEMPTS or not _is_transient(exc):
                    raise
                delay = _backoff_s(attempt)
                _log.info("database %s busy (try %d); again in %.2f s", self.name, attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _ensure_schema(self) -> None:
        """Create the tables and the version row once, upgrade an older schema
        (migrations.py), refuse a newer one; then add columns the models have and the
        database lacks (`_add_missing_columns`).

        Every step runs under the write lock, and the upgrade reads the version again under
        its own, so many processes opening a fresh or an old database at once create or
        upgrade it once.
        """
        with self._session(write=True) as session:
            connection = session.connection()
            Base.metadata.create_all(connection)
            version = migrations.read_version(connection, self.name, SCHEMA_VERSION)
            if version is None:
                session.add(SchemaInfo(version=SCHEMA_VERSION))
            elif version == SCHEMA_VERSION:
                _add_missing_columns(connection)
        if version is not None and version < SCHEMA_VERSION:
            # Its own transaction: on SQLite it needs foreign keys off, which a connection
            # can only switch before its transaction begins.
            migrations.upgrade(self._write_engine, self.name, SCHEMA_VERSION)
            with self._session(write=True) as session:
                _add_missing_columns(session.connection())

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # --- sweeps ---

    def upsert_sweep(self, name: str, spec_path: str, spec_text: str) -> None:
        """Record a sweep's spec; a second call with the same name replaces path and text."""
        digest = hashlib.sha256(spec_text.encode()).hexdigest()
        now = _now()
        with self._session(write=True) as session:
            sweep = session.get(Sweep, name)
            if sweep is None:
                sweep = Sweep(name=name, created_at=now)
                session.add(sweep)
            sweep.spec_path = spec_path
            sweep.spec_text = spec_text
            sweep.spec_sha256 = digest
            sweep.updated_at = now

    def spec_text(self, name: str) -> str | None:
        """The spec text a sweep last ran with; None for an unknown sweep."""
        with self._session(write=False) as session:
            return session.scalar(sa.select(Sweep.spec_text).where(Sweep.name == name))

    def sweep_names(self) -> list[str]:
        """Every sweep name, sorted."""
        with self._session(write=False) as session:
            return list(session.scalars(sa.select(Sweep.name).order_by(Sweep.name)))

    # --- runs ---

    def register_runs(self, runs: Iterable[RunLike], git_commit: str | None) -> None:
        """Insert a pending row for every run id not yet in the store.

        Existing rows are never touched (their status and results stand). Every run's sweep
        must have been recorded with `upsert_sweep` first (LookupError otherwise).
        """
        planned = {run.run_id: run for run in runs}  # first occurrence of an id wins
        if not planned:
            return
        sweeps = sorted({run.sweep for run in planned.values()})
        with self._session(write=True) as session:
            known = set(session.scalars(sa.select(Sweep.name).where(Sweep.name.in_(sweeps))))
            if missing := [name for name in sweeps if name not in known]:
                raise LookupError(f"sweeps {missing} are not recorded; call upsert_sweep first")
            existing = set(session.scalars(sa.select(Run.id).where(Run.sweep.in_(sweeps))))
            seq = session.scalar(sa.select(sa.func.coalesce(sa.func.max(Run.seq), 0))) or 0
            now = _now()
            rows = []
            for run in planned.values():
                if run.run_id not in existing:
                    seq += 1
                    rows.append(_run_row(run, seq, git_commit, now))
            if rows:
                session.execute(sa.insert(Run), rows)

    def statuses(self, run_ids: Iterable[str]) -> dict[str, RunStatus]:
        """The status of each given run id that is in the store (unknown ids are left out)."""
        ids = list(dict.fromkeys(run_ids))
        found: dict[str, RunStatus] = {}
        with self._session(write=False) as session:
            for chunk in _chunks(ids):
                rows = session.execute(sa.select(Run.id, Run.status).where(Run.id.in_(chunk)))
                found.update({run_id: RunStatus(status) for run_id, status in rows})
        return found

    def running_claims(self, run_ids: Iterable[str]) -> list[Claim]:
        """Who holds each given run that is running, and since when it was last seen."""
        ids = list(dict.fromkeys(run_ids))
        claims: list[Claim] = []
        with self._session(write=False) as session:
            for chunk in _chunks(ids):
                rows = session.execute(
                    sa.select(*_claim_columns()).where(
                        Run.id.in_(chunk), Run.status == RunStatus.RUNNING
                    )
                )
                claims.extend(Claim(*row) for row in rows)
        return claims

    def mark_running(
        self,
        run_id: str,
        host: str,
        pid: int,
        run_dir: str,
        command: list[str],
        executor: str = "local",
    ) -> None:
        """Claim a run for the orchestrator (host, pid) that submits it to `executor`:
        compare-and-set to running from pending or any ended state but done.

        Clears the results and the job of an earlier attempt. Raises TransitionError when the
        run is running (another orchestrator holds it) or done, KeyError when the id is unknown.
        """
        columns = dict.fromkeys([*_RESULT_FIELDS, "result", "log_tail", "exit_code"])
        statement = (
            sa.update(Run)
            .where(Run.id == run_id, Run.status.in_(CLAIMABLE))
            .values(
                status=RunStatus.RUNNING,
                reason="",
                started_at=_now(),
                heartbeat_at=_now(),
                finished_at=None,
                host=host,
                pid=pid,
                executor=executor,
                job_id=None,
                job_nodes=None,
                job_state=None,
                devices=None,
                attempts=Run.attempts + 1,
                run_dir=run_dir,
                command=json.dumps(list(command)),
                **columns,
            )
            .execution_options(synchronize_session=False)
        )
        with self._session(write=True) as session:
            if session.execute(statement).rowcount == 1:
                return
            current = session.scalar(sa.select(Run.status).where(Run.id == run_id))
        if current is None:
            raise KeyError(f"run {run_id} is not in database {self.name}")
        raise TransitionError(f"run {run_id} is {current}; it cannot be started again")

    def adopt(self, claim: Claim, host: str, pid: int) -> bool:
        """Take over a running run from the orchestrator in `claim` (one that is gone):
        compare-and-set its holder to (host, pid). False when the run has changed hands or
        ended meanwhile (another orchestrator adopted it first, or it was cancelled)."""
        statement = (
            sa.update(Run)
            .where(
                Run.id == claim.run_id,
                Run.status == RunStatus.RUNNING,
                _same(Run.host, claim.host),
                _same(Run.pid, claim.pid),
            )
            .values(host=host, pid=pid, heartbeat_at=_now())
            .execution_options(synchronize_session=False)
        )
        with self._session(write=True) as session:
            return session.execute(statement).rowcount == 1

    def set_jobs(self, jobs: Sequence[JobRecord]) -> None:
        """Record jobs' ids, states, nodes and devices on their runs, in one transaction (a
        scheduler starting 8 jobs at once writes once, not 8 times)."""
        if not jobs:
            return
        with self._session(write=True) as session:
            for job in jobs:
                values: dict[str, Any] = {"job_id": job.job_id}
                for column, value in (
                    ("job_state", job.state),
                    ("job_nodes", job.nodes),
                    ("devices", job.devices),
                ):
                    if value is not None:
                        values[column] = value
                session.execute(
                    sa.update(Run)
                    .where(Run.id == job.run_id)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )

    def heartbeat(self, run_ids: Sequence[str], host: str, pid: int) -> list[str]:
        """Refresh the heartbeat of the given runs held by (host, pid); returns those of them
        it no longer holds (cancelled, or taken over), whose jobs the caller should stop."""
        now = _now()
        held: set[str] = set()
        with self._session(write=True) as session:
            for chunk in _chunks(list(run_ids)):
                mine = (
                    Run.id.in_(chunk),
                    Run.status == RunStatus.RUNNING,
                    Run.host == host,
                    Run.pid == pid,
                )
                session.execute(
                    sa.update(Run)
                    .where(*mine)
                    .values(heartbeat_at=now)
                    .execution_options(synchronize_session=False)
                )
                held.update(session.scalars(sa.select(Run.id).where(*mine)))
        return [run_id for run_id in run_ids if run_id not in held]

    def cancel_running(self, run_ids: Iterable[str], reason: str = "cancelled") -> list[Claim]:
        """Mark the given runs that are running cancelled, in one transaction; returns their
        claims (as they were), so the caller can stop their jobs."""
        ids = list(dict.fromkeys(run_ids))
        claims: list[Claim] = []
        with self._session(write=True) as session:
            for chunk in _chunks(ids):
                running = (Run.id.in_(chunk), Run.status == RunStatus.RUNNING)
                rows = session.execute(sa.select(*_claim_columns()).where(*running))
                claims.extend(Claim(*row) for row in rows)
                session.execute(
                    sa.update(Run)
                    .where(*running)
                    .values(status=RunStatus.CANCELLED, reason=reason, finished_at=_now())
                    .execution_options(synchronize_session=False)
                )
        return claims

    def record_result(
        self,
        run_id: str,
        *,
        status: RunStatus | str,
        reason: str = "",
        exit_code: int | None = None,
        result: dict[str, Any] | None,
        metrics: Iterable[dict[str, Any]],
        log_tail: str = "",
        holder: tuple[str, int] | None = None,
        job_state: str | None = None,
    ) -> bool:
        """Record how a run ended, in one transaction; returns whether it was recorded.

        `status` must be terminal; it is the caller's verdict and may differ from
        result["status"] (a timeout writes no result). The typed result columns are all set
        from `result` (None where a field is absent or non-finite), the whole dict is kept as
        JSON, and the run's metrics rows are replaced by `metrics` (objects with step, name,
        value). With `holder` (an orchestrator's host and pid) a verdict other than done is
        recorded only while that orchestrator still holds the running run, so a run cancelled
        or taken over meanwhile keeps its row; a done result is always recorded (a real result
        beats a verdict). `job_state`: the executor's last word on the job, recorded with it.
        KeyError when the run id is unknown.
        """
        final = RunStatus(status)
        if final not in TERMINAL:
            raise ValueError(f"record_result needs a terminal status, got {final}")
        values = _result_columns(run_id, result)
        rows = [_metric_row(run_id, metric) for metric in metrics]
        where = [Run.id == run_id]
        if holder is not None and final is not RunStatus.DONE:
            where += [Run.status == RunStatus.RUNNING, Run.host == holder[0], Run.pid == holder[1]]
        statement = (
            sa.update(Run)
            .where(*where)
            .values(
                status=final,
                reason=reason,
                exit_code=exit_code,
                finished_at=_now(),
                log_tail=log_tail,
                **({"job_state": job_state} if job_state is not None else {}),
                **values,
            )
            .execution_options(synchronize_session=False)
        )
        with self._session(write=True) as session:
            if session.execute(statement).rowcount != 1:
                if session.scalar(sa.select(Run.id).where(Run.id == run_id)) is None:
                    raise KeyError(f"run {run_id} is not in database {self.name}")
                return False
            session.execute(sa.delete(Metric).where(Metric.run_id == run_id))
            if rows:
                session.execute(sa.insert(Metric), rows)
        return True

    def stored_run(self, run_id: str) -> StoredRun:
        """A recorded run as a PlannedRun-like value, to launch it again; UserError if unknown."""
        with self._session(write=False) as session:
            row = session.get(Run, run_id)
            if row is None:
                raise UserError(f"run {run_id}: not in database {self.name}")
            return StoredRun(
                row.id,
                row.sweep,
                row.lane,
                row.arm,
                row.variant,
                row.match,
                row.seed,
                json.loads(row.params),
                row.nproc,
                row.kind,
            )

    def requeue(self, run_id: str) -> None:
        """Make a finished run pending again (rerun); TransitionError while it is running."""
        statement = (
            sa.update(Run)
            .where(Run.id == run_id, Run.status.in_(TERMINAL | {RunStatus.PENDING}))
            .values(status=RunStatus.PENDING, reason="")
            .execution_options(synchronize_session=False)
        )
        with self._session(write=True) as session:
            if session.execute(statement).rowcount == 1:
                return
        raise TransitionError(f"run {run_id} is running; it cannot be requeued")

    def runs_frame(self, sweep: str | None = None) -> pd.DataFrame:
        """The runs table (one sweep or all) as a DataFrame in registration order.

        Column names are the table's; `status` is a plain string, int and bool columns use
        pandas nullable dtypes (Int64, boolean), datetimes are UTC-aware, and `params`,
        `command`, `result` stay JSON text.
        """
        columns = [
            sa.type_coerce(column, sa.String).label(column.name)
            if column.name == "status"
            else column
            for column in Run.__table__.columns
        ]
        query = sa.select(*columns).order_by(Run.seq)
        if sweep is not None:
            query = query.where(Run.sweep == sweep)
        with self._session(write=False) as session:
            frame = pd.read_sql(query, session.connection(), dtype=_frame_dtypes())
        for name in ("created_at", "started_at", "finished_at", "heartbeat_at"):
            frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
        return frame


def _frame_dtypes() -> dict[str, str]:
    """pandas dtypes for the runs columns; nullable Int64/boolean so a NULL keeps an int an int."""
    by_python_type = {int: "Int64", float: "float64", bool: "boolean"}
    return {
        column.name: by_python_type[column.type.python_type]
        for column in Run.__table__.columns
        if column.type.python_type in by_python_type
    }


def _display_name(url: sa.URL) -> str:
    """The file path for SQLite, else the URL with any password hidden."""
    if url.get_backend_name() == "sqlite" and url.database:
        return url.database
    return url.render_as_string(hide_password=True)


def _add_missing_columns(connection: sa.Connection) -> None:
    """Additive migration: add every column the models have and an existing table lacks
    (a database written by an older jepardy), with the model's scalar default if any.
    Columns are never dropped or changed here; such a change needs a new SCHEMA_VERSION."""
    inspector = sa.inspect(connection)
    dialect = connection.dialect
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            name = dialect.identifier_preparer.quote(column.name)
            ddl = f"ALTER TABLE {table.name} ADD COLUMN {name} {column.type.compile(dialect)}"
            default = column.default.arg if column.default is not None else None
            if isinstance(default, bool | int | float):
                ddl += f" DEFAULT {int(default) if isinstance(default, bool) else default}"
            connection.execute(sa.text(ddl))


def open_store(url: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Store:
    """Open (and on first use create) the sweep database at `url`.

    `url` is a SQLAlchemy URL or a file path ("results.db" means `sqlite:///results.db`).
    `busy_timeout_ms` is how long one try of a writer waits for another writer's lock (SQLite
    busy_timeout, PostgreSQL lock_timeout); see `_LOCK_ATTEMPTS` for the retries. Raises
    UserError naming the URL when it cannot be parsed or opened, and when the database was
    written by a newer schema version (an older one is upgraded: migrations.py).
    """
    text = _sqlite_url(url)
    try:
        parsed = sa.make_url(text)
        engine = sa.create_engine(parsed)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        raise UserError(f"cannot open database {text}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        _install_sqlite_hooks(engine, busy_timeout_ms)
    elif engine.dialect.name == "postgresql":
        _install_postgresql_hooks(engine, busy_timeout_ms)
    store = Store(engine, _display_name(parsed), busy_timeout_ms)
    try:
        store._ensure_schema()
    except DBAPIError as exc:
        engine.dispose()
        shown = parsed.render_as_string(hide_password=True)
        # Driver messages can span lines (libpq); a UserError is one line.
        detail = " ".join(str(exc.orig).split())
        raise UserError(f"cannot open database {shown}: {detail}") from exc
    return store
