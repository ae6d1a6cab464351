"""The few transitions the orchestrator makes in the sweep database, and `open_store`, which
opens it for writing (creating or upgrading it).

Only the orchestrator writes here (docs/architecture.md); jobs write `result.json` and
`metrics.jsonl` into their run directory and the orchestrator records them when a job ends.
A run moves pending -> running (claimed by one orchestrator, compare-and-set) -> one of the
terminal states (states.TERMINAL); every method is one short write transaction.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from jepardy.errors import UserError
from jepardy.spec.identity import RunIdentity
from jepardy.store import migrations
from jepardy.store.engine import (
    DEFAULT_BUSY_TIMEOUT_MS,
    Database,
    claim_columns,
    connect,
    display_name,
)
from jepardy.store.models import Base, Metric, Run, SchemaInfo, Sweep
from jepardy.store.reader import in_chunks
from jepardy.store.states import (
    CLAIMABLE,
    RESULT_FIELDS,
    SCHEMA_VERSION,
    TERMINAL,
    Claim,
    JobRecord,
    RunOutcome,
    RunStatus,
)


class TransitionError(UserError):
    """A run cannot make the requested transition (for example it is already running)."""


def _same(column: sa.ColumnElement[Any], value: Any) -> sa.ColumnElement[bool]:
    """column = value, where a None value matches NULL."""
    return column.is_(None) if value is None else column == value


def _now() -> datetime:
    return datetime.now(UTC)


def _dumps(value: Any) -> str:
    """Canonical JSON text (sorted keys, no whitespace), as run identity uses."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


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
        name: _coerce(run_id, name, result.get(name), to) for name, to in RESULT_FIELDS.items()
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


def _run_row(run: RunIdentity, seq: int, git_commit: str | None, now: datetime) -> dict[str, Any]:
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
        "parent_run": run.parent_run,
    }


class Store(Database):
    """The sweep database opened for writing: the reads of `Database`, and the transitions.

    Build it with `open_store`.
    """

    def _ensure_schema(self) -> None:
        """Create the tables and the version row once, upgrade an older schema through the
        versioned steps of migrations.py (the only way a table changes), refuse a newer one.

        Every step runs under the write lock, and the upgrade reads the version again under
        its own, so many processes opening a fresh or an old database at once create or
        upgrade it once.
        """
        with self._session(write=True) as session:
            connection = session.connection()
            version = None
            if sa.inspect(connection).has_table("schema_info"):
                version = migrations.read_version(connection, self.name, SCHEMA_VERSION)
            if version is None:
                # Only a fresh database is created from the models: an older one gains its
                # new tables in the upgrade's one transaction, or not at all.
                Base.metadata.create_all(connection)
                session.add(SchemaInfo(version=SCHEMA_VERSION))
            else:
                # A write that changes nothing: a database this process cannot write (a
                # read-only file, mount or replica, SQLite's mode=ro) fails here, when it is
                # opened, not at the first run's claim.
                connection.execute(sa.text("UPDATE schema_info SET version = version"))
        if version is not None and version < SCHEMA_VERSION:
            # Its own transaction: on SQLite it needs foreign keys off, which a connection
            # can only switch before its transaction begins.
            migrations.upgrade(self._write_engine, self.name, SCHEMA_VERSION)

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

    def register_runs(self, runs: Iterable[RunIdentity], git_commit: str | None) -> None:
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
        columns = dict.fromkeys([*RESULT_FIELDS, "result", "log_tail", "exit_code"])
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
            for chunk in in_chunks(list(run_ids)):
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
            for chunk in in_chunks(ids):
                running = (Run.id.in_(chunk), Run.status == RunStatus.RUNNING)
                rows = session.execute(sa.select(*claim_columns()).where(*running))
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
        outcome: RunOutcome,
        *,
        holder: tuple[str, int] | None = None,
        job_state: str | None = None,
    ) -> bool:
        """Record how a run ended, in one transaction; returns whether it was recorded.

        `outcome.status` must be terminal; it is the caller's verdict and may differ from
        result["status"] (a timeout writes no result). The typed result columns are all set
        from `outcome.result` (None where a field is absent or non-finite), the whole dict is
        kept as JSON, and the run's metrics rows are replaced by `outcome.metrics` (objects
        with step, name, value). With `holder` (an orchestrator's host and pid) a verdict
        other than done is recorded only while that orchestrator still holds the running run,
        so a run cancelled or taken over meanwhile keeps its row; a done result is always
        recorded (a real result beats a verdict). `job_state`: the executor's last word on the
        job, recorded with it. KeyError when the run id is unknown.
        """
        final = outcome.status
        if final not in TERMINAL:
            raise ValueError(f"record_result needs a terminal status, got {final}")
        values = _result_columns(run_id, outcome.result)
        rows = [_metric_row(run_id, metric) for metric in outcome.metrics]
        where = [Run.id == run_id]
        if holder is not None and final is not RunStatus.DONE:
            where += [Run.status == RunStatus.RUNNING, Run.host == holder[0], Run.pid == holder[1]]
        statement = (
            sa.update(Run)
            .where(*where)
            .values(
                status=final,
                reason=outcome.reason,
                exit_code=outcome.exit_code,
                finished_at=_now(),
                log_tail=outcome.log_tail,
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


def open_store(url: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Store:
    """Open (and on first use create) the sweep database at `url`.

    `url` is a SQLAlchemy URL or a SQLite file path, taken literally ("x?y.db" is that file,
    not "x" with a query string; engine.database_url).
    `busy_timeout_ms` is how long one try of a writer waits for another writer's lock (SQLite
    busy_timeout, PostgreSQL lock_timeout); see `_LOCK_ATTEMPTS` for the retries. Raises
    UserError naming the URL when it cannot be parsed or opened, and when the database was
    written by a newer schema version (an older one is upgraded: migrations.py).
    """
    engine, parsed = connect(url, busy_timeout_ms)
    store = Store(engine, display_name(parsed), busy_timeout_ms)
    try:
        store._ensure_schema()
    except DBAPIError as exc:
        engine.dispose()
        # Driver messages can span lines (libpq); a UserError is one line. The database is
        # named as the readers name it: the file path, or the URL without its password.
        detail = " ".join(str(exc.orig).split())
        raise UserError(f"cannot open database {store.name}: {detail}") from exc
    return store
