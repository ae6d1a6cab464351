"""Upgrading a version-1 store to the current schema, on every backend (`store_url`).

The v1 databases are real ones: the DDL v1's `create_all` made
(tests/fixtures/schema/store_v1.*.sql), filled with runs in every job state v1 knew.
`open_store` must keep every row and metric, map job_pid and slurm_* onto executor, job_id,
job_nodes and job_state, end with the layout a fresh database has (so the widened status
CHECK, the foreign keys and the indexes), keep the user's views, do nothing on a second open,
change nothing when the upgrade fails, and upgrade once when many processes open the same old
database at the same moment.
"""

from __future__ import annotations

import logging
import multiprocessing
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jepardy.errors import UserError
from jepardy.store import migrations
from jepardy.store.models import Base
from jepardy.store.states import SCHEMA_VERSION, Claim, RunStatus
from jepardy.store.transitions import open_store

DATA = Path(__file__).parent / "fixtures" / "schema"
V1_JOB_COLUMNS = ("job_pid", "slurm_job_id", "slurm_nodes", "slurm_state")
V2_JOB_COLUMNS = ("executor", "job_id", "job_nodes", "job_state")
PROCESSES = 8
TIMEOUT_S = 60
# What the forkserver imports once for every worker (each would import this module, and so
# pytest, on its own otherwise).
PRELOAD = [
    "jepardy.store.transitions",
    "pytest",
    "psycopg",
    "sqlalchemy.dialects.postgresql.psycopg",
]

T0 = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)
SWEEP = {
    "name": "smoke",
    "spec_path": "specs/smoke.toml",
    "spec_sha256": "ab" * 32,
    "spec_text": "[sweep]\nname = 'smoke'\n",
    "created_at": T0,
    "updated_at": T0 + timedelta(hours=1),
}
RUN = {
    "sweep": "smoke",
    "lane": "isolation",
    "arm": "control",
    "variant": "",
    "match": "wallclock_s=180",
    "seed": 1,
    "params": '{"jepa_weight":0.1}',
    "jepa_weight": 0.1,
    "ema": False,
    "wallclock_s": 180.0,
    "nproc": 1,
    "kind": "jepardy",
    "reason": "",
    "created_at": T0,
    "attempts": 0,
}
RESULTS = {
    "exit_code": 0,
    "val_bpb": 1.25,
    "val_loss": 2.5,
    "artifact_bytes": 15_000_000_000,  # BIGINT
    "under_cap": True,
    "steps": 200,
    "code_sha256": "cd" * 32,
    "log_tail": "final val_bpb 1.25",
    "result": '{"status": "done", "val_bpb": 1.25}',
}
RUNNING = {
    "started_at": T0 + timedelta(minutes=1),
    "heartbeat_at": T0 + timedelta(minutes=2),
    "attempts": 1,
    "run_dir": "runs/x",
    "command": '["torchrun"]',
    "git_commit": "deadbeef",
}
# id -> (v1 columns, the v2 job columns it must end with)
V1_RUNS: dict[str, tuple[dict[str, Any], tuple[str | None, ...]]] = {
    "pending000000001": ({"status": "pending"}, (None, None, None, None)),
    "local0000000002": (
        {"status": "running", "host": "gpu-box", "pid": 4242, "job_pid": 5151, "devices": "0,1"}
        | RUNNING,
        ("local", "5151", "gpu-box", None),
    ),
    "slurm0000000003": (
        {
            "status": "running",
            "host": "login1",
            "pid": 777,
            "slurm_job_id": "123456",
            "slurm_nodes": "node[01-02]",
            "slurm_state": "RUNNING",
        }
        | RUNNING,
        ("slurm", "123456", "node[01-02]", "RUNNING"),
    ),
    "done000000000004": (
        {"status": "done", "host": "gpu-box", "pid": 4242, "job_pid": 6000, "devices": "2"}
        | RUNNING
        | RESULTS
        | {"finished_at": T0 + timedelta(minutes=5)},
        ("local", "6000", "gpu-box", None),
    ),
    # A Slurm job id wins over a job pid; a Slurm job still queued has no nodes yet.
    "timeout000000005": (
        {
            "status": "timeout",
            "host": "login1",
            "job_pid": 31337,
            "slurm_job_id": "99",
            "slurm_state": "TIMEOUT",
        },
        ("slurm", "99", None, "TIMEOUT"),
    ),
    # Ingested from logs: a result, no job, derived from another run.
    "ingest0000000006": (
        {"status": "done", "kind": "ingested", "parent_run": "done000000000004"} | RESULTS,
        (None, None, None, None),
    ),
}
V1_METRICS = [
    {"id": 1, "run_id": "done000000000004", "step": 0, "name": "train_loss", "value": 6.9},
    {"id": 2, "run_id": "done000000000004", "step": 1, "name": "train_loss", "value": None},
    {"id": 3, "run_id": "done000000000004", "step": 1, "name": "lr", "value": None},
    {"id": 4, "run_id": "done000000000004", "step": 2, "name": "val_bpb", "value": 1.25},
    {"id": 5, "run_id": "local0000000002", "step": 0, "name": "train_loss", "value": 7.0},
]
METRIC_KINDS = {1: "finite", 2: "nan", 3: "inf", 4: "finite", 5: "finite"}


def _sqlite(url: str) -> bool:
    return sa.make_url(url).get_backend_name() == "sqlite"


@contextmanager
def _connect(url: str) -> Iterator[sa.Connection]:
    """A transaction on a plain engine (no store hooks), as another program would open."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


def _create_v1(url: str, *, without: tuple[str, ...] = ()) -> None:
    """Make the database at `url` a filled version-1 store; `without`: runs columns it lacks
    (an early v1 database, from before they were added)."""
    dialect = "sqlite" if _sqlite(url) else "postgresql"
    script = (DATA / f"store_v1.{dialect}.sql").read_text()
    with _connect(url) as connection:
        for statement in script.split(";\n"):
            if statement.strip():
                connection.exec_driver_sql(statement)
        for column in without:
            connection.exec_driver_sql(f"ALTER TABLE runs DROP COLUMN {column}")
        tables = sa.MetaData()
        tables.reflect(connection)
        connection.execute(tables.tables["sweeps"].insert(), [_stored(SWEEP, url)])
        runs = []
        for seq, (run_id, (columns, _)) in enumerate(V1_RUNS.items(), start=1):
            row = {"id": run_id, "seq": seq, **RUN, **columns}
            runs.append(_stored({k: v for k, v in row.items() if k not in without}, url))
        # One statement per row: rows set different columns, an executemany those of the first.
        for row in runs:
            connection.execute(tables.tables["runs"].insert(), [row])
        metrics = [metric | {"kind": METRIC_KINDS[metric["id"]]} for metric in V1_METRICS]
        connection.execute(tables.tables["metrics"].insert(), metrics)


def _stored(row: dict[str, Any], url: str) -> dict[str, Any]:
    """A row as v1's UTCDateTime stored it: naive UTC on SQLite, aware on PostgreSQL."""
    if not _sqlite(url):
        return row
    return {k: v.replace(tzinfo=None) if isinstance(v, datetime) else v for k, v in row.items()}


def _rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary-key order, read with the reflected types."""
    with _connect(url) as connection:
        tables = sa.MetaData()
        tables.reflect(connection)
        return {
            name: [
                dict(row._mapping)
                for row in connection.execute(sa.select(table).order_by(*table.primary_key.columns))
            ]
            for name, table in tables.tables.items()
        }


def _layout(connection: sa.Connection, schema: str | None = None) -> dict[str, Any]:
    """What the database says of each table: columns (type, nullable), primary key, foreign
    keys, indexes and CHECK constraints."""
    inspector = sa.inspect(connection)
    return {
        table: {
            "columns": {
                column["name"]: (str(column["type"]), column["nullable"])
                for column in inspector.get_columns(table, schema)
            },
            "primary_key": inspector.get_pk_constraint(table, schema)["constrained_columns"],
            "foreign_keys": sorted(
                (
                    fk["constrained_columns"],
                    fk["referred_table"],
                    fk["referred_columns"],
                    fk["options"].get("ondelete"),
                )
                for fk in inspector.get_foreign_keys(table, schema)
            ),
            "indexes": sorted(
                (index["name"], index["column_names"], index["unique"])
                for index in inspector.get_indexes(table, schema)
            ),
            "checks": sorted(
                (check["name"], check["sqltext"])
                for check in inspector.get_check_constraints(table, schema)
            ),
        }
        for table in sorted(inspector.get_table_names(schema))
    }


def _fresh_layout(url: str, tmp_path: Path) -> dict[str, Any]:
    """The layout the current models' create_all makes on this backend: a new SQLite file, or
    a new schema in the PostgreSQL database."""
    if _sqlite(url):
        fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
        with _connect(fresh) as connection:
            Base.metadata.create_all(connection)
            return _layout(connection)
    with _connect(url) as connection:
        connection.exec_driver_sql("CREATE SCHEMA fresh")
        Base.metadata.create_all(connection.execution_options(schema_translate_map={None: "fresh"}))
        return _layout(connection, "fresh")


def _state(url: str) -> tuple[Any, ...]:
    """Rows, layout and (SQLite) stored DDL: what an open that changes nothing leaves alone."""
    with _connect(url) as connection:
        layout = _layout(connection)
        ddl = (
            connection.exec_driver_sql("SELECT type, name, sql FROM sqlite_master").all()
            if _sqlite(url)
            else None
        )
    return _rows(url), layout, ddl


def _assert_upgraded(url: str, before: dict[str, list[dict[str, Any]]]) -> None:
    """The database holds `before` (rows of the v1 store) in the v2 layout, mapped."""
    after = _rows(url)
    assert after["schema_info"] == [{"version": SCHEMA_VERSION}]
    assert after["sweeps"] == before["sweeps"]
    assert after["metrics"] == before["metrics"]
    assert [row["id"] for row in after["runs"]] == [row["id"] for row in before["runs"]]
    for old, new in zip(before["runs"], after["runs"], strict=True):
        kept = {k: v for k, v in old.items() if k not in V1_JOB_COLUMNS}
        assert {k: v for k, v in new.items() if k not in V2_JOB_COLUMNS} == kept
        assert tuple(new[name] for name in V2_JOB_COLUMNS) == V1_RUNS[old["id"]][1], old["id"]


def test_every_older_version_has_a_step() -> None:
    assert sorted(migrations._STEPS) == list(range(1, SCHEMA_VERSION))


def test_v1_store_is_upgraded(store_url: str, tmp_path: Path) -> None:
    _create_v1(store_url)
    before = _rows(store_url)
    assert before["schema_info"] == [{"version": 1}]

    store = open_store(store_url)
    _assert_upgraded(store_url, before)
    with _connect(store_url) as connection:
        upgraded = _layout(connection)
    fresh = _fresh_layout(store_url, tmp_path)
    assert upgraded == fresh
    if _sqlite(store_url):  # the rebuilt table even has a fresh one's column order
        assert list(upgraded["runs"]["columns"]) == list(fresh["runs"]["columns"])

    # The store reads and writes the upgraded rows, and "cancelled" passes the new CHECK.
    frame = store.runs_frame("smoke").set_index("id")
    assert frame.loc["done000000000004", "artifact_bytes"] == 15_000_000_000
    assert frame.loc["local0000000002", "devices"] == "0,1"
    claims = store.cancel_running(["local0000000002", "slurm0000000003", "pending000000001"])
    assert sorted(claims, key=lambda claim: claim.run_id) == [
        Claim(
            "local0000000002", "gpu-box", 4242, "local", "5151", "runs/x", RUNNING["heartbeat_at"]
        ),
        Claim(
            "slurm0000000003", "login1", 777, "slurm", "123456", "runs/x", RUNNING["heartbeat_at"]
        ),
    ]
    assert store.statuses(["local0000000002", "slurm0000000003"]) == {
        "local0000000002": RunStatus.CANCELLED,
        "slurm0000000003": RunStatus.CANCELLED,
    }
    with pytest.raises(sa.exc.IntegrityError), _connect(store_url) as connection:
        connection.exec_driver_sql("UPDATE runs SET status = 'bogus' WHERE seq = 1")

    # The foreign key from metrics still holds, on the store's own connections.
    if _sqlite(store_url):
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    orphan = (
        "INSERT INTO metrics (run_id, step, name, value, kind) VALUES ('nope', 0, 'x', 1, 'finite')"
    )
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as connection:
        connection.exec_driver_sql(orphan)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM runs WHERE id = 'done000000000004'")
        left = connection.exec_driver_sql("SELECT count(*) FROM metrics").scalar()
    assert left == 1  # ON DELETE CASCADE took the run's four metrics with it
    store.close()


def test_second_open_changes_nothing(store_url: str) -> None:
    _create_v1(store_url)
    open_store(store_url).close()
    upgraded = _state(store_url)
    store = open_store(store_url)
    assert _state(store_url) == upgraded
    # A process that saw version 1 before another upgraded the database reads the version
    # again under the lock, and leaves it alone.
    migrations.upgrade(store._write_engine, store.name, SCHEMA_VERSION)
    store.close()
    assert _state(store_url) == upgraded


def test_early_v1_store_without_later_columns(store_url: str) -> None:
    """A v1 database last opened before parent_run and the Slurm columns existed: absent
    columns read NULL, and the upgrade adds parent_run, which v1 gained during its life."""
    without = ("parent_run", "slurm_job_id", "slurm_nodes", "slurm_state")
    _create_v1(store_url, without=without)
    open_store(store_url).close()
    runs = {row["id"]: row for row in _rows(store_url)["runs"]}
    assert [tuple(runs[run_id][name] for name in V2_JOB_COLUMNS) for run_id in V1_RUNS] == [
        (None, None, None, None),
        ("local", "5151", "gpu-box", None),
        (None, None, None, None),
        ("local", "6000", "gpu-box", None),
        ("local", "31337", "login1", None),
        (None, None, None, None),
    ]
    assert all(row["parent_run"] is None for row in runs.values())
    assert not set(V1_JOB_COLUMNS) & set(runs["local0000000002"])


def test_views_on_runs_survive(store_url: str) -> None:
    """A view of the user's on `runs` is kept (SQLite: dropped and made again around the
    rebuild, since a rename refuses while a view names a missing table)."""
    _create_v1(store_url)
    with _connect(store_url) as connection:
        connection.exec_driver_sql("CREATE VIEW run_states AS SELECT id, status FROM runs")
    open_store(store_url).close()
    with _connect(store_url) as connection:
        rows = connection.exec_driver_sql("SELECT id, status FROM run_states ORDER BY id").all()
    assert rows == sorted((run_id, columns["status"]) for run_id, (columns, _) in V1_RUNS.items())


def test_failed_upgrade_leaves_v1_store_unchanged(store_url: str) -> None:
    """A view that reads job_pid stops the upgrade (PostgreSQL: it depends on the column;
    SQLite: made again, it no longer reads), and everything is rolled back."""
    _create_v1(store_url)
    with _connect(store_url) as connection:
        connection.exec_driver_sql("CREATE VIEW job_pids AS SELECT id, job_pid FROM runs")
    before = _state(store_url)
    with pytest.raises(UserError, match="from schema version 1 to 3 failed and changed nothing"):
        open_store(store_url)
    assert _state(store_url) == before
    with _connect(store_url) as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM job_pids").scalar() == len(V1_RUNS)


def test_orphan_rows_stop_a_sqlite_upgrade(tmp_path: Path) -> None:
    """A v1 SQLite file written with foreign keys off (as a plain sqlite3 connection does)
    holds a metric of no run: the check before the commit refuses, and nothing changes."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    _create_v1(url)
    with _connect(url) as connection:
        connection.exec_driver_sql(
            "INSERT INTO metrics (run_id, step, name, value, kind) "
            "VALUES ('gone', 0, 'x', 1, 'finite')"
        )
    before = _state(url)
    with pytest.raises(UserError, match=r"1 rows would lack .* metrics rowid 6 -> runs"):
        open_store(url)
    assert _state(url) == before


def _open_when_released(url: str, start: Any, results: Any) -> None:
    """A worker: open the store when every worker is ready; report how many upgrades this
    process made (log records of jepardy.store.migrations), or the traceback of an error."""
    upgrades: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = upgrades.append  # type: ignore[method-assign]
    logger = logging.getLogger(migrations.__name__)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        start.wait(TIMEOUT_S)
        open_store(url).close()
        results.put(len(upgrades))
    except BaseException:
        results.put(traceback.format_exc())


def test_processes_opening_at_once_upgrade_once(store_url: str) -> None:
    _create_v1(store_url)
    before = _rows(store_url)
    # Forked from a forkserver (as in test_store_concurrency), not from pytest itself, whose
    # connections they must not share.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=_open_when_released, args=(store_url, start, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=TIMEOUT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    assert sorted(outcomes, key=str) == [0] * (PROCESSES - 1) + [1], outcomes
    _assert_upgraded(store_url, before)


def test_every_older_schema_version_has_an_upgrade_step() -> None:
    """Readers judge a stored version without the migrations (states.judge_version takes
    every version below SCHEMA_VERSION as upgradable): that must stay true."""
    from jepardy.store.migrations import _STEPS

    assert sorted(_STEPS) == list(range(1, SCHEMA_VERSION))
