"""The live view of a sweep: a real sweep under a pseudo-terminal (every running job's row,
its step advancing, Ctrl-C's resume command), the plain lines in a pipe, `status --watch`
from another process; and its parts (metrics.jsonl tails, the ETA, the 80-column fit) on
real files and snapshots."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import sqlite3
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
import test_sweep_e2e
from rich.console import Console
from test_sweep_e2e import tiny_spec, wait_for

from jepardy.cli.live import render
from jepardy.launch.eta import eta_s
from jepardy.launch.livesweep import LiveRun, SweepSnapshot
from jepardy.launch.metrics_tail import MetricsTail

corpus = test_sweep_e2e.corpus  # the fixture: the embedded corpus, built once

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A header line starts every frame the view draws: "live: 0 done, 2 running of 2 | ...".
FRAME_START = re.compile(r"^live\w*: \d+ done", re.MULTILINE)
ROW = re.compile(r"^(main/\w+) .*?seed=1\s+(\d+|-)/(\d+)\s", re.MULTILINE)


# --- parts -------------------------------------------------------------------------------


def test_metrics_tail_reads_what_was_appended_and_a_rewritten_file_anew(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    tail.read()  # no file yet: nothing, no error
    assert tail.step is None
    point = json.dumps({"step": 5, "name": "train_loss", "value": 6.5}) + "\n"
    nan = json.dumps({"step": 10, "name": "train_loss", "value": float("nan")})
    path.write_text(point + nan[:20])  # the second line half written
    tail.read()
    assert (tail.step, tail.last) == (5, {"train_loss": 6.5})
    with path.open("a") as f:
        f.write(nan[20:] + "\n")
    tail.read()
    assert (tail.step, tail.last) == (10, {"train_loss": 6.5})  # NaN keeps the last finite
    path.write_text(json.dumps({"step": 1, "name": "val_bpb", "value": 3.0}) + "\n")
    tail.read()  # shorter: the run started again
    assert (tail.step, tail.last) == (1, {"val_bpb": 3.0})


def _run(name: str, status: str, **fields: object) -> LiveRun:
    return LiveRun(
        run_id=f"{name:0<16}",
        label=f"main/{name} ema=false seed=1",
        lane="main",
        match="ema=false",
        seed=1,
        is_control=name == "control",
        status=status,
        **fields,  # type: ignore[arg-type]
    )


def test_eta_lays_the_pending_runs_onto_the_slots() -> None:
    now = 1000.0
    half_done = {"started_s": now - 10, "step": 50, "iterations": 100}
    runs = [
        _run("a", "running", **half_done),  # 20 s at its pace: 10 s left
        _run("b", "running", **half_done),
        _run("c", "pending", iterations=100),
        _run("d", "pending", iterations=100),
        _run("e", "pending", iterations=100),
    ]
    # Slots free at 10 s; c and d take 20 s each on them, e follows at 30 s: ends at 50 s.
    assert eta_s(SweepSnapshot("s", runs, 2, now)) == pytest.approx(50.0)
    # A done run of the same budget took 30 s: that is what the pending ones take.
    runs.append(_run("f", "done", started_s=now - 40, ended_s=now - 10, iterations=100))
    assert eta_s(SweepSnapshot("s", runs, 2, now)) == pytest.approx(20 + 30 + 30)
    # Nothing known of a run without a budget or progress: no ETA rather than a wrong one.
    runs = [_run("a", "running", started_s=now - 1), _run("c", "pending")]
    assert eta_s(SweepSnapshot("s", runs, 2, now)) is None


def test_the_view_fits_80_columns_dropping_the_least_needed_first() -> None:
    now = 1000.0
    running = {"started_s": now - 75, "step": 120, "iterations": 150, "where": "gpu 0,1"}
    figures = {"train_loss": 4.25, "val_bpb": 2.5, "tokens_per_s": 123456.0}
    runs = [
        _run("control", "running", **running, **figures),
        _run("jepa_weight_grid_arm", "running", **running, **figures),
        _run("control", "done", started_s=now - 90, ended_s=now - 5, val_bpb=2.4693),
        _run("jepa", "done", started_s=now - 90, ended_s=now - 4, val_bpb=2.4646),
        _run("jepa", "failed", started_s=now - 60, ended_s=now - 50, reason="nan at step 40"),
    ]
    with open(os.devnull, "w") as devnull:
        console = Console(width=80, record=True, file=devnull, color_system=None)
        console.print(render(SweepSnapshot("smoke", runs, 2, now), 80))
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    shown = "\n".join(lines)
    for value in ("main/jepa_weight_grid_arm ema=false seed=1", "120/150", "1:15", "4.2500"):
        assert value in shown, shown
    assert "2.4693" in shown and "nan at step 40" in shown, shown
    assert re.search(r"main/jepa ema=false seed=1 +2\.4646 +-0\.0047 ", shown), shown
    assert "smoke: 2 done, 1 failed, 2 running of 5 | 2 slots | ETA" in shown, shown


# --- a real sweep ------------------------------------------------------------------------


def _long_spec(name: str, corpus: Path, iterations: int) -> str:
    """Two runs (control and arm) of the tests' tiny model, long enough to be seen running."""
    return tiny_spec(name, corpus).replace("iterations = 15", f"iterations = {iterations}")


class Terminal:
    """A command under a pseudo-terminal of 80 columns; its output read as it comes."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
        env = {**env, "COLUMNS": "80", "LINES": "40", "TERM": "xterm"}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        os.close(slave)
        self.master = master
        self.raw = b""

    def read(self, seconds: float) -> str:
        """What it wrote until now + `seconds` (or its end), without ANSI codes."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            try:
                chunk = os.read(self.master, 1 << 16) if ready else b""
            except OSError:  # the other side closed: it ended
                break
            self.raw += chunk
            if ready and not chunk:
                break
        # A redraw starts after a carriage return: as a line break, each frame's header
        # starts a line.
        return ANSI.sub("", self.raw.decode(errors="replace")).replace("\r", "\n")

    def frames(self, seconds: float) -> list[str]:
        text = self.read(seconds)
        starts = [m.start() for m in FRAME_START.finditer(text)]
        ends = [*starts[1:], len(text)] if starts else []
        return [text[a:b] for a, b in zip(starts, ends, strict=True)]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def _steps(frame: str) -> dict[str, int]:
    """label -> the step its running row shows in one frame (rows without a step left out)."""
    return {label: int(step) for label, step, _ in ROW.findall(frame) if step != "-"}


@pytest.mark.slow
def test_live_view_shows_every_running_job_advancing_and_ctrl_c_says_how_to_resume(
    cli, corpus: Path, tmp_path: Path
) -> None:
    (tmp_path / "spec.toml").write_text(_long_spec("live", corpus, iterations=2000))
    sweep = ["sweep", "spec.toml", "--db", "results.db", "--slots", "2"]
    term = Terminal([str(cli.script), *sweep], tmp_path, cli.env())
    watcher = None
    try:
        seen: dict[str, list[int]] = {"main/control": [], "main/jepa": []}

        def both_advanced() -> bool:
            for frame in term.frames(0.5)[-4:]:
                steps = _steps(frame)
                if set(steps) == set(seen):  # both rows in one screen
                    for label, step in steps.items():
                        if step not in seen[label]:
                            seen[label].append(step)
            return all(len(s) >= 2 for s in seen.values()) or term.proc.poll() is not None

        wait_for(both_advanced, timeout_s=240, what=f"both rows advancing: {seen}")
        assert term.proc.poll() is None, term.read(0)
        assert all(steps == sorted(steps) for steps in seen.values()), seen

        # Another terminal watches the same sweep from the store.
        watch = ["status", "--watch", "--db", "results.db", "--interval-s", "0.5", "--count", "4"]
        watcher = Terminal([str(cli.script), *watch], tmp_path, cli.env())
        watched = watcher.frames(30)
        assert watcher.proc.wait(timeout=30) == 0, watcher.read(0)
        assert len(watched) >= 2, watched
        assert set(_steps(watched[-1])) == set(seen), watched[-1]

        term.proc.send_signal(signal.SIGINT)
        output = term.read(60)  # read on: a terminal nobody reads would block its writes
        term.proc.wait(timeout=10)
    finally:
        term.close()
        if watcher is not None:
            watcher.close()
    assert term.proc.returncode == 130, output
    assert "resume with: jepardy sweep spec.toml --db results.db --slots 2" in output, output
    assert all(len(line) <= 80 for line in output.splitlines()), output


@pytest.mark.slow
def test_plain_lines_in_a_pipe_and_status_watch_beside(cli, corpus: Path, tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text(_long_spec("plain", corpus, iterations=120))
    sweep = cli.popen("sweep", "spec.toml", "--db", "results.db", "--slots", "2", cwd=tmp_path)
    try:

        def running() -> int:
            query = "SELECT count(*) FROM runs WHERE status = 'running'"
            try:
                with sqlite3.connect(tmp_path / "results.db") as conn:
                    return conn.execute(query).fetchone()[0]
            except sqlite3.OperationalError:  # not made yet
                return 0

        wait_for(lambda: running() == 2, timeout_s=120, what="two running runs")
        watch = cli.run(
            "status", "--watch", "--db", "results.db", "--interval-s", "0.2", "--count", "3",
            cwd=tmp_path,
        )  # fmt: skip
        output, _ = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 0, output
    assert "\x1b" not in output, output
    ids = json_ids(tmp_path / "results.db")
    for run_id in ids:
        assert re.search(rf"^started {run_id} main/\w+ ema=false seed=1 on cpu$", output, re.M)
        assert re.search(rf"^done {run_id} main/\w+ .*val_bpb \d\.\d{{4}}", output, re.M)
    # The watch, in a pipe too: its header, then the runs running when it started.
    assert watch.returncode == 0, watch.stderr
    lines = watch.stdout.splitlines()
    assert lines[0].startswith("plain: "), watch.stdout
    assert "\x1b" not in watch.stdout
    assert sum(line.startswith("started ") for line in lines) >= 1, watch.stdout


def json_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM runs ORDER BY seq")]
