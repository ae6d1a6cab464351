"""Readers open the database read-only: no lock, no creation, no upgrade.

`status`, `runs`, `show` and `report` must answer at once while a writer holds the lock, work
on a file nobody may write, and never create a database at a mistyped path.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from jepardy.analysis.report import ReportRequest, run_report
from jepardy.errors import UserError
from jepardy.spec.identity import RunIdentity
from jepardy.store.engine import open_reader
from jepardy.store.frames import load_runs, read_runs
from jepardy.store.reader import SEPARATOR
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import open_store

READ_COMMANDS = (["status"], ["runs"], ["report"])


def _filled(path: Path) -> None:
    store = open_store(path)
    store.upsert_sweep("s", "s.toml", "")
    runs = [
        RunIdentity(f"{i:016x}", "s", "main", "control", "", "", seed=i, params={"seed": i})
        for i in (1, 2)
    ]
    store.register_runs(runs, git_commit=None)
    for run in runs:
        result = {"status": "done", "val_bpb": 1.0 + run.seed / 100, "artifact_bytes": 10}
        store.record_result(run.run_id, RunOutcome("done", result=result))
    store.close()


def _jepardy(args: list[str], db: Path, **kw: object) -> subprocess.CompletedProcess[str]:
    code = "from jepardy.cli.app import main; main()"
    argv = [sys.executable, "-c", code, *args, "--db", str(db)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]


@pytest.fixture
def hold_write_lock() -> Iterator[callable]:  # type: ignore[valid-type]
    """Hold a SQLite write transaction (BEGIN IMMEDIATE) on a file until the test ends."""
    held: list[sqlite3.Connection] = []

    def hold(path: Path) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE runs SET reason = 'held' WHERE 0")
        held.append(conn)

    yield hold
    for conn in held:
        conn.rollback()
        conn.close()


def test_a_missing_database_is_one_line_and_nothing_is_created(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    with pytest.raises(UserError, match=f"database {typo} does not exist"):
        open_reader(typo)
    with pytest.raises(UserError, match="does not exist"):
        load_runs(typo)
    for args in (*READ_COMMANDS, ["show", "abc"]):
        done = _jepardy(args, typo)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_readers_answer_while_a_writer_holds_the_lock(tmp_path: Path, hold_write_lock) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "results.db"
    _filled(db)
    hold_write_lock(db)
    for args in READ_COMMANDS:
        started = time.monotonic()
        done = _jepardy(args, db)
        took_s = time.monotonic() - started
        assert done.returncode == 0, (args, done.stderr)
        # A writer would wait its busy timeout (30 s) and retries before failing.
        assert took_s < 20, (args, took_s)
    assert "0000000000000001" in _jepardy(["runs"], db).stdout


def test_a_writer_still_waits_for_the_lock(tmp_path: Path, hold_write_lock) -> None:  # type: ignore[no-untyped-def]
    """The counterpart: the lock is real, so the readers above did not just get lucky."""
    db = tmp_path / "results.db"
    _filled(db)
    store = open_store(db, busy_timeout_ms=50)
    hold_write_lock(db)
    with pytest.raises(UserError, match="is locked by another process"):
        store.upsert_sweep("t", "t.toml", "")


def test_readers_work_on_a_read_only_database() -> None:
    """A results.db in a folder nobody may write (a colleague's, an archive): readable, and
    left byte for byte as it was. Root ignores permission bits, so the
    reader's own connection must also refuse a write: it is opened read-only."""
    folder = Path(tempfile.mkdtemp(prefix="jepardy-ro-"))
    try:
        db = folder / "results.db"
        _filled(db)
        before = db.read_bytes()
        db.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        folder.chmod(0o555)
        for args in READ_COMMANDS:
            done = _jepardy(args, db)
            assert done.returncode == 0, (args, done.stderr)
        assert "0000000000000001" in _jepardy(["runs"], db).stdout
        assert len(load_runs(db)) == 2
        reader = open_reader(db)
        with pytest.raises(sa.exc.OperationalError, match="readonly"), reader.engine.begin() as c:
            c.exec_driver_sql("UPDATE runs SET reason = 'x'")
        reader.close()
        assert db.read_bytes() == before
        # Only SQLite's WAL index may appear, where the reader is allowed to make it (root).
        made = {p.name for p in folder.iterdir()} - {"results.db"}
        assert made <= {"results.db-shm", "results.db-wal"}
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_status_runs_and_report_read_either_backend(store_url: str) -> None:
    """SQLite is read through sqlite3 alone, PostgreSQL through SQLAlchemy's engine: the
    same SQL, the same tables, the same one-line errors."""
    _filled(store_url)  # type: ignore[arg-type]
    store = open_store(store_url)
    running = RunIdentity("00000000000000ff", "s", "main", "jepa", "", "", seed=3, params={})
    store.register_runs([running], git_commit=None)
    store.mark_running(running.run_id, "elsewhere", 4242, "runs/x", ["torchrun"])
    store.close()

    status = _jepardy(["status"], store_url, env={**os.environ, "COLUMNS": "200"})  # type: ignore[arg-type]
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("sweep "))
    assert lines[header].split() == ["sweep", "running", "done", "total"], status.stdout
    assert lines[header + 2].split() == ["s", "1", "2", "3"], status.stdout
    assert "00000000000000ff" in status.stdout and "elsewhere" in status.stdout

    listed = _jepardy(["runs", "--format", "json"], store_url)  # type: ignore[arg-type]
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows["0000000000000001"]["val_bpb"] == 1.01
    assert rows["0000000000000002"]["status"] == "done"
    assert rows["00000000000000ff"]["status"] == "running"

    typo = _jepardy(["runs", "--lane", "mian"], store_url)  # type: ignore[arg-type]
    assert typo.returncode == 2
    assert "no lane 'mian' in the store; did you mean 'main'?" in typo.stderr
    assert _jepardy(["report"], store_url).returncode == 0  # type: ignore[arg-type]


def test_only_the_params_and_result_fields_asked_for_are_read(store_url: str) -> None:
    """A run's params JSON is read where it names a key asked for, a result field where the
    result names it; elsewhere they are missing, as when the key is absent."""
    store = open_store(store_url)
    store.upsert_sweep("s", "s.toml", "")
    params = [{"seed": 1, "iterations": 200}, {"seed": 2}, {"seed": 3, "preset": "tiny"}]
    # The third result holds a NaN, which JSON parsers in SQLite and PostgreSQL refuse.
    nan_result = {"metric_tier": "full", "eval_stride": 64, "tokens_per_s": math.nan}
    results = [{"metric_tier": "sliding window", "val_bpb": 1.1}, {"val_bpb": 1.2}, nan_result]
    runs = [
        RunIdentity(f"{i:016x}", "s", "main", "control", "", "", seed=i, params=p)
        for i, p in enumerate(params, 1)
    ]
    store.register_runs(runs, git_commit=None)
    for run, result in zip(runs, results, strict=True):
        store.record_result(run.run_id, RunOutcome("done", result={"status": "done", **result}))
    store.close()
    frame = read_runs(
        store_url,
        sweep="s",
        status="done",
        columns=["id", "seq", "seed"],
        params=["iterations", "preset", "data_dir"],
        result_fields=["metric_tier", "eval_stride"],
    )
    assert frame["iterations"].tolist()[0] == 200 and pd.isna(frame["iterations"][1:]).all()
    assert frame["preset"].tolist()[2] == "tiny" and pd.isna(frame["preset"][:2]).all()
    assert "data_dir" not in frame.columns  # no run names it
    tiers = frame["result.metric_tier"].tolist()
    assert tiers[0] == "sliding window" and pd.isna(tiers[1]) and tiers[2] == "full"
    strides = frame["result.eval_stride"].tolist()
    assert pd.isna(strides[0]) and pd.isna(strides[1]) and strides[2] == "64"
    assert frame["seed"].tolist() == [1, 2, 3]


def test_key_columns_come_back_exactly_even_with_the_separator(store_url: str) -> None:
    """The key columns are read joined by a separator and split again; a sweep whose value
    holds the separator itself still reads back as written (the columns read one by one)."""
    store = open_store(store_url)
    odd = f"path=a{SEPARATOR}b"
    for sweep, variant in (("odd", odd), ("plain", "path=ab")):
        store.upsert_sweep(sweep, f"{sweep}.toml", "")
        runs = [
            RunIdentity(f"{sweep:a>15}1", sweep, "main", "jepa", variant, "ema=false", 1, {}),
            RunIdentity(f"{sweep:a>15}2", sweep, "main", "control", "", "ema=false", 1, {}),
        ]
        store.register_runs(runs, git_commit=None)
    store.close()
    for sweep, variant in (("odd", odd), ("plain", "path=ab")):
        frame = load_runs(store_url, sweep=sweep, status=None)
        assert frame["variant"].dtype == "category" and frame["status"].dtype == "category"
        rows = frame[["sweep", "lane", "arm", "variant", "match", "status"]].astype(str)
        assert [tuple(row) for row in rows.itertuples(index=False)] == [
            (sweep, "main", "jepa", variant, "ema=false", "pending"),
            (sweep, "main", "control", "", "ema=false", "pending"),
        ]


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("not a database\n" * 100)
    for args in READ_COMMANDS:
        done = _jepardy(args, db)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip().count("\n") == 0 and "file is not a database" in done.stderr


def test_a_locked_database_is_an_error_not_a_stale_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that cannot get past a lock says so; it never falls back to reading the file
    as immutable, which would skip the commits still in the WAL."""
    from jepardy.store import reader

    db = tmp_path / "results.db"
    _filled(db)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA locking_mode = EXCLUSIVE")
    writer.execute("UPDATE runs SET status = 'failed'")  # kept in the WAL, lock kept
    monkeypatch.setattr(reader, "BUSY_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(UserError, match="database is locked"):
            reader.open_rows(db)
    finally:
        writer.close()
    assert set(load_runs(db, status=None)["status"].astype(str)) == {"failed"}


@pytest.mark.parametrize("name", ["a%20b.db", "run?1.db"])
def test_readers_open_the_file_a_writer_made_of_the_same_db(tmp_path: Path, name: str) -> None:
    """`--db` means one file to writers (SQLAlchemy's URL rules) and readers alike."""
    for db in (f"sqlite:///{tmp_path}/{name}", f"{tmp_path}/{name}"):
        for made in tmp_path.iterdir():
            made.unlink()
        store = open_store(db)
        store.upsert_sweep("s", "s.toml", "")
        store.close()
        done = _jepardy(["status"], db)  # type: ignore[arg-type]
        assert done.returncode == 0, (db, done.stderr)


def test_runs_json_keeps_whole_numbers_whole_beside_pending_runs(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    _filled(db)
    store = open_store(db)
    pending = RunIdentity("00000000000000ff", "s", "main", "control", "", "", 9, {"seed": 9})
    store.register_runs([pending], git_commit=None)
    store.close()
    rows = json.loads(_jepardy(["runs", "--format", "json"], db).stdout)
    assert [row["artifact_bytes"] for row in rows] == [10, 10, None]
    assert all(isinstance(row["artifact_bytes"], int | None) for row in rows)
    csv = _jepardy(["runs", "--format", "csv", "--columns", "id,artifact_bytes"], db).stdout
    assert csv.splitlines()[1:] == [
        "0000000000000001,10",
        "0000000000000002,10",
        "00000000000000ff,",
    ]


def test_an_empty_selection_has_the_key_columns_of_a_full_one(tmp_path: Path) -> None:
    """Text categories whether the packed keys were split or not (none: no rows)."""
    db = tmp_path / "results.db"
    _filled(db)
    columns = ["id", "sweep", "lane", "status", "seq"]
    for status in ("done", "failed"):
        frame = read_runs(db, sweep=None, status=status, columns=columns, params=False)
        for name in ("sweep", "lane", "status"):
            assert frame[name].cat.categories.dtype == pd.Index([], dtype=str).dtype, name


def test_a_store_without_a_runs_table_is_one_line(tmp_path: Path) -> None:
    """A schema_info table alone (another tool's file) is not a jepardy store."""
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE schema_info (version INTEGER PRIMARY KEY)")
        connection.execute("INSERT INTO schema_info VALUES (3)")
    connection.close()
    for args in READ_COMMANDS:
        done = _jepardy(args, db)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip() == f"error: database {db} holds no jepardy runs", done.stderr


def test_a_report_closes_what_it_opened(store_url: str) -> None:
    """run_report, called again and again through the API, leaves no connection open: no
    file descriptor on the SQLite file, no PostgreSQL session."""
    _filled(store_url)  # type: ignore[arg-type]
    request = ReportRequest(fmt="json")

    def held() -> int:
        if store_url.startswith("sqlite"):
            path = Path(store_url.removeprefix("sqlite:///")).resolve()
            fds = Path("/proc/self/fd").iterdir()
            return sum(1 for fd in fds if Path(os.path.realpath(fd)) == path)
        engine = sa.create_engine(store_url)
        with engine.connect() as connection:
            sessions = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            ).scalar_one()
        engine.dispose()
        return int(sessions) - 1  # this query's own

    before = held()
    for _ in range(5):
        run_report(store_url, request)
    assert held() == before
