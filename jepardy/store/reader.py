"""Reading the store through a plain DB-API cursor: the connection every read command uses.

A SQLite store is opened with the standard library's sqlite3 alone, read-only (URI
`mode=ro`; where the WAL's -shm file cannot be made, `immutable=1`, as no writer can be
changing such a file either): no lock, no creation, no upgrade. `jepardy status`, `runs` and
`report` then start without importing SQLAlchemy, half a second of a command's start on a
2-core machine (bench/cli_latency.py). Any other URL (PostgreSQL) is opened read-only by
`jepardy.store.engine.open_reader` and read through its engine's raw connection.

The SQL here is the store's own (column names from the table itself, values bound as
parameters), so it runs unchanged on both backends but for the placeholder.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from jepardy.errors import UserError
from jepardy.store.states import SCHEMA_VERSION, RunStatus, check_readable, judge_version

if TYPE_CHECKING:
    from jepardy.store.engine import Database

BUSY_TIMEOUT_S = 30.0
SQLITE_SCHEMES = ("sqlite://", "sqlite+pysqlite://")
# Key columns read as one text (`runs_query`'s `packed`): a sweep's 100,000 runs share a few
# hundred keys, and one text per row instead of five is a fifth of a report's read.
PACKED = "packed_keys"
# The result JSON of the runs that name a result field asked for (`runs_query`).
RESULT_TEXT = "result_text"
SEPARATOR = "\x1f"  # ASCII unit separator (SQL char(31)): in no name or label jepardy writes
# Bound on the number of ids in one IN (...) clause (SQLite limits bound parameters).
IN_CHUNK = 500


@dataclass
class Reader:
    """A read-only connection to a store: `rows` of a query, the sweeps' names and specs.

    `name` is what error messages call the database (the file path, or the URL without its
    password); `dialect` is "sqlite" or the SQLAlchemy dialect's name."""

    name: str
    dialect: str
    connection: Any  # a DB-API connection
    close: Callable[[], None]

    @property
    def placeholder(self) -> str:
        """The DB-API parameter marker of this connection (sqlite3: ?, psycopg: %s)."""
        return "?" if self.dialect == "sqlite" else "%s"

    def rows(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The column names and rows of `sql`. `{p}` in `sql` stands for the placeholder."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql.replace("{p}", self.placeholder), tuple(params))
            names = [column[0] for column in cursor.description]
            return names, cursor.fetchall()
        finally:
            cursor.close()
            if self.dialect != "sqlite":
                self.connection.rollback()  # end the read's transaction: never left idle open

    def records(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows of `sql` as {column: value}."""
        names, rows = self.rows(sql, params)
        return [dict(zip(names, row, strict=True)) for row in rows]

    def sweep_names(self) -> list[str]:
        """Every sweep name, sorted."""
        return [name for (name,) in self.rows("SELECT name FROM sweeps ORDER BY name")[1]]

    def spec_paths(self) -> dict[str, str]:
        """Each sweep's spec path, as its last `jepardy sweep` gave it."""
        return dict(self.rows("SELECT name, spec_path FROM sweeps")[1])

    def columns(self, table: str) -> list[str]:
        """The columns of `table` (one of the store's), in table order."""
        return self.rows(f"SELECT * FROM {table} WHERE 1 = 0")[0]


def open_rows(url: str | Path) -> Reader:
    """A read-only Reader on the store at `url` (a SQLite path or URL, or any SQLAlchemy URL).

    UserError naming the database when it does not exist, cannot be opened, is not a jepardy
    database, or is at another schema version than this jepardy's."""
    path = sqlite_path(url)
    if path is None:
        return _engine_reader(url)
    if path in ("", ":memory:") or not Path(path).is_file():
        raise UserError(f"database {path or url} does not exist")
    connection = _sqlite_connection(Path(path))
    reader = Reader(path, "sqlite", connection, connection.close)
    try:
        check_readable(_sqlite_version(reader), path)
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise UserError(f"cannot open database {path}: {' '.join(str(exc).split())}") from exc
    except UserError:
        connection.close()
        raise
    return reader


def sqlite_path(url: str | Path) -> str | None:
    """The file path of a SQLite store (a bare path, or a sqlite:/// URL); None for another
    backend's URL."""
    text = str(url)
    if "://" not in text:
        return text  # a file path, literally: '?' and '%41' are the file's (engine.database_url)
    for scheme in SQLITE_SCHEMES:
        if text.startswith(scheme + "/"):
            # As SQLAlchemy reads the URL the writers open: the query string cut off, %XX
            # escapes decoded (a reader must find the file `jepardy sweep` wrote).
            return unquote(text[len(scheme) + 1 :].split("?", 1)[0])
    return None


def _sqlite_connection(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri()
    for mode in ("mode=ro", "mode=ro&immutable=1"):
        connection = sqlite3.connect(
            f"{uri}?{mode}", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None
        )
        try:
            connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return connection
        except sqlite3.DatabaseError as exc:
            connection.close()
            # mode=ro needs the -shm file, which this folder may refuse (SQLITE_CANTOPEN);
            # immutable then reads the file alone, right only when no WAL holds commits
            # beyond it. Any other error (locked, not a database) is the answer.
            if not immutable_is_whole(path, exc):
                detail = " ".join(str(exc).split())
                raise UserError(f"cannot open database {path}: {detail}{wal_hint(path)}") from exc
    raise UserError(f"cannot open database {path}: unable to open it read-only")


def immutable_is_whole(path: Path, exc: sqlite3.DatabaseError) -> bool:
    """Whether reading `path` as immutable gives what mode=ro would have: the error is
    mode=ro's missing -shm, and no WAL beside the file holds commits."""
    cannot_open = getattr(exc, "sqlite_errorname", "") == "SQLITE_CANTOPEN"
    return cannot_open and not _wal_holds_commits(path)


def wal_hint(path: Path) -> str:
    if not _wal_holds_commits(path):
        return ""
    return f" ({path.name}-wal holds commits not yet in the file; read a copy in a writable folder)"


def _wal_holds_commits(path: Path) -> bool:
    wal = path.with_name(path.name + "-wal")
    return wal.exists() and wal.stat().st_size > 0


def _sqlite_version(reader: Reader) -> int | None:
    """The stored schema version (judged as the writers judge it); None without the table,
    or without a runs table to read (not a jepardy store, whatever it says)."""
    found = reader.rows(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('schema_info', 'runs')"
    )[1]
    if len(found) < 2:
        return None
    versions = [version for (version,) in reader.rows("SELECT version FROM schema_info")[1]]
    return judge_version(versions, reader.name, SCHEMA_VERSION)


def _engine_reader(url: str | Path) -> Reader:
    """A Reader over `open_reader`'s read-only engine (PostgreSQL and any other URL)."""
    from jepardy.store.engine import open_reader

    return _on_engine(open_reader(url), owned=True)


def _on_engine(database: Database, *, owned: bool) -> Reader:
    """A Reader through one raw connection of `database`'s engine; closing it closes the
    Database too when the Reader `owned` it."""
    connection = database.engine.raw_connection()

    def close() -> None:
        connection.close()
        if owned:
            database.close()

    return Reader(database.name, database.engine.dialect.name, connection, close)


@dataclass(frozen=True)
class RunsQuery:
    """A query of the runs table: its SQL and parameters, and the columns a reader makes of
    its rows, in order (`packed` unpacked: see `runs_query`)."""

    sql: str
    values: list[str]
    columns: list[str]
    packed: list[str]
    result_fields: list[str]


def runs_query(
    reader: Reader,
    sweep: str | None,
    status: str | None,
    columns: Sequence[str] | None,
    params: bool | Sequence[str] = False,
    result_fields: Sequence[str] = (),
    packed: Sequence[str] = (),
) -> RunsQuery:
    """The query of `columns` (every column for None) of the runs of `sweep` (or all) with
    `status` (or any), plus the column RESULT_TEXT when `result_fields` are asked for (the
    reader makes `result.<field>` of it). With `params` a list of keys, a run's params JSON is read
    only where it names one of them (NULL elsewhere). The text columns `packed` (those of
    `columns`) come as one column PACKED, their values joined by SEPARATOR.
    Column names are checked against the table (they are written into the SQL); UserError
    for an unknown status. No ORDER BY: tidy_runs sorts by seq, faster than SQLite's sort
    of an unindexed column."""
    table = reader.columns("runs")
    names = table if columns is None else list(dict.fromkeys(columns))
    if params is not False and "params" not in names:
        names.append("params")
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise ValueError(f"no column {', '.join(unknown)} in the runs table")
    selected, values = list(names), []
    if not isinstance(params, bool):
        # The text of 100,000 params objects is a third of a report's read (bench/report.py),
        # and most sweeps never set the keys a report asks for (the match checks).
        needles = [json.dumps(key) for key in params]
        named = " OR ".join([_contains(reader.dialect, "params", "{p}")] * len(needles))
        selected[names.index("params")] = f"CASE WHEN {named or 'FALSE'} THEN params END AS params"
        values.extend(needles)
    fields = _result_text(reader.dialect, result_fields)
    packed = [name for name in packed if name in names]
    if packed:
        selected = [
            column for name, column in zip(names, selected, strict=True) if name not in packed
        ]
        selected.append(f"{_joined(reader.dialect, packed)} AS {PACKED}")
    where = []
    if sweep is not None:
        where.append("sweep = {p}")
        values.append(sweep)
    if status is not None:
        if status not in {member.value for member in RunStatus}:
            allowed = ", ".join(member.value for member in RunStatus)
            raise UserError(f"unknown run status {status!r}; allowed: {allowed}")
        where.append("status = {p}")
        values.append(status)
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {', '.join([*selected, *fields])} FROM runs{condition}"
    columns_out = [*names, *(f"result.{field}" for field in result_fields)]
    return RunsQuery(sql, values, columns_out, packed, list(result_fields))


def _joined(dialect: str, columns: Sequence[str]) -> str:
    """SQL for the text columns `columns` joined by SEPARATOR (none of them is NULL)."""
    if dialect == "sqlite":
        return " || char(31) || ".join(columns)
    return f"concat_ws(chr(31), {', '.join(columns)})"


def _result_text(dialect: str, fields: Sequence[str]) -> list[str]:
    """The column RESULT_TEXT: the result JSON where it names one of `fields` (most results
    name none of them), NULL elsewhere; the reader takes the fields out of it in Python,
    whose JSON reads the NaN a result may hold (SQLite's json_valid and PostgreSQL's json
    refuse it)."""
    if not fields:
        return []
    if not all(field.isidentifier() for field in fields):
        raise ValueError(f"result fields {list(fields)!r}: not all names")
    named = " OR ".join(_contains(dialect, "result", f"'\"{field}\"'") for field in fields)
    return [f"CASE WHEN {named} THEN result END AS {RESULT_TEXT}"]


def _contains(dialect: str, column: str, needle: str) -> str:
    """SQL that is true where text `column` contains `needle` (an SQL expression)."""
    function = "instr" if dialect == "sqlite" else "strpos"
    return f"{function}({column}, {needle}) > 0"


def parse_time(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime: SQLite keeps naive UTC text
    (store.models.UTCDateTime), PostgreSQL gives aware datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def in_chunks(items: Sequence[str], size: int = IN_CHUNK) -> Iterator[Sequence[str]]:
    """`items` in slices of at most `size` (the ids of one IN (...) clause)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextmanager
def reading(db: str | Path | Reader | Database) -> Iterator[Reader]:
    """A Reader on `db` for the block: `db` itself when it is one (left open), else one
    opened on a path or URL, or on an open Database's engine, and closed after."""
    if isinstance(db, Reader):
        yield db
        return
    reader = open_rows(db) if isinstance(db, str | Path) else _on_engine(db, owned=False)
    try:
        yield reader
    finally:
        reader.close()
