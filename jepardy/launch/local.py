"""Run one job as a child process on this machine and collect what it wrote.

Each job runs in its own process session, so an interrupt kills its whole tree (torchrun
and every rank). stdout and stderr go to RUN_DIR/stdout.log.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepardy.launch.command import RunLike, run_environment, torchrun_argv, write_run_config

STDOUT_LOG = "stdout.log"
LOG_TAIL_LINES = 40
# Files a previous attempt of the same run may have left; removed so that an old
# result.json can never be read as the new attempt's.
_ATTEMPT_FILES = ("result.json", "metrics.jsonl", "train.log", STDOUT_LOG)


@dataclass(frozen=True)
class JobOutcome:
    status: str  # "done" | "failed" | "interrupted"
    reason: str
    exit_code: int | None
    result: dict[str, Any] | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    log_tail: str = ""


def prepare_run_dir(run: RunLike, run_dir: Path) -> list[str]:
    """Clear a previous attempt's files, write run.json; returns the argv to launch."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in _ATTEMPT_FILES:
        (run_dir / name).unlink(missing_ok=True)
    write_run_config(run, run_dir)
    return torchrun_argv(run.nproc, run_dir)


def run_job(run: RunLike, run_dir: Path, argv: list[str]) -> JobOutcome:
    """Launch `argv`, wait, and read the run's result files.

    On KeyboardInterrupt the job's process group is killed and the outcome is
    "interrupted" (the caller re-raises; see sweep.py).
    """
    with (run_dir / STDOUT_LOG).open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=run_environment(run.nproc),
            start_new_session=True,
        )
        try:
            exit_code = proc.wait()
        except KeyboardInterrupt:
            kill_group(proc)
            return collect(run_dir, exit_code=None, interrupted=True)
    return collect(run_dir, exit_code=exit_code, interrupted=False)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the job's process group, SIGKILL it if it is still there after 5 s."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def collect(run_dir: Path, exit_code: int | None, interrupted: bool) -> JobOutcome:
    """Turn the run directory's files into an outcome; a missing result.json is a failure."""
    result = read_result(run_dir)
    metrics = read_metrics(run_dir)
    tail = log_tail(run_dir / STDOUT_LOG)
    if interrupted:
        return JobOutcome("interrupted", "interrupted", exit_code, result, metrics, tail)
    if exit_code == 0 and result is not None and result.get("status") == "done":
        return JobOutcome("done", "", exit_code, result, metrics, tail)
    if result is not None and result.get("reason"):
        reason = str(result["reason"])
    elif exit_code is not None and exit_code < 0:
        reason = f"killed by signal {-exit_code}"
    else:
        reason = f"exit code {exit_code}" + ("" if result else ", no result.json")
    return JobOutcome("failed", reason, exit_code, result, metrics, tail)


def read_result(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "result.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl points; a torn last line (a killed job) is skipped."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    points = []
    for line in path.read_text().splitlines():
        try:
            point = json.loads(line)
        except json.JSONDecodeError:
            continue
        value = point.get("value")
        point["value"] = float(value) if value is not None else math.nan
        points.append(point)
    return points


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
