"""The tracker over the local executor with real child processes (fake sleeping jobs) and a
real SQLite store: packing, lanes, timeouts, failures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jobs import FakeRun, SleepLauncher, ledger_spec, max_overlap, register, timings

from jepardy.errors import UserError
from jepardy.launch.local_executor import LocalExecutor
from jepardy.launch.slots import DevicePool, parse_gpus
from jepardy.launch.tracker import JobTracker
from jepardy.store.transitions import open_store

LEDGER_SCRIPT = Path(__file__).parent / "ledger_train_gpt.py"


def _scheduler(
    tmp_path: Path,
    pool: DevicePool,
    timeout_s: float | None = None,
    waits_for: dict[str, set[str]] | None = None,
) -> JobTracker:
    return JobTracker(
        store=open_store(tmp_path / "results.db"),
        executor=LocalExecutor(pool, SleepLauncher()),
        launcher=SleepLauncher(),
        runs_root=tmp_path / "runs",
        timeout_s=lambda run: timeout_s,
        waits_for=waits_for or {},
    )


def test_four_gpu_slots_twelve_jobs(tmp_path: Path) -> None:
    runs = [FakeRun(f"job{i:02d}", params={"sleep_s": 0.6}) for i in range(12)]
    scheduler = _scheduler(tmp_path, DevicePool(["0", "1", "2", "3"], cpu_slots=0))
    register(scheduler.store, runs)
    scheduler.run(runs)
    assert {o.status for o in scheduler.outcomes.values()} == {"done"}
    seen = timings(tmp_path / "runs", runs)
    intervals = [(t["start"], t["end"]) for t in seen.values()]
    assert max_overlap(intervals) == 4  # packed, never more than the slots
    for a in seen.values():
        assert a["cvd"] in {"0", "1", "2", "3"}  # exactly one GPU each
        for b in seen.values():
            overlapping = a is not b and a["start"] < b["end"] and b["start"] < a["end"]
            assert not (overlapping and a["cvd"] == b["cvd"]), "two live jobs share a GPU"
    frame = scheduler.store.runs_frame()
    assert set(frame["devices"]) == {"0", "1", "2", "3"}
    assert (frame["attempts"] == 1).all()


def test_multi_gpu_run_waits_without_backfill(tmp_path: Path) -> None:
    first = [FakeRun(f"a{i}", params={"sleep_s": 0.5}) for i in range(3)]
    gang = FakeRun("gang", nproc=4, params={"sleep_s": 0.2})
    late = FakeRun("late", params={"sleep_s": 0.2})
    runs = [*first, gang, late]
    scheduler = _scheduler(tmp_path, DevicePool(parse_gpus("0,1,2,3"), cpu_slots=0))
    register(scheduler.store, runs)
    scheduler.run(runs)
    seen = timings(tmp_path / "runs", runs)
    assert seen["gang"]["cvd"] == "0,1,2,3"
    assert seen["gang"]["start"] >= max(seen[r.run_id]["end"] for r in first)
    # No backfill: the 1-GPU run after the gang does not jump ahead of it.
    assert seen["late"]["start"] >= seen["gang"]["start"]


def test_lane_waits_for_earlier_lane(tmp_path: Path) -> None:
    screen = [FakeRun(f"s{i}", lane="screen", params={"sleep_s": 0.4}) for i in range(2)]
    full = [FakeRun(f"f{i}", lane="full", params={"sleep_s": 0.1}) for i in range(2)]
    scheduler = _scheduler(tmp_path, DevicePool([], cpu_slots=4), waits_for={"full": {"screen"}})
    register(scheduler.store, screen + full)
    scheduler.run(screen + full)
    seen = timings(tmp_path / "runs", screen + full)
    assert min(seen[r.run_id]["start"] for r in full) >= max(seen[r.run_id]["end"] for r in screen)


def test_failure_and_timeout_are_recorded_and_others_finish(tmp_path: Path) -> None:
    runs = [
        FakeRun("crash", params={"sleep_s": 0.1, "exit_code": 3}),
        FakeRun("hang", params={"sleep_s": 60}),
        FakeRun("fine", params={"sleep_s": 0.1}),
    ]
    scheduler = _scheduler(tmp_path, DevicePool([], cpu_slots=3), timeout_s=2.0)
    register(scheduler.store, runs)
    scheduler.run(runs)
    frame = scheduler.store.runs_frame().set_index("id")
    assert frame.loc["fine", "status"] == "done"
    assert frame.loc["crash", "status"] == "failed"
    assert frame.loc["crash", "reason"] == "exit code 3, no result.json"
    assert "boom: failing on purpose" in frame.loc["crash", "log_tail"]
    assert frame.loc["hang", "status"] == "timeout"
    assert frame.loc["hang", "reason"] == "timeout after 2s"
    hung_pid = timings(tmp_path / "runs", runs)["hang"]["pid"]
    assert not Path(f"/proc/{hung_pid}").exists(), "the timed-out job's process is still alive"


def test_cpu_slots_limit_concurrency_and_give_no_gpus(tmp_path: Path) -> None:
    runs = [FakeRun(f"c{i}", params={"sleep_s": 0.4}) for i in range(6)]
    scheduler = _scheduler(tmp_path, DevicePool([], cpu_slots=2))
    register(scheduler.store, runs)
    scheduler.run(runs)
    seen = timings(tmp_path / "runs", runs)
    assert max_overlap([(t["start"], t["end"]) for t in seen.values()]) == 2
    assert {t["cvd"] for t in seen.values()} == {os.environ.get("CUDA_VISIBLE_DEVICES")}


def test_bad_gpu_lists_are_refused() -> None:
    with pytest.raises(UserError, match=r"--gpus: '0,0' invalid"):
        parse_gpus("0,0")
    with pytest.raises(UserError, match=r"--slots: 0 invalid"):
        DevicePool([], cpu_slots=0)


@pytest.mark.slow
def test_a_lane_after_another_waits_through_the_cli(tmp_path: Path, cli) -> None:
    """`after = ["screen"]` in a spec reaches the scheduler: with room for both lanes at
    once, the full lane's run starts only when the screen lane's has ended."""
    lanes = '[lanes.screen]\ncontrol = {}\n\n[lanes.full]\nafter = ["screen"]\ncontrol = {}\n'
    spec = ledger_spec(tmp_path, "lanes", seeds=1, sleep_s=1.0, script=LEDGER_SCRIPT, lanes=lanes)
    proc = cli.run("sweep", spec, "--db", tmp_path / "r.db", "--slots", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frame = open_store(tmp_path / "r.db").runs_frame().set_index("lane")
    assert frame.loc["full", "started_at"] >= frame.loc["screen", "finished_at"]
