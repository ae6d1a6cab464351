"""A run's directory: made ready before its job starts (run.json, no files of an earlier
attempt), and read when it ends (result.json, metrics.jsonl, the log tail) into its outcome.
"""

from __future__ import annotations

import json
import math
import re
import signal
from pathlib import Path
from typing import Any

from jepardy.ingest.logparse import parse_log
from jepardy.launch.command import run_argv, write_run_config
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome, RunStatus

STDOUT_LOG = "stdout.log"
LOG_TAIL_LINES = 40
# result.json fields a done run must have, finite: its score (on the round-tripped artifact).
SCORE_FIELDS = ("val_bpb", "val_loss")
REASON_CHARS = 200  # a reason is one line of a table
# Files a previous attempt of the same run may have left; removed so that an old
# result.json can never be read as the new attempt's.
_ATTEMPT_FILES = ("result.json", "metrics.jsonl", "train.log", STDOUT_LOG)
_WORKER_SIGNAL = re.compile(r"Signal (\d+) \(SIG\w+\) received by PID")


def prepare_run_dir(run: RunIdentity, run_dir: Path) -> None:
    """Clear a previous attempt's files and write run.json."""
    run_argv(run, run_dir)  # first: an ingested run is refused before any file changes
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in _ATTEMPT_FILES:
        (run_dir / name).unlink(missing_ok=True)
    write_run_config(run, run_dir)


def collect(run_dir: Path, exit_code: int | None) -> RunOutcome:
    """Turn the run directory's files into an outcome: done only with a done result.json
    that has a finite score; anything else is a failure with a one-line reason.

    `exit_code` None means the job's exit was not seen (a resumed sweep adopting the files
    of a job whose orchestrator died): a done result.json then counts as done.
    """
    result = read_result(run_dir)
    metrics = read_metrics(run_dir)
    tail = log_tail(run_dir / STDOUT_LOG)
    if exit_code in (0, None) and result is not None and result.get("status") == "done":
        unscored = score_problem(result)
        status = RunStatus.FAILED if unscored else RunStatus.DONE
        return RunOutcome(status, unscored, exit_code, result, metrics, tail)
    reason = failure_reason(run_dir, result, exit_code)
    return RunOutcome(RunStatus.FAILED, reason, exit_code, result, metrics, tail)


def score_problem(result: dict[str, Any]) -> str:
    """Why a done result.json has no usable score ("" when it has one): a report cannot
    rank a run whose score is missing or not finite, so such a run is failed, not done."""
    for field in SCORE_FIELDS:
        value = result.get(field)
        if value is None:
            return f"{field} is missing from result.json"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{field} is {value!r} in result.json, not a number"
        if not math.isfinite(value):
            return f"{field} is {value} after the artifact round trip"
    return ""


def failure_reason(run_dir: Path, result: dict[str, Any] | None, exit_code: int | None) -> str:
    """A failed job's reason: its result.json's own, else the error its process printed
    last, else how it exited."""
    if result is not None and result.get("reason"):
        return str(result["reason"])
    if printed := last_error(run_dir / STDOUT_LOG):
        return printed
    if exit_code is not None and exit_code < 0:
        return f"killed by {_signal_name(-exit_code)}"
    if killed := _worker_signal(run_dir / STDOUT_LOG):
        return f"a worker was killed by {_signal_name(killed)}; exit code {exit_code}"
    return f"exit code {exit_code}" + ("" if result else ", no result.json")


def _worker_signal(log: Path) -> int | None:
    """The signal that killed a worker, as torchrun reports it ("Signal 9 (SIGKILL)
    received by PID ..."), the last one in `log`; None when none did."""
    if not log.exists():
        return None
    found = _WORKER_SIGNAL.findall(log.read_bytes().decode("utf-8", errors="replace"))
    return int(found[-1]) if found else None


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"


def last_error(log: Path) -> str:
    """The last exception a worker printed to `log` ("" for none), with its line: torchrun's
    own ChildFailedError, which only says that a worker failed, is never it (the log parser
    that `jepardy ingest` uses decides, so both read a traceback alike)."""
    if not log.exists():
        return ""
    error = parse_log(log.read_bytes().decode("utf-8", errors="replace")).runs[-1].exception
    if error is None:
        return ""
    return f"crashed (line {error.line}): {error.value}"[:REASON_CHARS]


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
