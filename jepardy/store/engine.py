"""Connections to the sweep database: writers that queue for one lock, readers that
never take it.

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

Readers open the database read-only: no write lock, no table creation, no file creation, and
they work on a read-only file. `open_reader` is the SQLAlchemy one (show, logs, diff, plan,
`status --watch`, and every reader of a PostgreSQL store); status, runs and reports read a
SQLite store through `jepardy.store.reader` alone. Only writers
(`jepardy.store.transitions.open_store`) create and migrate a database.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session

from jepardy.errors import UserError
from jepardy.spec.identity import RunIdentity
from jepardy.store import migrations
from jepardy.store.models import Run, Sweep
from jepardy.store.reader import immutable_is_whole, in_chunks, wal_hint
from jepardy.store.states import SCHEMA_VERSION, Claim, RunStatus, check_readable

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_BUSY_TIMEOUT_MS = 30_000

# Execution option that makes the "begin" listeners take the write lock (SQLite: BEGIN
# IMMEDIATE; PostgreSQL: the advisory lock _PG_WRITE_LOCK).
_WRITE_OPTION = "jepardy_write"
# Taking a transaction's lock is tried this many times in all, with jittered exponential
# backoff from _BACKOFF_S seconds between tries, before the lock error becomes a UserError.
_LOCK_ATTEMPTS = 4
_BACKOFF_S = 0.1
# The PostgreSQL advisory lock every write transaction takes first (its BEGIN IMMEDIATE).
_PG_WRITE_LOCK = int.from_bytes(b"jepardy", "big")
# PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock, lock timeout.
_PG_TRANSIENT = frozenset({"40001", "40P01", "55P03"})
# A writer still waiting for the write lock after this many seconds says so on stderr (a
# warning of this module's logger; Python prints it there unless logging is configured),
# once per Database: a wait of minutes behind another sweep must not look like a hang.
_LOCK_NOTICE_S = 2.0

_log = logging.getLogger(__name__)


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


def database_url(url: str | Path) -> sa.URL:
    """`url` as a SQLAlchemy URL. Anything without '://' is a SQLite file path taken
    literally: a '?' or a '%41' in it is part of the file's name, as every reader takes it
    (`reader.sqlite_path`), never a query string or an escape."""
    text = str(url)
    if "://" in text:
        return sa.make_url(text)
    return sa.URL.create("sqlite", database=text)


def _install_sqlite_hooks(engine: sa.Engine, busy_timeout_ms: int, read_only: bool) -> None:
    """Pragmas on every connection, and BEGIN under our control (the pysqlite recipe).

    pysqlite emits its own deferred BEGIN lazily before the first write, which defeats both
    BEGIN IMMEDIATE and transactional DDL; switching it to autocommit and emitting BEGIN
    from SQLAlchemy's "begin" event puts the transaction boundaries where SQLAlchemy has them.
    A reader only sets the busy timeout (the journal mode is the writers' to choose).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching to WAL itself needs the lock.
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if not read_only:
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


def _password_hidden(text: str) -> str:
    """`text` with the password of a `scheme://user:password@host` hidden as display_name
    hides it, for a URL SQLAlchemy could not parse or load a driver for."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", text)


def display_name(url: sa.URL) -> str:
    """The file path for SQLite, else the URL with any password hidden."""
    if url.get_backend_name() == "sqlite" and url.database:
        return url.database
    return url.render_as_string(hide_password=True)


class Database:
    """A connection to the sweep database, and the queries a reader needs. Every method is
    one short transaction. `engine` is public so pandas users can `read_sql` any table.

    Build it with `open_reader` (read-only) or `jepardy.store.transitions.open_store`.
    """

    def __init__(self, engine: sa.Engine, name: str, busy_timeout_ms: int) -> None:
        self.engine = engine
        self.name = name  # what error messages call the database (file path or URL)
        self._busy_timeout_ms = busy_timeout_ms
        self._write_engine = engine.execution_options(**{_WRITE_OPTION: True})
        self._said_waiting = False

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
        with self._lock_wait_notice(write):
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
                    _log.info(
                        "database %s busy (try %d); again in %.2f s", self.name, attempt, delay
                    )
                    time.sleep(delay)
        raise AssertionError("unreachable")

    @contextmanager
    def _lock_wait_notice(self, write: bool) -> Iterator[None]:
        """Within the block, a write that has waited _LOCK_NOTICE_S for the lock is told
        about, once per Database (the wait happens inside SQLite's busy handler or
        PostgreSQL's lock wait, so a timer thread speaks)."""
        if not write or self._said_waiting:
            yield
            return
        timer = threading.Timer(_LOCK_NOTICE_S, self._say_waiting)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _say_waiting(self) -> None:
        self._said_waiting = True
        _log.warning("waiting for the write lock on %s, held by another process...", self.name)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # --- reads ---

    def spec_text(self, name: str) -> str | None:
        """The spec text a sweep last ran with; None for an unknown sweep."""
        with self._session(write=False) as session:
            return session.scalar(sa.select(Sweep.spec_text).where(Sweep.name == name))

    def sweep_names(self) -> list[str]:
        """Every sweep name, sorted."""
        with self._session(write=False) as session:
            return list(session.scalars(sa.select(Sweep.name).order_by(Sweep.name)))

    def statuses(self, run_ids: Iterable[str]) -> dict[str, RunStatus]:
        """The status of each given run id that is in the store (unknown ids are left out)."""
        ids = list(dict.fromkeys(run_ids))
        found: dict[str, RunStatus] = {}
        with self._session(write=False) as session:
            for chunk in in_chunks(ids):
                rows = session.execute(sa.select(Run.id, Run.status).where(Run.id.in_(chunk)))
                found.update({run_id: RunStatus(status) for run_id, status in rows})
        return found

    def running_claims(self, run_ids: Iterable[str]) -> list[Claim]:
        """Who holds each given run that is running, and since when it was last seen."""
        ids = list(dict.fromkeys(run_ids))
        claims: list[Claim] = []
        with self._session(write=False) as session:
            for chunk in in_chunks(ids):
                rows = session.execute(
                    sa.select(*claim_columns()).where(
                        Run.id.in_(chunk), Run.status == RunStatus.RUNNING
                    )
                )
                claims.extend(Claim(*row) for row in rows)
        return claims

    def stored_run(self, run_id: str) -> RunIdentity:
        """A recorded run's identity, to launch it again; UserError if unknown."""
        with self._session(write=False) as session:
            row = session.get(Run, run_id)
            if row is None:
                raise UserError(f"run {run_id}: not in database {self.name}")
            return RunIdentity(
                run_id=row.id,
                sweep=row.sweep,
                lane=row.lane,
                arm=row.arm,
                variant=row.variant,
                match=row.match,
                seed=row.seed,
                params=json.loads(row.params),
                nproc=row.nproc,
                kind=row.kind,
                parent_run=row.parent_run,
            )

    def runs_frame(self, sweep: str | None = None) -> pd.DataFrame:
        """Every column of the runs table (one sweep or all), in registration order: the
        store's one read path (`jepardy.store.frames.read_runs`) with params kept as JSON."""
        from jepardy.store.frames import read_runs

        return read_runs(self, sweep=sweep, status=None, columns=None, params=False)


def claim_columns() -> tuple[sa.ColumnElement[Any], ...]:
    """The runs columns of a Claim, in its field order."""
    return (Run.id, Run.host, Run.pid, Run.executor, Run.job_id, Run.run_dir, Run.heartbeat_at)


def connect(
    url: str | Path, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, *, read_only: bool = False
) -> tuple[sa.Engine, sa.URL]:
    """An engine for `url` (a SQLAlchemy URL, or a file path for SQLite) with the store's
    connection hooks. Read-only: a SQLite file must exist and is opened with mode=ro, so
    nothing is created or written, not even the WAL's side files where it cannot be."""
    try:
        parsed = database_url(url)
        if read_only and parsed.get_backend_name() == "sqlite":
            engine = _sqlite_reader(parsed)
        else:
            engine = sa.create_engine(parsed)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        raise UserError(f"cannot open database {_password_hidden(str(url))}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        _install_sqlite_hooks(engine, busy_timeout_ms, read_only=read_only)
    elif engine.dialect.name == "postgresql":
        _install_postgresql_hooks(engine, busy_timeout_ms)
        if read_only:
            engine = engine.execution_options(postgresql_readonly=True)
    return engine, parsed


def _sqlite_reader(url: sa.URL) -> sa.Engine:
    """A read-only engine on an existing SQLite file (UserError naming it when missing).

    mode=ro reads a WAL database alongside live writers; it needs the -shm file, which a
    directory the reader cannot write may not hold, and then the file is read as immutable
    (no writer can be changing it there either), unless a WAL beside it holds commits that
    an immutable read would skip (`reader.immutable_is_whole`)."""
    path = Path(url.database or "")
    if not url.database or url.database == ":memory:" or not path.is_file():
        raise UserError(f"database {url.database or url} does not exist")
    engine = sa.create_engine(_read_only_url(path, "ro"))
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        if not immutable_is_whole(path, exc.orig):
            detail = " ".join(str(exc.orig).split())
            raise UserError(f"cannot open database {path}: {detail}{wal_hint(path)}") from exc
        engine = sa.create_engine(_read_only_url(path, "ro", immutable="1"))
    return engine


def _read_only_url(path: Path, mode: str, **options: str) -> sa.URL:
    """A SQLite URI URL of `path` (its '?' and '%' escaped as the URI needs), built as a URL
    rather than parsed from text: SQLAlchemy would decode the escapes again."""
    query = {"mode": mode, **options, "uri": "true"}
    return sa.URL.create("sqlite", database=path.resolve().as_uri(), query=query)


def open_reader(url: str | Path, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Database:
    """Open the sweep database at `url` for reading only: no lock, no creation, no upgrade.

    UserError naming the database when it does not exist, cannot be opened, is not a jepardy
    database, or is at another schema version than this jepardy's (a writer upgrades an
    older one: `jepardy sweep`, `jepardy ingest`, ...).
    """
    engine, parsed = connect(url, busy_timeout_ms, read_only=True)
    database = Database(engine, display_name(parsed), busy_timeout_ms)
    try:
        with database._session(write=False) as session:
            connection = session.connection()
            version = None
            if sa.inspect(connection).has_table("schema_info"):
                version = migrations.read_version(connection, database.name, SCHEMA_VERSION)
        check_readable(version, database.name)
    except DBAPIError as exc:
        engine.dispose()
        detail = " ".join(str(exc.orig).split())
        raise UserError(f"cannot open database {database.name}: {detail}") from exc
    except UserError:
        engine.dispose()
        raise
    return database
