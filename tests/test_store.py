"""The sweep database on real SQLite files: schema, transitions, pandas access, locking."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from jepardy.errors import UserError
from jepardy.store import SCHEMA_VERSION, RunStatus, Store, TransitionError, open_store


@dataclass(frozen=True)
class Planned:
    """A stand-in for jepardy.spec.PlannedRun with the attributes the store reads."""

    run_id: str
    sweep: str = "smoke"
    lane: str = "isolation"
    arm: str = "control"
    variant: str = ""
    match: str = "wallclock_s=180"
    seed: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    nproc: int = 1
    kind: str = "jepardy"


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


def _open(tmp_path: Path, **kwargs: Any) -> tuple[Store, Path]:
    path = tmp_path / "results.db"
    store = open_store(str(path), **kwargs)
    store.upsert_sweep("smoke", "specs/smoke.toml", "[sweep]\nname = 'smoke'\n")
    return store, path


def _sqlite(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


def test_schema_and_version_row(tmp_path: Path) -> None:
    store, path = _open(tmp_path)
    tables = {name for (name,) in _sqlite(path, "SELECT name FROM sqlite_master")}
    assert {"schema_info", "sweeps", "runs", "metrics"} <= tables
    assert {"ix_runs_sweep_lane_arm", "ix_runs_status"} <= tables
    assert _sqlite(path, "SELECT version FROM schema_info") == [(SCHEMA_VERSION,)]
    store.close()
    # Opening again neither fails nor adds a second version row.
    open_store(path).close()
    assert _sqlite(path, "SELECT version FROM schema_info") == [(SCHEMA_VERSION,)]


def test_status_check_constraint(tmp_path: Path) -> None:
    _store, path = _open(tmp_path)
    _store.register_runs([Planned("a" * 16)], git_commit=None)
    with pytest.raises(sqlite3.IntegrityError):
        _sqlite(path, "UPDATE runs SET status = 'exploded'")


def test_sweep_upsert_keeps_one_row(tmp_path: Path) -> None:
    store, path = _open(tmp_path)
    store.upsert_sweep("smoke", "specs/smoke.toml", "changed")
    rows = _sqlite(path, "SELECT name, spec_text, spec_sha256 FROM sweeps")
    assert [(name, text) for name, text, _ in rows] == [("smoke", "changed")]
    assert len(rows[0][2]) == 64
    assert store.sweep_names() == ["smoke"]


def test_register_twice_adds_nothing(tmp_path: Path) -> None:
    store, path = _open(tmp_path)
    runs = [
        Planned("a" * 16, params={"jepa_weight": 0.1, "ema": True, "wallclock_s": 180}),
        Planned("b" * 16, arm="jepa", params={}),
    ]
    store.register_runs(runs, git_commit="deadbeef")
    store.mark_running("a" * 16, "host", 42, "runs/a", ["torchrun"])
    store.register_runs([*runs, Planned("c" * 16)], git_commit="other")

    rows = _sqlite(path, "SELECT id, status, git_commit, seq FROM runs ORDER BY seq")
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


def test_register_needs_recorded_sweep(tmp_path: Path) -> None:
    store, _ = _open(tmp_path)
    with pytest.raises(LookupError, match="upsert_sweep"):
        store.register_runs([Planned("a" * 16, sweep="nope")], git_commit=None)


def test_pending_running_done_with_results_and_metrics(tmp_path: Path) -> None:
    store, path = _open(tmp_path)
    run_id = "a" * 16
    store.register_runs([Planned(run_id)], git_commit=None)
    assert store.statuses([run_id, "f" * 16]) == {run_id: RunStatus.PENDING}

    store.mark_running(run_id, "node1", 1234, "runs/a", ["torchrun", "-m", "jepardy.trainer"])
    assert store.statuses([run_id]) == {run_id: RunStatus.RUNNING}
    with pytest.raises(TransitionError, match="is running"):
        store.mark_running(run_id, "node2", 99, "runs/a", [])

    store.record_result(
        run_id, status="done", exit_code=0, result=RESULT, metrics=METRICS, log_tail="ok"
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
    assert row["started_at"].tzinfo is not None
    assert row["finished_at"] >= row["started_at"] >= row["created_at"]

    metrics = _sqlite(path, "SELECT step, name, value, kind FROM metrics ORDER BY id")
    assert metrics == [
        (0, "train_loss", 6.9, "finite"),
        (1, "train_loss", None, "nan"),
        (1, "lr", None, "inf"),
        (2, "val_bpb", 1.25, "finite"),
    ]


def test_record_again_replaces_metrics(tmp_path: Path) -> None:
    store, path = _open(tmp_path)
    run_id = "a" * 16
    store.register_runs([Planned(run_id)], git_commit=None)
    store.record_result(run_id, status="failed", reason="nan", result=None, metrics=METRICS)
    store.mark_running(run_id, "node1", 1, "runs/a", [])
    store.record_result(run_id, status=RunStatus.DONE, result=RESULT, metrics=METRICS[:1])
    assert _sqlite(path, "SELECT count(*) FROM metrics") == [(1,)]
    assert _sqlite(path, "SELECT status, reason, val_bpb FROM runs") == [("done", "", 1.25)]


def test_failed_result_without_numbers(tmp_path: Path) -> None:
    store, _ = _open(tmp_path)
    run_id = "a" * 16
    store.register_runs([Planned(run_id)], git_commit=None)
    store.mark_running(run_id, "node1", 1, "runs/a", [])
    failed = {"status": "failed", "reason": "nan", "val_bpb": math.nan, "steps": 3}
    store.record_result(
        run_id, status="failed", reason="nan", exit_code=1, result=failed, metrics=[]
    )
    row = store.runs_frame().iloc[0]
    assert (row["status"], row["reason"], row["exit_code"], row["steps"]) == ("failed", "nan", 1, 3)
    assert pd.isna(row["val_bpb"]) and pd.isna(row["artifact_bytes"])


def test_record_result_refuses_bad_input(tmp_path: Path) -> None:
    store, _ = _open(tmp_path)
    store.register_runs([Planned("a" * 16)], git_commit=None)
    with pytest.raises(ValueError, match="terminal"):
        store.record_result("a" * 16, status="running", result=None, metrics=[])
    with pytest.raises(KeyError):
        store.record_result("f" * 16, status="done", result=None, metrics=[])
    with pytest.raises(UserError, match="'val_bpb' should be float"):
        store.record_result("a" * 16, status="done", result={"val_bpb": "1.2"}, metrics=[])


def test_pandas_reads_typed_columns(tmp_path: Path) -> None:
    store, path = _open(tmp_path)
    store.register_runs([Planned("a" * 16), Planned("b" * 16, seed=2)], git_commit=None)
    store.record_result("a" * 16, status="done", result=RESULT, metrics=[])
    store.close()

    frame = pd.read_sql("runs", sa.create_engine(f"sqlite:///{path}"))
    assert len(frame) == 2
    assert pd.api.types.is_float_dtype(frame["val_bpb"])
    assert pd.api.types.is_float_dtype(frame["jepa_weight"])
    assert pd.api.types.is_integer_dtype(frame["seed"])
    assert pd.api.types.is_datetime64_any_dtype(frame["created_at"])
    assert frame.set_index("id").loc["a" * 16, "val_bpb"] == 1.25
    assert isinstance(frame.loc[0, "params"], str)


def test_wal_mode_is_on(tmp_path: Path) -> None:
    store, path = _open(tmp_path)
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # WAL is persistent: a plain connection sees it too.
    assert _sqlite(path, "PRAGMA journal_mode") == [("wal",)]


def test_locked_database_is_a_one_line_user_error(tmp_path: Path) -> None:
    store, path = _open(tmp_path, busy_timeout_ms=100)
    store.register_runs([Planned("a" * 16), Planned("b" * 16, seed=2)], git_commit=None)
    store.record_result("a" * 16, status="done", result=RESULT, metrics=METRICS)
    store.mark_running("b" * 16, "node1", 1, "runs/b", [])

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(UserError) as caught:
            store.record_result("b" * 16, status="done", result=RESULT, metrics=METRICS)
        message = str(caught.value)
        assert "\n" not in message
        assert str(path) in message and "locked" in message
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert store.statuses(["a" * 16, "b" * 16]) == {
        "a" * 16: RunStatus.DONE,
        "b" * 16: RunStatus.RUNNING,
    }
    assert _sqlite(path, "SELECT run_id, count(*) FROM metrics GROUP BY run_id") == [
        ("a" * 16, len(METRICS))
    ]
    # Once the lock is gone the same call succeeds.
    store.record_result("b" * 16, status="done", result=RESULT, metrics=METRICS)
    assert store.statuses(["b" * 16]) == {"b" * 16: RunStatus.DONE}


def test_unopenable_url_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "results.db"
    with pytest.raises(UserError, match=f"cannot open database .*{missing.name}"):
        open_store(missing)
    with pytest.raises(UserError, match="nosuchdriver://x"):
        open_store("nosuchdriver://x")


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    store, path = _open(tmp_path)
    store.close()
    _sqlite(path, "UPDATE schema_info SET version = 99")
    with pytest.raises(UserError, match="schema version"):
        open_store(path)
