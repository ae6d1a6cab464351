"""Cancelling and taking over runs: the store's guarded transitions (on SQLite and
PostgreSQL), a tracker that loses a run to `cancel` from elsewhere, and `jepardy cancel` on a
local sweep with real processes."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from jobs import FakeRun, SleepLauncher, ledger_spec, register, timings
from test_sweep_e2e import pid_alive

from jepardy.launch import tracker as tracker_module
from jepardy.launch.local_executor import LocalExecutor
from jepardy.launch.slots import DevicePool
from jepardy.launch.tracker import JobTracker
from jepardy.store.states import JobRecord, RunOutcome, RunStatus
from jepardy.store.transitions import Store, open_store

LEDGER_SCRIPT = Path(__file__).parent / "ledger_train_gpt.py"
DONE = {"status": "done", "val_bpb": 1.5}


def test_cancelled_rows_refuse_late_verdicts_but_not_results(store_url: str) -> None:
    store = open_store(store_url)
    runs = [FakeRun("a"), FakeRun("b"), FakeRun("c")]
    register(store, runs)
    for run in runs:
        store.mark_running(run.run_id, "h", 7, f"/r/{run.run_id}", ["x"])
    store.set_jobs([JobRecord("a", "101", "RUNNING", "h"), JobRecord("b", "102", "RUNNING", "h")])
    claims = store.cancel_running(["a", "b", "pending-unknown"])
    assert sorted((c.run_id, c.job_id, c.executor) for c in claims) == [
        ("a", "101", "local"),
        ("b", "102", "local"),
    ]
    assert store.heartbeat(["a", "b", "c"], "h", 7) == ["a", "b"]  # lost to the cancel
    # Its orchestrator's verdict lands too late: the row stays cancelled...
    assert not store.record_result(
        "a", RunOutcome(status="failed", result=None, metrics=[]), holder=("h", 7)
    )
    # ... but a real result is never thrown away.
    assert store.record_result(
        "b", RunOutcome(status="done", result=DONE, metrics=[]), holder=("h", 7)
    )
    assert store.record_result(
        "c", RunOutcome(status="failed", result=None, metrics=[]), holder=("h", 7)
    )
    statuses = store.statuses(["a", "b", "c"])
    assert statuses == {"a": RunStatus.CANCELLED, "b": RunStatus.DONE, "c": RunStatus.FAILED}
    store.mark_running("a", "h", 8, "/r/a", ["x"])  # a cancelled run can be claimed again
    assert store.cancel_running(["b", "c"]) == []  # ended runs are not cancelled


def test_only_one_orchestrator_takes_over_a_claim(store_url: str) -> None:
    store = open_store(store_url)
    register(store, [FakeRun("a")])
    store.mark_running("a", "gone-host", 1, "/r/a", ["x"], executor="slurm")
    [claim] = store.running_claims(["a"])
    assert store.adopt(claim, "h", 2)
    assert not store.adopt(claim, "h", 3)  # the claim it read is no longer the row's
    [now] = store.running_claims(["a"])
    assert (now.host, now.pid, now.executor) == ("h", 2, "slurm")
    assert not store.record_result(
        "a", RunOutcome(status="failed", result=None, metrics=[]), holder=("h", 3)
    )


def test_a_run_cancelled_elsewhere_is_stopped_at_the_next_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`jepardy cancel` on another machine can only mark the row: the tracker that holds it
    sees that at its heartbeat, stops the job and leaves the row cancelled."""
    monkeypatch.setattr(tracker_module, "HEARTBEAT_S", 0.2)
    store = open_store(tmp_path / "results.db")
    runs = [FakeRun("long", params={"sleep_s": 60}), FakeRun("short", params={"sleep_s": 0.3})]
    register(store, runs)
    tracker = _local_tracker(store, tmp_path, slots=2)

    def cancel_when_running() -> None:
        while store.statuses(["long"])["long"] is not RunStatus.RUNNING:
            time.sleep(0.05)
        store.cancel_running(["long"])

    threading.Thread(target=cancel_when_running, daemon=True).start()
    started = time.monotonic()
    tracker.run(runs)
    assert time.monotonic() - started < 15  # not the job's 60 s
    frame = store.runs_frame().set_index("id")
    assert frame.loc["long", "status"] == "cancelled"
    assert frame.loc["short", "status"] == "done"
    assert tracker.outcomes["long"].status == "cancelled"
    assert not pid_alive(timings(tmp_path / "runs", runs)["long"]["pid"])


def test_a_local_run_taken_over_elsewhere_has_its_job_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another orchestrator that thought this one gone took the run over: it runs (or
    recovers) the run itself, so this copy of the job is stopped and the row left alone."""
    monkeypatch.setattr(tracker_module, "HEARTBEAT_S", 0.2)
    store = open_store(tmp_path / "results.db")
    runs = [FakeRun("long", params={"sleep_s": 60})]
    register(store, runs)
    tracker = _local_tracker(store, tmp_path, slots=1)

    def take_over_when_running() -> None:
        # Running means the job's process has started (it writes timing.json first thing),
        # not only that its id is recorded: on a loaded machine the two are seconds apart.
        while (
            not (claims := store.running_claims(["long"]))
            or not claims[0].job_id
            or not timings(tmp_path / "runs", runs)
        ):
            time.sleep(0.05)
        assert store.adopt(claims[0], "other-host", 4242)

    threading.Thread(target=take_over_when_running, daemon=True).start()
    tracker.run(runs)
    [claim] = store.running_claims(["long"])
    assert (claim.host, claim.pid) == ("other-host", 4242)  # untouched by this tracker
    assert tracker.outcomes["long"].status == "running"
    assert tracker.outcomes["long"].reason == "taken over by another sweep"
    assert not pid_alive(timings(tmp_path / "runs", runs)["long"]["pid"])


@pytest.mark.slow
def test_cancel_a_local_sweep_then_resume(tmp_path: Path, cli) -> None:
    spec = ledger_spec(tmp_path, "cancel", seeds=2, sleep_s=60, script=LEDGER_SCRIPT)
    db = tmp_path / "results.db"
    args = ("sweep", spec, "--db", db, "--slots", "2")
    sweep = cli.popen(*args, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not _job_ids(db):
            assert time.monotonic() < deadline and sweep.poll() is None, "no jobs started"
            time.sleep(0.2)
        job_ids = _job_ids(db)
        status = cli.run("status", "--db", db, "--format", "json", cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        [counts], running = shown["runs per state"], shown["running"]
        assert (counts["sweep"], counts["running"], counts["total"]) == ("cancel", 2, 2)
        assert [(r["executor"], r["job_id"], r["job_state"]) for r in running] == [
            ("local", job_id, "RUNNING") for job_id in job_ids
        ], status.stdout
        cancelled = cli.run("cancel", "cancel", "--db", db, cwd=tmp_path, timeout=60)
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert "2 runs cancelled" in cancelled.stdout
        output, _ = sweep.communicate(timeout=60)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 1, output  # not every run done
    frame = open_store(db).runs_frame()
    assert (
        list(zip(frame["status"], frame["reason"], strict=True)) == [("cancelled", "cancelled")] * 2
    )
    assert not any(pid_alive(int(job_id)) for job_id in job_ids)
    assert not (tmp_path / "ledger.txt").exists()
    (tmp_path / "sleep_s").write_text("0.1")
    resumed = cli.run(*args, cwd=tmp_path, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    frame = open_store(db).runs_frame()
    assert list(frame["status"]) == ["done", "done"]
    ledger = Counter((tmp_path / "ledger.txt").read_text().split())
    assert ledger == Counter(frame["id"])


def _local_tracker(store: Store, tmp_path: Path, slots: int) -> JobTracker:
    """A tracker of fake sleeping jobs on `slots` CPU slots."""
    return JobTracker(
        store=store,
        executor=LocalExecutor(DevicePool([], cpu_slots=slots), SleepLauncher()),
        launcher=SleepLauncher(),
        runs_root=tmp_path / "runs",
    )


def _job_ids(db: Path) -> list[str]:
    """The running runs' job ids once both runs have one, else []."""
    if not db.exists():
        return []
    frame = open_store(db).runs_frame()
    ids = [j for j, s in zip(frame["job_id"], frame["status"], strict=True) if s == "running"]
    return ids if len(ids) == 2 and all(ids) else []


def test_cancel_refuses_an_unknown_sweep_in_one_line(tmp_path: Path, cli) -> None:
    store = open_store(tmp_path / "results.db")
    register(store, [FakeRun("a")])
    line = cli.refused("cancel", "fkae", "--db", tmp_path / "results.db", cwd=tmp_path)
    assert line == (
        f"error: cancel: sweep 'fkae' is not in database {tmp_path / 'results.db'}; it has fake"
    )
