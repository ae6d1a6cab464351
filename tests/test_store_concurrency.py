"""16 real processes write one database at once (a SQLite file, a PostgreSQL database).

Every process opens the fresh database at the same moment (so the schema is created under
contention), records the shared sweep, registers its own runs plus runs every process shares,
claims and records its own runs with metrics, heartbeats the shared sweep's running runs, and
races the others to claim each shared run. Afterwards every row is there with its result, each
shared run was claimed exactly once, and no process saw an error.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
import traceback
from functools import partial
from typing import Any

import pytest

from jepardy.spec.identity import RunIdentity
from jepardy.store.states import JobRecord, RunOutcome, RunStatus
from jepardy.store.transitions import TransitionError, open_store

PROCESSES = 16
OWN_RUNS = 4  # per process
SHARED_RUNS = 8  # registered and raced for by every process
METRICS_PER_RUN = 20
SWEEP = "concurrent"
TIMEOUT_S = 90
PRELOAD = [
    "jepardy.store.transitions",
    "pytest",
    "psycopg",
    "sqlalchemy.dialects.postgresql.psycopg",
]


Planned = partial(
    RunIdentity, sweep=SWEEP, lane="main", arm="control", variant="", match="", seed=1
)


def _own_id(worker: int, index: int) -> str:
    return f"w{worker:02d}r{index:012d}"


def _shared_id(index: int) -> str:
    return f"shared{index:010d}"


def _val_bpb(run_id: str) -> float:
    """A result value that tells the runs apart."""
    return 1.0 + (sum(map(ord, run_id)) % 997) / 1000


def _record(store: Any, run_id: str) -> None:
    metrics = [
        {"step": step, "name": "train_loss", "value": 5.0 - step / 10}
        for step in range(METRICS_PER_RUN)
    ]
    result = {"status": "done", "val_bpb": _val_bpb(run_id), "steps": METRICS_PER_RUN}
    store.record_result(
        run_id, RunOutcome(status="done", exit_code=0, result=result, metrics=metrics)
    )


def _work(worker: int, url: str, start: Any) -> dict[str, Any]:
    """One orchestrator's writes; returns the shared runs it won and its timings."""
    start.wait(TIMEOUT_S)
    began = time.monotonic()
    store = open_store(url)
    opened = time.monotonic()
    store.upsert_sweep(SWEEP, "specs/concurrent.toml", "[sweep]\nname = 'concurrent'\n")
    own = [_own_id(worker, index) for index in range(OWN_RUNS)]
    shared = [_shared_id(index) for index in range(SHARED_RUNS)]
    store.register_runs([Planned(run_id, seed=worker) for run_id in [*own, *shared]], "abc")
    won = []
    for index, run_id in enumerate(own):
        store.mark_running(run_id, "host", os.getpid(), f"runs/{run_id}", ["torchrun"])
        store.set_jobs([JobRecord(run_id, str(os.getpid()), "RUNNING", "host", "0")])
        # Shared rows too: a heartbeat refreshes only the caller's, and reads every one.
        store.heartbeat(own[: index + 1] + shared, "host", os.getpid())
        _record(store, run_id)
        won += _race_for(store, shared[index::OWN_RUNS])
    store.close()
    return {"won": won, "open_s": opened - began, "total_s": time.monotonic() - began}


def _race_for(store: Any, run_ids: list[str]) -> list[str]:
    """Try to claim each run; record the ones this process won, and return them."""
    won = []
    for run_id in run_ids:
        try:
            store.mark_running(run_id, "host", os.getpid(), "runs/shared", [])
        except TransitionError:
            continue
        won.append(run_id)
        _record(store, run_id)
    return won


def _worker(worker: int, url: str, start: Any, results: Any) -> None:
    """Run `_work` and report its outcome, or the traceback of any error, to the parent."""
    try:
        results.put((worker, _work(worker, url, start)))
    except BaseException:
        results.put((worker, {"error": traceback.format_exc()}))


def _run_workers(url: str) -> dict[int, dict[str, Any]]:
    """Start the workers, wait for every outcome, and reap them.

    They are forked from a forkserver, a clean process that imported the store, the drivers
    and pytest once (not forked from pytest itself, whose connections they must not share):
    16 fresh imports of pandas, SQLAlchemy and psycopg would cost more than the writes on 2
    cores. A module that fails to preload is imported by each worker instead.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=_worker, args=(worker, url, start, results))
        for worker in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        return _collect(processes, results)
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()


def _collect(processes: list[Any], results: Any) -> dict[int, dict[str, Any]]:
    """Every worker's outcome; one that died or hung past TIMEOUT_S gets an error outcome."""
    outcomes: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(outcomes) < len(processes) and time.monotonic() < deadline:
        try:
            worker, outcome = results.get(timeout=1)
        except queue.Empty:
            if not any(p.is_alive() for w, p in enumerate(processes) if w not in outcomes):
                break  # the missing ones died without a word
            continue
        outcomes[worker] = outcome
    for worker, process in enumerate(processes):
        silent = {
            "error": f"no outcome reported (alive: {process.is_alive()}, "
            f"exit code {process.exitcode})"
        }
        outcomes.setdefault(worker, silent)
    return outcomes


def test_sixteen_processes_record_every_row(store_url: str) -> None:
    outcomes = _run_workers(store_url)

    errors = {worker: out["error"] for worker, out in outcomes.items() if "error" in out}
    assert not errors, "\n".join(f"worker {w}:\n{e}" for w, e in errors.items())
    won = [run_id for out in outcomes.values() for run_id in out["won"]]
    assert sorted(won) == [_shared_id(index) for index in range(SHARED_RUNS)]  # once each

    store = open_store(store_url)
    frame = store.runs_frame(SWEEP).set_index("id")
    expected = {_own_id(w, i) for w in range(PROCESSES) for i in range(OWN_RUNS)}
    expected |= {_shared_id(index) for index in range(SHARED_RUNS)}
    assert set(frame.index) == expected
    assert (frame["status"] == RunStatus.DONE.value).all()
    assert frame["seq"].is_unique  # registration order survived the race
    for run_id, row in frame.iterrows():
        assert row["val_bpb"] == pytest.approx(_val_bpb(str(run_id)))
        assert row["attempts"] == 1
    with store.engine.connect() as connection:
        counts = connection.exec_driver_sql("SELECT run_id, count(*) FROM metrics GROUP BY run_id")
        assert dict(counts.all()) == dict.fromkeys(expected, METRICS_PER_RUN)
    store.close()

    slowest = max(out["total_s"] for out in outcomes.values())
    slowest_open = max(out["open_s"] for out in outcomes.values())
    print(
        f"{PROCESSES} processes: slowest open {slowest_open:.2f} s, slowest total {slowest:.2f} s"
    )
