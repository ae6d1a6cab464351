"""A sweep killed with SIGKILL at random moments and resumed each time ends with every run
done exactly once: none lost, none run twice, none duplicated in the store."""

from __future__ import annotations

import io
import random
import re
import shlex
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from jobs import ledger_spec
from rich.console import Console
from test_sweep_e2e import wait_for

from jepardy.cli.live import render
from jepardy.launch.livesweep import LiveSweep
from jepardy.launch.sweep import SweepOptions, run_sweep
from jepardy.store.transitions import open_store

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "ledger_train_gpt.py"
N_RUNS = 8


def _spec(tmp_path: Path) -> Path:
    seeds = ", ".join(str(s) for s in range(1, N_RUNS + 1))
    path = tmp_path / "spec.toml"
    path.write_text(f"""\
[sweep]
name = "resume"
seeds = [{seeds}]

[trainer]
kind = "script"
path = "{SCRIPT}"

[params]
SLEEP_S = 1.5
LEDGER = "{tmp_path / "ledger.txt"}"

[lanes.main]
control = {{}}
""")
    return path


def _rows(db: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, status, attempts FROM runs").fetchall()


def test_sigkill_at_random_moments_then_resume(tmp_path: Path, cli) -> None:
    spec, db = _spec(tmp_path), tmp_path / "results.db"
    args = ("sweep", spec, "--db", db, "--runs-dir", tmp_path / "runs", "--slots", "2")
    rng = random.Random(20261125)
    for _ in range(3):
        proc = cli.popen(*args, cwd=tmp_path)
        time.sleep(rng.uniform(1.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = cli.run(*args, cwd=tmp_path, timeout=240)
    assert final.returncode == 0, final.stdout + final.stderr
    rows = _rows(db)
    assert len(rows) == N_RUNS == len({run_id for run_id, _, _ in rows})
    assert {status for _, status, _ in rows} == {"done"}
    # The kills did hit running jobs: some runs were claimed again after one.
    assert sum(attempts for _, _, attempts in rows) > N_RUNS
    ledger = Counter((tmp_path / "ledger.txt").read_text().split())
    assert set(ledger) == {run_id for run_id, _, _ in rows}
    assert set(ledger.values()) == {1}, f"runs completed more than once: {ledger}"
    again = cli.run(*args, cwd=tmp_path, timeout=120)
    assert "0 done, 0 failed" in again.stdout and f"of {N_RUNS}" in again.stdout


def _delta_spec(tmp_path: Path) -> Path:
    """A control and two arms, each sleeping the seconds in its own file (so a test can make
    a run slow, interrupt the sweep while it runs, then make it fast and resume); the arms'
    val_bpb is the control's - 0.0125."""
    for name in ("control_s", "first_s", "second_s"):
        (tmp_path / name).write_text("0.1")
    path = tmp_path / "delta.toml"
    path.write_text(f"""\
[sweep]
name = "delta"
seeds = [1]

[trainer]
kind = "script"
path = "{SCRIPT}"

[params]
LEDGER = "{tmp_path / "ledger.txt"}"

[lanes.main]
control = {{ SLEEP_FILE = "{tmp_path / "control_s"}" }}

[lanes.main.arms.first]
SLEEP_FILE = "{tmp_path / "first_s"}"
VAL_BPB_SHIFT = -0.0125

[lanes.main.arms.second]
SLEEP_FILE = "{tmp_path / "second_s"}"
VAL_BPB_SHIFT = -0.0125
""")
    return path


def _interrupt_when_running(cli, args: tuple, tmp_path: Path, arm: str) -> str:
    """Start the sweep in a pipe, Ctrl-C it once `arm` runs; its output."""
    proc = cli.popen(*args, cwd=tmp_path)
    query = "SELECT count(*) FROM runs WHERE arm = ? AND status = 'running'"

    def arm_running() -> bool:
        try:
            with sqlite3.connect(tmp_path / "results.db") as conn:
                return conn.execute(query, (arm,)).fetchone()[0] == 1
        except sqlite3.OperationalError:  # not made yet
            return False

    try:
        wait_for(arm_running, timeout_s=120, what=f"arm {arm} running")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    return output


def test_a_resumed_sweep_compares_its_arms_with_the_controls_done_before(
    tmp_path: Path, cli
) -> None:
    spec, db = _delta_spec(tmp_path), tmp_path / "results.db"
    args = ("sweep", spec, "--db", db, "--runs-dir", tmp_path / "runs", "--slots", "1")
    # 1: the control is done, the first arm interrupted.
    (tmp_path / "first_s").write_text("600")
    first = _interrupt_when_running(cli, args, tmp_path, "first")
    assert re.search(r"^done \w+ main/control seed=1 val_bpb 1\.0010 in", first, re.M), first
    # 2, plain lines: the first arm against the control done in 1.
    (tmp_path / "first_s").write_text("0.1")
    (tmp_path / "second_s").write_text("600")
    second = _interrupt_when_running(cli, args, tmp_path, "second")
    done = r"^done \w+ main/first seed=1 val_bpb 0\.9885 vs control -0\.0125 in \d+:\d\d$"
    assert re.search(done, second, re.M), second
    # 3, the live view: the second arm against the same control, in its finished table.
    (tmp_path / "second_s").write_text("0.1")
    live = LiveSweep()
    options = SweepOptions(runs_root=tmp_path / "runs", slots=1)
    summary = run_sweep(spec, open_store(db), options, observer=live)
    assert (summary.done, summary.skipped) == (1, 2)
    screen = Console(width=80, file=io.StringIO(), color_system=None)
    screen.print(render(live.snapshot(), 80))
    row = re.search(r"^main/second seed=1 +0\.9885 +(\S+)", screen.file.getvalue(), re.M)
    assert row and row.group(1) == "-0.0125", screen.file.getvalue()


def test_the_stale_runs_resume_command_works_from_another_directory(tmp_path: Path, cli) -> None:
    """A sweep run in one folder with its own store and run directories; its run left
    `running` by an orchestrator that is gone; `status` in another folder names a command
    that, run there as printed, resumes that sweep in that store (and makes nothing here)."""
    ran, elsewhere = tmp_path / "ran", tmp_path / "elsewhere"
    ran.mkdir()
    elsewhere.mkdir()
    spec = ledger_spec(ran, "stale", seeds=1, sleep_s=0.1, script=SCRIPT)
    args = ("sweep", spec.name, "--db", "store.db", "--runs-dir", "out")
    first = cli.run(*args, cwd=ran, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    old = "2026-01-01 00:00:00"
    with sqlite3.connect(ran / "store.db") as conn:
        conn.execute(
            "UPDATE runs SET status = 'running', host = 'gone-host', pid = 1, heartbeat_at = ?",
            (old,),
        )
    status = cli.run("status", "--db", ran / "store.db", cwd=elsewhere)
    said = " ".join(status.stdout.split())
    command = re.search(r"resume with (jepardy sweep [^)]*)\)", said)
    assert command, status.stdout
    assert shlex.split(command.group(1)) == [
        *("jepardy", "sweep", str(spec), "--db", str(ran / "store.db")),
        *("--runs-dir", str(ran / "out")),
    ]
    [_, *words] = shlex.split(command.group(1))
    resumed = cli.run(*words, cwd=elsewhere, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert {status for _, status, _ in _rows(ran / "store.db")} == {"done"}
    assert list(elsewhere.iterdir()) == []
