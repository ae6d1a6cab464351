"""Faults, with real processes: a job whose processes will not stop leaves none behind
(timeout, Ctrl-C, `jepardy cancel`, or a run that ended and left a child); a done
result.json without a finite score is failed; a failure's reason is the error its worker
printed, not torchrun's wrapper."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from jobs import FakeRun, register
from test_sweep_e2e import wait_for

from jepardy.launch.local_executor import JOB_ENV, LocalExecutor, job_processes
from jepardy.launch.rundir import collect
from jepardy.launch.slots import DevicePool
from jepardy.launch.torchrun import job_environment
from jepardy.launch.tracker import JobTracker
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import open_store

STUBBORN = Path(__file__).parent / "stubborn_train_gpt.py"


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie does not: it holds nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


# --- processes that will not stop ------------------------------------------------------------


def stubborn_sweep(tmp_path: Path, name: str, params: str = "") -> tuple[Path, ...]:
    """A one-run script sweep of tests/stubborn_train_gpt.py; returns the sweep command's
    arguments (an absolute runs dir, so its processes are this test's)."""
    spec = tmp_path / f"{name}.toml"
    spec.write_text(
        f'[sweep]\nname = "{name}"\nseeds = [1]\n\n'
        f'[trainer]\nkind = "script"\npath = "{STUBBORN}"\n\n'
        f"[params]\n{params}\n[lanes.main]\ncontrol = {{}}\n"
    )
    return ("sweep", spec, "--db", tmp_path / "r.db", "--runs-dir", tmp_path / "runs")


def job_pids(tmp_path: Path) -> list[int]:
    """torchrun's, its worker's and the worker's child's pids, once the worker wrote them."""
    found = list((tmp_path / "runs").glob("*/*/pids.txt"))
    return [int(pid) for pid in found[0].read_text().split()] if found else []


def the_row(tmp_path: Path) -> dict:
    [row] = open_store(tmp_path / "r.db").runs_frame().to_dict("records")
    return row


@contextlib.contextmanager
def cleanup(tmp_path: Path, sweep: subprocess.Popen | None = None):
    """Kill what a failed test left: the sweep, and every process of its jobs."""
    try:
        yield
    finally:
        if sweep is not None and sweep.poll() is None:
            sweep.kill()
            sweep.wait()
        for run_dir in (tmp_path / "runs").glob("*/*"):
            for pid in job_processes(str(run_dir)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def assert_none_left(tmp_path: Path, pids: list[int]) -> None:
    assert len(pids) == 3, "the worker never started"
    assert [pid for pid in pids if alive(pid)] == []
    [run_dir] = (tmp_path / "runs").glob("*/*")
    assert job_processes(str(run_dir)) == set()


@pytest.mark.slow
def test_a_timed_out_job_leaves_no_process(cli, tmp_path: Path) -> None:
    # Long enough for torchrun and its worker to start on a busy 2-core machine.
    args = (*stubborn_sweep(tmp_path, "timeout"), "--timeout-s", "20")
    with cleanup(tmp_path):
        done = cli.run(*args, cwd=tmp_path, timeout=120)
        pids = job_pids(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    row = the_row(tmp_path)
    assert (row["status"], row["reason"]) == ("timeout", "timeout after 20s")
    assert pids[0] == int(row["job_id"])  # the worker's parent: the job's torchrun
    assert_none_left(tmp_path, pids)


@pytest.mark.slow
def test_ctrl_c_leaves_no_process(cli, tmp_path: Path) -> None:
    sweep = cli.popen(*stubborn_sweep(tmp_path, "ctrlc"), cwd=tmp_path)
    with cleanup(tmp_path, sweep):
        pids = wait_for(lambda: job_pids(tmp_path), timeout_s=120, what="the worker")
        sweep.send_signal(signal.SIGINT)
        output, _ = sweep.communicate(timeout=60)
    assert sweep.returncode != 0, output
    assert the_row(tmp_path)["status"] == "interrupted", output
    assert_none_left(tmp_path, pids)


@pytest.mark.slow
def test_cancel_leaves_no_process(cli, tmp_path: Path) -> None:
    args = stubborn_sweep(tmp_path, "cancel")
    sweep = cli.popen(*args, cwd=tmp_path)
    with cleanup(tmp_path, sweep):
        pids = wait_for(lambda: job_pids(tmp_path), timeout_s=120, what="the worker")
        cancelled = cli.run("cancel", "cancel", "--db", tmp_path / "r.db", cwd=tmp_path)
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert_none_left(tmp_path, pids)  # by the time `cancel` returns
        output, _ = sweep.communicate(timeout=60)
    assert the_row(tmp_path)["status"] == "cancelled", output


@pytest.mark.slow
def test_a_child_left_by_a_done_run_is_killed(cli, tmp_path: Path) -> None:
    """A run that ended by itself but left a process behind (which would hold its GPU) is
    recorded once that process is killed."""
    with cleanup(tmp_path):
        done = cli.run(*stubborn_sweep(tmp_path, "leaves", "LEAVE_CHILD = 1"), cwd=tmp_path)
        pids = job_pids(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert the_row(tmp_path)["status"] == "done"
    assert_none_left(tmp_path, pids)


@pytest.mark.slow
def test_a_resumed_sweep_kills_what_its_killed_orchestrator_left(cli, tmp_path: Path) -> None:
    """A killed orchestrator's jobs get only a parent-death SIGTERM on torchrun, which the
    worker and its child ignore (torchrun kills its worker 30 s later, never the child).
    Resuming kills them all before the run runs again (now to its end: LEAVE_CHILD=1 in
    the resumed sweep's environment, which its jobs inherit)."""
    args = stubborn_sweep(tmp_path, "resume")
    sweep = cli.popen(*args, cwd=tmp_path)
    with cleanup(tmp_path, sweep):
        pids = wait_for(lambda: job_pids(tmp_path), timeout_s=120, what="the worker")
        sweep.kill()
        sweep.wait()
        assert alive(pids[1]) and alive(pids[2])
        resumed = subprocess.run(
            [str(cli.script), *map(str, args)],
            cwd=tmp_path,
            env=cli.env() | {"LEAVE_CHILD": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    row = the_row(tmp_path)
    assert (row["status"], row["attempts"]) == ("done", 2)
    assert [pid for pid in pids if alive(pid)] == []
    assert_none_left(tmp_path, job_pids(tmp_path))


# --- outcomes read from a job's files ----------------------------------------------------------

NAN_SCORE = """import json, math, sys
result = {"status": "done", "reason": "", "val_bpb": math.nan, "val_loss": 2.0, "steps": 3}
open(sys.argv[1] + "/result.json", "w").write(json.dumps(result))
"""
INF_LOSS = NAN_SCORE.replace(
    '"val_bpb": math.nan, "val_loss": 2.0', '"val_bpb": 1.2, "val_loss": math.inf'
)
NO_SCORE = NAN_SCORE.replace('"val_bpb": math.nan, ', "")
OUT_OF_VOCAB = """import sys
print("step:1/10 train_loss:6.9", flush=True)
def embed(tokens):
    table = [0.0] * 1024
    return [table[t] for t in tokens]
embed([3, 1024])
"""
LONG_ERROR = "raise ValueError('x' * 500 + '\\nsecond line')\n"
EXIT_1 = "import sys\nprint('step:1/10 train_loss:6.9', flush=True)\nsys.exit(1)\n"


@dataclass(frozen=True)
class ProgramLauncher:
    """Each run runs params["program"] (Python source, written to its run directory as
    program.py) with its run directory as argv[1]; under torchrun when params["torchrun"]."""

    def argv(self, run: FakeRun, run_dir: Path) -> list[str]:
        torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
        lead = torchrun if run.params.get("torchrun") else []
        return [sys.executable, *lead, str(run_dir / "program.py"), str(run_dir)]

    def prepare(self, run: FakeRun, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "program.py").write_text(run.params["program"])

    def environment(self, run: FakeRun, devices: tuple[str, ...]) -> dict[str, str]:
        return job_environment(devices, threads_per_rank=1)

    def collect(self, run: FakeRun, run_dir: Path, exit_code: int | None) -> RunOutcome:
        return collect(run_dir, exit_code)


def run_programs(tmp_path: Path, runs: list[FakeRun]) -> dict[str, dict]:
    """Run `runs` through the tracker on 2 CPU slots; their rows by run id."""
    store = open_store(tmp_path / "results.db")
    register(store, runs)
    launcher = ProgramLauncher()
    JobTracker(
        store=store,
        executor=LocalExecutor(DevicePool([], cpu_slots=2), launcher),
        launcher=launcher,
        runs_root=tmp_path / "runs",
    ).run(runs)
    return {row["id"]: row for row in store.runs_frame().to_dict("records")}


def test_a_done_result_without_a_finite_score_is_failed(tmp_path: Path) -> None:
    rows = run_programs(
        tmp_path,
        [
            FakeRun("nan", params={"program": NAN_SCORE}),
            FakeRun("inf", params={"program": INF_LOSS}),
            FakeRun("none", params={"program": NO_SCORE}),
        ],
    )
    reasons = {run_id: (row["status"], row["reason"]) for run_id, row in rows.items()}
    assert reasons == {
        "nan": ("failed", "val_bpb is nan after the artifact round trip"),
        "inf": ("failed", "val_loss is inf after the artifact round trip"),
        "none": ("failed", "val_bpb is missing from result.json"),
    }
    assert rows["nan"]["steps"] == 3  # the result is kept, for `show`


def test_a_failure_is_the_error_its_worker_printed(tmp_path: Path) -> None:
    rows = run_programs(
        tmp_path,
        [
            FakeRun("oov", params={"program": OUT_OF_VOCAB, "torchrun": True}),
            FakeRun("long", params={"program": LONG_ERROR}),
            FakeRun("exit1", params={"program": EXIT_1, "torchrun": True}),
        ],
    )
    oov = rows["oov"]
    assert (oov["status"], oov["exit_code"]) == ("failed", 1)
    # The worker's IndexError, not the ChildFailedError torchrun raises after it.
    assert re.fullmatch(r"crashed \(line \d+\): IndexError: list index out of range", oov["reason"])
    assert "ChildFailedError" in oov["log_tail"]
    long = rows["long"]["reason"]
    assert long.startswith("crashed (line 4): ValueError: xxx") and len(long) == 200
    assert "\n" not in long
    # Exited without an exception: torchrun's wrapper says nothing more than the exit code.
    assert rows["exit1"]["reason"] == "exit code 1, no result.json"


@pytest.mark.slow
def test_a_script_that_exits_1_says_how_far_it_got(cli, tmp_path: Path) -> None:
    (tmp_path / "exit1.py").write_text(EXIT_1)
    spec = tmp_path / "exit1.toml"
    spec.write_text(
        '[sweep]\nname = "exit1"\nseeds = [1]\n\n'
        f'[trainer]\nkind = "script"\npath = "{tmp_path / "exit1.py"}"\n\n'
        "[lanes.main]\ncontrol = {}\n"
    )
    done = cli.run("sweep", spec, "--db", tmp_path / "r.db", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    row = the_row(tmp_path)
    assert (row["status"], row["exit_code"]) == ("failed", 1)
    assert row["reason"] == "no final metric line: the log ends at step 1/10 (line 1)"


def test_every_process_of_a_job_carries_its_run_directory(tmp_path: Path) -> None:
    """job_processes finds a process by the variable it inherited, wherever it was
    re-parented: here a grandchild in a session of its own whose parent has exited."""
    run_dir = str(tmp_path / "run")
    program = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True, stdout=subprocess.DEVNULL)\n"
        "print(child.pid)\n"
    )
    env = {**os.environ, JOB_ENV: run_dir}
    out = subprocess.run(
        [sys.executable, "-c", program], env=env, stdout=subprocess.PIPE, text=True, check=True
    )
    orphan = int(out.stdout)
    try:
        assert job_processes(run_dir) == {orphan}
        assert job_processes(run_dir + "x") == set()
    finally:
        os.kill(orphan, signal.SIGKILL)
    wait_for(lambda: not alive(orphan), timeout_s=10, what="the orphan to die")
    assert job_processes(run_dir) == set()
