"""Upgrading a sweep database written by an older jepardy to the current schema version.

Contract: `upgrade(engine, name, target)` brings a store database whose `schema_info` row says
version v < target to `target`, one step per version (`_STEPS[v]` turns v into v + 1), in one
write transaction: either every step and the new version row commit, or the error propagates
and the database is left exactly as it was. `engine` is the store's write engine, whose "begin"
hook takes the store's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: the advisory lock), and
the version is read again under that lock, so of many processes opening the same old database
at once one upgrades it and the others find it upgraded. `read_version` is the one place a
stored version is judged: a newer version, or one no step starts from, is refused with a
one-line UserError.

A step is written against the layout of the version it starts from (what that version's
`create_all` made, in any of the shapes that version's releases wrote), never against the
models in store/models.py, which describe the newest layout only; so v1 -> v2 -> v3 stays
valid when the models move on. This is the only way a table changes: a column the models gain
needs a new schema version and a step here.

SQLite and PostgreSQL take different routes to the same layout: PostgreSQL alters `runs` in
place (add, fill, drop columns; drop and add a constraint), while SQLite, which cannot alter a
CHECK constraint, rebuilds the table by its documented procedure
(https://www.sqlite.org/lang_altertable.html, "Making Other Kinds Of Table Schema Changes").
That procedure drops `runs`, the parent table of `metrics`, so on SQLite the transaction runs
on a connection whose foreign keys were switched off before it began, PRAGMA
foreign_key_check must come back empty before the commit, and the connection is discarded
afterwards instead of going back to the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from jepardy.errors import UserError
from jepardy.store.states import judge_version

_log = logging.getLogger(__name__)


def read_version(connection: sa.Connection, name: str, target: int) -> int | None:
    """The schema version stored in the database, judged by `states.judge_version` (the
    readers' check too): None for a fresh database, UserError naming `name` for one no step
    upgrades."""
    versions = list(connection.execute(sa.text("SELECT version FROM schema_info")).scalars())
    return judge_version(versions, name, target)


def upgrade(engine: sa.Engine, name: str, target: int) -> None:
    """Upgrade the database of `engine` (the store's write engine) to schema version `target`
    in one transaction under the store's write lock; see the module docstring. A database
    already at `target` (another process upgraded it first) is left alone."""
    with _write_transaction(engine) as connection:
        version = read_version(connection, name, target)
        if version is None or version == target:
            return
        try:
            for step in range(version, target):
                _STEPS[step](connection)
        except DBAPIError as exc:
            # Raised inside the transaction, so it rolls back: say so, on one line.
            detail = " ".join(str(exc.orig).split())
            raise UserError(
                f"database {name}: upgrading it from schema version {version} to {target} "
                f"failed and changed nothing: {detail}"
            ) from exc
        connection.execute(
            sa.text("UPDATE schema_info SET version = :version"), {"version": target}
        )
        if connection.dialect.name == "sqlite":
            _check_foreign_keys(connection, name)
    _log.info("database %s: upgraded from schema version %d to %d", name, version, target)


@contextmanager
def _write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection of `engine` in a transaction that holds the store's write lock, committed
    when the block ends and rolled back when it raises; on SQLite, with foreign keys off."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Rebuilding `runs` drops the parent table of `metrics`: with foreign keys on, that
            # DROP first deletes every run and ON DELETE CASCADE empties `metrics` (deferring
            # the checks does not stop the cascade). PRAGMA foreign_keys is a no-op inside a
            # transaction, so it is switched off on the DBAPI connection before the "begin"
            # hook issues BEGIN IMMEDIATE; `upgrade` runs PRAGMA foreign_key_check instead.
            cursor = connection.connection.cursor()
            cursor.execute("PRAGMA foreign_keys = OFF")
            cursor.close()
        try:
            with connection.begin():
                yield connection
        finally:
            if sqlite:
                # Never let a connection with foreign keys off back into the pool: the pool
                # drops this one, and the next one it opens gets the store's connect pragmas.
                connection.invalidate()


def _check_foreign_keys(connection: sa.Connection, name: str) -> None:
    """UserError (and so a rollback) when any row lacks the row its foreign key names; with
    foreign keys off nothing else would notice before the commit."""
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if violations:
        table, rowid, parent, _ = violations[0]
        raise UserError(
            f"database {name}: after the schema upgrade {len(violations)} rows would lack the "
            f"row their foreign key names (first: {table} rowid {rowid} -> {parent}), so it "
            "changed nothing"
        )


# --- version 1 -> 2: a run's job described the same way for every executor ---

# v1 kept a local job's process group id in job_pid and a Slurm job in slurm_*; v2 has one set
# of columns for any executor. Early v1 databases may lack some of the v1 columns (they were
# added within v1), so every step reads only the columns that are there.
_V1_JOB_COLUMNS = ("job_pid", "slurm_job_id", "slurm_nodes", "slurm_state")
# Declared types as v2's create_all writes them (String(16) -> VARCHAR(16), Text -> TEXT).
_V2_JOB_COLUMNS = {
    "executor": "VARCHAR(16)",
    "job_id": "VARCHAR(64)",
    "job_nodes": "TEXT",
    "job_state": "VARCHAR(32)",
}
# Columns that v1 gained during its life (an early v1 database lacks them), as v2 declares them.
_V1_LATE_COLUMNS = {"parent_run": "VARCHAR(16)"}
# v2's RunStatus values, frozen here: v1's CHECK refuses the new "cancelled".
_V2_STATUSES = ("pending", "running", "done", "failed", "timeout", "interrupted", "cancelled")
_V2_STATUS_CHECK = "CONSTRAINT run_status CHECK (status IN ({}))".format(
    ", ".join(f"'{status}'" for status in _V2_STATUSES)
)


def _v1_to_v2(connection: sa.Connection) -> None:
    """Replace runs.job_pid and runs.slurm_* by executor, job_id, job_nodes and job_state
    (filled from them), and let the run_status CHECK accept "cancelled"."""
    if connection.dialect.name == "sqlite":
        _v1_to_v2_sqlite(connection)
    else:
        _v1_to_v2_in_place(connection)


def _v2_job_values(present: set[str]) -> dict[str, str]:
    """SQL expressions over a v1 runs row for each v2 job column: a Slurm job id makes the
    row a Slurm job (its id, node list, state), else a job pid makes it a local job (the pid
    as text, on the orchestrator's host), else there is no job. An absent column reads NULL."""

    def column(name: str) -> str:
        return name if name in present else "NULL"

    slurm = f"{column('slurm_job_id')} IS NOT NULL"
    local = f"{column('job_pid')} IS NOT NULL"
    return {
        "executor": f"CASE WHEN {slurm} THEN 'slurm' WHEN {local} THEN 'local' END",
        "job_id": f"CASE WHEN {slurm} THEN {column('slurm_job_id')} "
        f"WHEN {local} THEN CAST({column('job_pid')} AS TEXT) END",
        "job_nodes": f"CASE WHEN {slurm} THEN {column('slurm_nodes')} "
        f"WHEN {local} THEN {column('host')} END",
        "job_state": f"CASE WHEN {slurm} THEN {column('slurm_state')} END",
    }


def _v1_to_v2_in_place(connection: sa.Connection) -> None:
    """PostgreSQL: add the v2 columns, fill them, drop the v1 ones, swap the CHECK; DDL is
    transactional there, so a failure rolls all of it back."""
    present = {column["name"] for column in sa.inspect(connection).get_columns("runs")}
    values = _v2_job_values(present)
    late = {name: type_ for name, type_ in _V1_LATE_COLUMNS.items() if name not in present}
    added = {**_V2_JOB_COLUMNS, **late}
    adds = ", ".join(f"ADD COLUMN {name} {type_}" for name, type_ in added.items())
    connection.exec_driver_sql(f"ALTER TABLE runs {adds}")
    sets = ", ".join(f"{name} = {expression}" for name, expression in values.items())
    connection.exec_driver_sql(f"UPDATE runs SET {sets}")
    drops = [f"DROP COLUMN {name}" for name in _V1_JOB_COLUMNS if name in present]
    changes = ", ".join([*drops, "DROP CONSTRAINT run_status", f"ADD {_V2_STATUS_CHECK}"])
    connection.exec_driver_sql(f"ALTER TABLE runs {changes}")


def _v1_to_v2_sqlite(connection: sa.Connection) -> None:
    """SQLite: rebuild `runs` in the v2 layout (steps 3-9 of the documented procedure; the
    caller did 1-2 and does 10-12: foreign keys off, the transaction, the check, the commit).

    Columns keep their declared types, NOT NULL and defaults as this database has them and
    their order, with the job columns where job_pid was (at the end when it is absent). The
    table constraints are written out: v1's `runs` has exactly these three (create_all made
    them; the additive migration never adds constraints), with the CHECK widened.
    """
    quote = connection.dialect.identifier_preparer.quote
    # cid, name, type, notnull, dflt_value, pk
    columns = connection.exec_driver_sql("PRAGMA table_info(runs)").all()
    present = {column.name for column in columns}
    jobs = [f"{name} {type_}" for name, type_ in _V2_JOB_COLUMNS.items()]
    definitions: list[str] = []
    kept: list[str] = []
    for column in columns:
        if column.name == "job_pid":
            definitions += jobs
        elif column.name not in _V1_JOB_COLUMNS:
            not_null = " NOT NULL" if column.notnull else ""
            default = "" if column.dflt_value is None else f" DEFAULT {column.dflt_value}"
            definitions.append(f"{quote(column.name)} {column.type}{not_null}{default}")
            kept.append(quote(column.name))
    if "job_pid" not in present:
        definitions += jobs
    definitions += [f"{n} {type_}" for n, type_ in _V1_LATE_COLUMNS.items() if n not in present]
    definitions += [
        "PRIMARY KEY (id)",
        "FOREIGN KEY(sweep) REFERENCES sweeps (name)",
        _V2_STATUS_CHECK,
    ]
    values = _v2_job_values(present)
    # Made again afterwards, from their SQL: the old table's indexes and triggers, which go
    # with it (automatic ones, such as the primary key's, have no SQL and come with the new
    # table), and every view, dropped first: jepardy makes none, but since SQLite 3.26 the
    # RENAME below refuses while any view names a table that is missing at that moment (a
    # trigger on another table that names `runs` makes it fail, and the upgrade with it).
    saved = connection.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
        "AND (type = 'view' OR (tbl_name = 'runs' AND type IN ('index', 'trigger')))"
    ).all()
    views = [quote(row.name) for row in saved if row.type == "view"]
    for view in views:
        connection.exec_driver_sql(f"DROP VIEW {view}")
    connection.exec_driver_sql(f"CREATE TABLE runs_v2 ({', '.join(definitions)})")
    connection.exec_driver_sql(
        f"INSERT INTO runs_v2 ({', '.join([*kept, *values])}) "
        f"SELECT {', '.join([*kept, *values.values()])} FROM runs"
    )
    connection.exec_driver_sql("DROP TABLE runs")
    # `metrics` still says REFERENCES runs: the new table takes the name it points at.
    connection.exec_driver_sql("ALTER TABLE runs_v2 RENAME TO runs")
    for row in saved:
        connection.exec_driver_sql(row.sql)
    for view in views:
        # CREATE VIEW does not resolve columns; reading one does. A view that reads a
        # removed column stops the upgrade, as PostgreSQL's DROP COLUMN refuses it.
        connection.exec_driver_sql(f"SELECT * FROM {view} LIMIT 0")


# --- version 2 -> 3: promotion decisions between lanes, with their evidence ---


def _v3_promotion_tables() -> tuple[sa.Table, sa.Table]:
    """The two tables v3 adds, frozen as v3 declares them (store/models.py may move on); the
    `sweeps` stub only lets their foreign key name its target."""
    meta = sa.MetaData()
    sa.Table("sweeps", meta, sa.Column("name", sa.String(200), primary_key=True))
    text, name = sa.Text, sa.String(200)
    decisions = sa.Table(
        "promotions",
        meta,
        sa.Column("sweep", name, primary_key=True),
        sa.Column("lane", name, primary_key=True),
        sa.Column("source_lane", name, nullable=False),
        sa.Column("rule", text, nullable=False),
        sa.Column("top", sa.Integer),
        sa.Column("note", text, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["sweep"], ["sweeps.name"]),
    )
    numbers = ("delta_bpb", "ci_low", "ci_high", "p_welch", "p_holm", "p_margin")
    candidates = sa.Table(
        "promotion_candidates",
        meta,
        *(sa.Column(key, name, primary_key=True) for key in ("sweep", "lane", "arm")),
        *(sa.Column(key, text, primary_key=True) for key in ("variant", "match")),
        *(sa.Column(key, sa.Integer, nullable=False) for key in ("position", "n", "control_n")),
        *(sa.Column(key, sa.Double) for key in numbers),
        sa.Column("verdict", text, nullable=False),
        sa.Column("rank", sa.Integer),
        sa.Column("selected", sa.Boolean, nullable=False),
        sa.Column("reason", text, nullable=False),
        sa.Column("run_ids", text, nullable=False),
        sa.ForeignKeyConstraint(
            ["sweep", "lane"], ["promotions.sweep", "promotions.lane"], ondelete="CASCADE"
        ),
    )
    return decisions, candidates


def _v2_to_v3(connection: sa.Connection) -> None:
    """Add `promotions` and `promotion_candidates` (new tables: nothing else changes). The
    store's create_all may have made them already, before the upgrade ran."""
    decisions, candidates = _v3_promotion_tables()
    decisions.create(connection, checkfirst=True)
    candidates.create(connection, checkfirst=True)


# The version each step starts from -> the step that turns it into the next version.
_STEPS: dict[int, Callable[[sa.Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}
