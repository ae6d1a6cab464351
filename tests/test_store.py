"""The store's contract, run against every backend (`store_url`: a SQLite file, a fresh
PostgreSQL database): schema, transitions, pandas access, locking. SQLite-only behaviour
(WAL, a file locked by another program, plain paths) is tested on SQLite alone."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from jepardy.errors import UserError
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import SCHEMA_VERSION, RunOutcome, RunStatus
from jepardy.store.transitions import Store, TransitionError, open_store

Planned = partial(
    RunIdentity,
    sweep="smoke",
    lane="isolation",
    arm="control",
    variant="",
    match="wallclock_s=180",
    seed=1,
)

RESULT = {
    "status": "done",
    "reason": "",
    "val_loss": 2.5,
    "val_bpb": 1.25,
    "prequant_val_loss": 2.4,
    "prequant_val_bpb": 1.2,
    "artifact_bytes": 15_000_000,
    "model_bytes": 14_900_000,
    "code_bytes": 100_000,
    "under_cap": True,
    "code_sha256": "ab" * 32,
    "code_files": {"jepardy/trainer/train.py": {"bytes": 10, "sha256": "cd" * 32}},
    "steps": 200,
    "train_time_s": 12.5,
    "eval_time_s": 1.5,
    "tokens_per_s": 65536.0,
    "jepa_loss": 0.75,
    "jepa_pred_std": 0.5,
    "n_params": 12345,
    "world_size": 1,
    "device": "cpu",
    "torch_version": "2.3.0",
}
METRICS = [
    {"step": 0, "name": "train_loss", "value": 6.9},
    {"step": 1, "name": "train_loss", "value": math.nan},
    {"step": 1, "name": "lr", "value": math.inf},
    {"step": 2, "name": "val_bpb", "value": 1.25},
]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.db'}"


def _open(url: str, **kwargs: Any) -> Store:
    store = open_store(url, **kwargs)
    store.upsert_sweep("smoke", "specs/smoke.toml", "[sweep]\nname = 'smoke'\n")
    return store


@contextmanager
def _engine(url: str) -> Iterator[sa.Engine]:
    """A plain engine on the store's database, as another program (or pandas) would use."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with _engine(url) as engine, engine.connect() as connection:
        return [tuple(row) for row in connection.exec_driver_sql(sql)]


def _execute(url: str, sql: str) -> None:
    with _engine(url) as engine, engine.begin() as connection:
        connection.exec_driver_sql(sql)


def _database(url: str) -> str:
    """What a store's messages call the database: the SQLite path or the PostgreSQL name."""
    name = sa.make_url(url).database
    assert name
    return name


@contextmanager
def _write_held(url: str) -> Iterator[None]:
    """Another store holds a write transaction on the database until the block ends."""
    holder = open_store(url)
    try:
        with holder._session(write=True) as session:
            session.execute(sa.select(1))
            yield
    finally:
        holder.close()


def test_schema_and_version_row(store_url: str) -> None:
    store = _open(store_url)
    with _engine(store_url) as engine:
        inspector = sa.inspect(engine)
        assert {"schema_info", "sweeps", "runs", "metrics"} <= set(inspector.get_table_names())
        indexes = {index["name"] for index in inspector.get_indexes("runs")}
        assert {"ix_runs_sweep_lane_arm", "ix_runs_status"} <= indexes
    assert _query(store_url, "SELECT version FROM schema_info") == [(SCHEMA_VERSION,)]
    store.close()
    # Opening again neither fails nor adds a second version row.
    open_store(store_url).close()
    assert _query(store_url, "SELECT version FROM schema_info") == [(SCHEMA_VERSION,)]


def test_status_check_constraint(store_url: str) -> None:
    store = _open(store_url)
    store.register_runs([Planned("a" * 16)], git_commit=None)
    with pytest.raises(sa.exc.IntegrityError):
        _execute(store_url, "UPDATE runs SET status = 'exploded'")


def test_sweep_upsert_keeps_one_row(store_url: str) -> None:
    store = _open(store_url)
    store.upsert_sweep("smoke", "specs/smoke.toml", "changed")
    rows = _query(store_url, "SELECT name, spec_text, spec_sha256 FROM sweeps")
    assert [(name, text) for name, text, _ in rows] == [("smoke", "changed")]
    assert len(rows[0][2]) == 64
    assert store.sweep_names() == ["smoke"]


def test_register_twice_adds_nothing(store_url: str) -> None:
    store = _open(store_url)
    runs = [
        Planned("a" * 16, params={"jepa_weight": 0.1, "ema": True, "wallclock_s": 180}),
        Planned("b" * 16, arm="jepa", params={}),
    ]
    store.register_runs(runs, git_commit="deadbeef")
    store.mark_running("a" * 16, "host", 42, "runs/a", ["torchrun"])
    store.register_runs([*runs, Planned("c" * 16)], git_commit="other")

    rows = _query(store_url, "SELECT id, status, git_commit, seq FROM runs ORDER BY seq")
    assert rows == [
        ("a" * 16, "running", "deadbeef", 1),
        ("b" * 16, "pending", "deadbeef", 2),
        ("c" * 16, "pending", "other", 3),
    ]
    frame = store.runs_frame("smoke").set_index("id")
    assert frame.loc["a" * 16, ["jepa_weight", "ema", "wallclock_s"]].tolist() == [0.1, True, 180.0]
    # Absent params: jepa_weight 0.0, ema False, wallclock_s NULL.
    assert frame.loc["b" * 16, "jepa_weight"] == 0.0
    assert not frame.loc["b" * 16, "ema"]
    assert math.isnan(frame.loc["b" * 16, "wallclock_s"])
    assert json.loads(frame.loc["a" * 16, "params"])["wallclock_s"] == 180


def test_register_needs_recorded_sweep(store_url: str) -> None:
    store = _open(store_url)
    with pytest.raises(LookupError, match="upsert_sweep"):
        store.register_runs([Planned("a" * 16, sweep="nope")], git_commit=None)


def test_pending_running_done_with_results_and_metrics(store_url: str) -> None:
    store = _open(store_url)
    run_id = "a" * 16
    store.register_runs([Planned(run_id)], git_commit=None)
    assert store.statuses([run_id, "f" * 16]) == {run_id: RunStatus.PENDING}

    store.mark_running(run_id, "node1", 1234, "runs/a", ["torchrun", "-m", "jepardy.trainer"])
    assert store.statuses([run_id]) == {run_id: RunStatus.RUNNING}
    with pytest.raises(TransitionError, match="is running"):
        store.mark_running(run_id, "node2", 99, "runs/a", [])

    store.record_result(
        run_id,
        RunOutcome(status="done", exit_code=0, result=RESULT, metrics=METRICS, log_tail="ok"),
    )
    assert store.statuses([run_id]) == {run_id: RunStatus.DONE}
    with pytest.raises(TransitionError, match="is done"):
        store.mark_running(run_id, "node2", 99, "runs/a", [])

    row = store.runs_frame().iloc[0]
    assert row["status"] == "done"
    assert (row["host"], row["pid"], row["run_dir"]) == ("node1", 1234, "runs/a")
    assert json.loads(row["command"]) == ["torchrun", "-m", "jepardy.trainer"]
    for name in ("val_bpb", "val_loss", "artifact_bytes", "steps", "jepa_pred_std"):
        assert row[name] == RESULT[name]
    assert row["under_cap"]
    assert row["exit_code"] == 0
    assert row["log_tail"] == "ok"
    assert json.loads(row["result"]) == RESULT
    assert str(row["started_at"].tzinfo) == "UTC"
    assert row["finished_at"] >= row["started_at"] >= row["created_at"]

    metrics = _query(store_url, "SELECT step, name, value, kind FROM metrics ORDER BY id")
    assert metrics == [
        (0, "train_loss", 6.9, "finite"),
        (1, "train_loss", None, "nan"),
        (1, "lr", None, "inf"),
        (2, "val_bpb", 1.25, "finite"),
    ]


def test_big_and_boolean_results_round_trip(store_url: str) -> None:
    store = _open(store_url)
    run_id = "a" * 16
    store.register_runs([Planned(run_id)], git_commit=None)
    over_int32 = {**RESULT, "artifact_bytes": 2**40, "under_cap": False}
    store.record_result(run_id, RunOutcome(status="done", result=over_int32, metrics=[]))
    row = store.runs_frame().iloc[0]
    assert row["artifact_bytes"] == 2**40
    assert row["under_cap"] is False or not row["under_cap"]
    assert json.loads(row["result"])["artifact_bytes"] == 2**40


def test_record_again_replaces_metrics(store_url: str) -> None:
    store = _open(store_url)
    run_id = "a" * 16
    store.register_runs([Planned(run_id)], git_commit=None)
    store.record_result(
        run_id, RunOutcome(status="failed", reason="nan", result=None, metrics=METRICS)
    )
    store.mark_running(run_id, "node1", 1, "runs/a", [])
    store.record_result(
        run_id, RunOutcome(status=RunStatus.DONE, result=RESULT, metrics=METRICS[:1])
    )
    assert _query(store_url, "SELECT count(*) FROM metrics") == [(1,)]
    assert _query(store_url, "SELECT status, reason, val_bpb FROM runs") == [("done", "", 1.25)]


def test_failed_result_without_numbers(store_url: str) -> None:
    store = _open(store_url)
    run_id = "a" * 16
    store.register_runs([Planned(run_id)], git_commit=None)
    store.mark_running(run_id, "node1", 1, "runs/a", [])
    failed = {"status": "failed", "reason": "nan", "val_bpb": math.nan, "steps": 3}
    store.record_result(
        run_id, RunOutcome(status="failed", reason="nan", exit_code=1, result=failed, metrics=[])
    )
    row = store.runs_frame().iloc[0]
    assert (row["status"], row["reason"], row["exit_code"], row["steps"]) == ("failed", "nan", 1, 3)
    assert pd.isna(row["val_bpb"]) and pd.isna(row["artifact_bytes"])


def test_record_result_refuses_bad_input(store_url: str) -> None:
    store = _open(store_url)
    store.register_runs([Planned("a" * 16)], git_commit=None)
    with pytest.raises(ValueError, match="terminal"):
        store.record_result("a" * 16, RunOutcome(status="running", result=None, metrics=[]))
    with pytest.raises(KeyError):
        store.record_result("f" * 16, RunOutcome(status="done", result=None, metrics=[]))
    with pytest.raises(UserError, match="'val_bpb' should be float"):
        store.record_result(
            "a" * 16, RunOutcome(status="done", result={"val_bpb": "1.2"}, metrics=[])
        )


def test_pandas_reads_typed_columns(store_url: str) -> None:
    store = _open(store_url)
    store.register_runs([Planned("a" * 16), Planned("b" * 16, seed=2)], git_commit=None)
    store.record_result("a" * 16, RunOutcome(status="done", result=RESULT, metrics=[]))
    store.close()

    with _engine(store_url) as engine:
        frame = pd.read_sql("runs", engine)
    assert len(frame) == 2
    assert pd.api.types.is_float_dtype(frame["val_bpb"])
    assert pd.api.types.is_float_dtype(frame["jepa_weight"])
    assert pd.api.types.is_integer_dtype(frame["seed"])
    assert pd.api.types.is_datetime64_any_dtype(frame["created_at"])
    assert frame.set_index("id").loc["a" * 16, "val_bpb"] == 1.25
    assert isinstance(frame.loc[0, "params"], str)


def test_locked_database_is_a_one_line_user_error(store_url: str) -> None:
    store = _open(store_url, busy_timeout_ms=100)
    store.register_runs([Planned("a" * 16), Planned("b" * 16, seed=2)], git_commit=None)
    store.record_result("a" * 16, RunOutcome(status="done", result=RESULT, metrics=METRICS))
    store.mark_running("b" * 16, "node1", 1, "runs/b", [])

    with _write_held(store_url), pytest.raises(UserError) as caught:
        store.record_result("b" * 16, RunOutcome(status="done", result=RESULT, metrics=METRICS))
    message = str(caught.value)
    assert "\n" not in message
    assert _database(store_url) in message and "locked" in message

    # Nothing of the refused write landed; reads never waited.
    assert store.statuses(["a" * 16, "b" * 16]) == {
        "a" * 16: RunStatus.DONE,
        "b" * 16: RunStatus.RUNNING,
    }
    assert _query(store_url, "SELECT run_id, count(*) FROM metrics GROUP BY run_id") == [
        ("a" * 16, len(METRICS))
    ]
    # Once the lock is gone the same call succeeds.
    store.record_result("b" * 16, RunOutcome(status="done", result=RESULT, metrics=METRICS))
    assert store.statuses(["b" * 16]) == {"b" * 16: RunStatus.DONE}


def test_write_retries_past_a_short_lock(store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A lock held longer than one busy timeout but shorter than the retries is waited out."""
    caplog.set_level(logging.INFO, logger="jepardy.store.engine")
    store = _open(store_url, busy_timeout_ms=100)
    store.register_runs([Planned("a" * 16)], git_commit=None)
    metrics = iter(METRICS)  # an iterator: a retried write must not consume it twice
    errors: list[BaseException] = []

    def record() -> None:
        try:
            store.record_result("a" * 16, RunOutcome(status="done", result=RESULT, metrics=metrics))
        except BaseException as exc:
            errors.append(exc)

    with _write_held(store_url):
        writer = threading.Thread(target=record)
        writer.start()
        writer.join(0.3)  # the lock outlasts the first try's 100 ms
    writer.join(10)
    assert errors == []
    assert "busy (try 1)" in caplog.text
    assert store.statuses(["a" * 16]) == {"a" * 16: RunStatus.DONE}
    assert _query(store_url, "SELECT count(*) FROM metrics") == [(len(METRICS),)]


def test_unopenable_database_is_a_one_line_user_error(store_url: str, tmp_path: Path) -> None:
    url = sa.make_url(store_url)
    if url.get_backend_name() == "sqlite":
        bad = url.set(database=str(tmp_path / "no" / "such" / "dir" / "results.db"))
    else:
        bad = url.set(database=f"{url.database}_missing")
    with pytest.raises(UserError, match=f"cannot open database .*{Path(bad.database).name}") as e:
        open_store(bad.render_as_string(hide_password=False))
    assert "\n" not in str(e.value)
    if url.password:
        assert f":{url.password}@" not in str(e.value)


def test_other_schema_version_is_refused(store_url: str) -> None:
    _open(store_url).close()
    _execute(store_url, "UPDATE schema_info SET version = 99")
    with pytest.raises(UserError, match="schema version"):
        open_store(store_url)


# --- SQLite only ---


def test_unknown_driver_names_it() -> None:
    with pytest.raises(UserError, match="nosuchdriver://x"):
        open_store("nosuchdriver://x")


@pytest.mark.parametrize(
    "url", ["postgresql+nodriver://me:hunter2@host/db", "postgresql://me:hunter2@host:port/db"]
)
def test_an_unloadable_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(UserError, match="cannot open database") as refused:
        open_store(url)
    assert "hunter2" not in str(refused.value) and "me:***@host" in str(refused.value)


def test_plain_path_means_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    open_store(path).close()
    open_store(str(path)).close()
    assert _query(f"sqlite:///{path}", "SELECT version FROM schema_info") == [(SCHEMA_VERSION,)]


def test_wal_mode_is_on(sqlite_url: str) -> None:
    store = _open(sqlite_url)
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # WAL is persistent: a plain connection sees it too.
    assert _query(sqlite_url, "PRAGMA journal_mode") == [("wal",)]


def test_file_locked_by_another_program(sqlite_url: str) -> None:
    store = _open(sqlite_url, busy_timeout_ms=100)
    store.register_runs([Planned("a" * 16)], git_commit=None)
    holder = sqlite3.connect(_database(sqlite_url), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(UserError, match=r"^database .*results\.db is locked") as caught:
            store.record_result("a" * 16, RunOutcome(status="done", result=RESULT, metrics=METRICS))
        assert "\n" not in str(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.record_result("a" * 16, RunOutcome(status="done", result=RESULT, metrics=METRICS))
    assert store.statuses(["a" * 16]) == {"a" * 16: RunStatus.DONE}
