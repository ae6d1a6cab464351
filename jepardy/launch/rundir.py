"""A run's directory: made ready before its job starts (run.json, no files of an earlier
attempt), and read when it ends (result.json, metrics.jsonl, the log tail) into its outcome.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from jepardy.launch.command import (
    run_argv,
    write_run_config,
)
from jepardy.spec.identity import RunIdentity
from jepardy.store.models import RunOutcome, RunStatus

STDOUT_LOG = "stdout.log"
LOG_TAIL_LINES = 40
# Files a previous attempt of the same run may have left; removed so that an old
# result.json can never be read as the new attempt's.
_ATTEMPT_FILES = ("result.json", "metrics.jsonl", "train.log", STDOUT_LOG)


def prepare_run_dir(run: RunIdentity, run_dir: Path) -> None:
    """Clear a previous attempt's files and write run.json."""
    run_argv(run, run_dir)  # first: an ingested run is refused before any file changes
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in _ATTEMPT_FILES:
        (run_dir / name).unlink(missing_ok=True)
    write_run_config(run, run_dir)


def collect(run_dir: Path, exit_code: int | None) -> RunOutcome:
    """Turn the run directory's files into an outcome; a missing result.json is a failure.

    `exit_code` None means the job's exit was not seen (a resumed sweep adopting the files
    of a job whose orchestrator died): a done result.json then counts as done.
    """
    result = read_result(run_dir)
    metrics = read_metrics(run_dir)
    tail = log_tail(run_dir / STDOUT_LOG)
    if exit_code in (0, None) and result is not None and result.get("status") == "done":
        return RunOutcome(RunStatus.DONE, "", exit_code, result, metrics, tail)
    if result is not None and result.get("reason"):
        reason = str(result["reason"])
    elif exit_code is not None and exit_code < 0:
        reason = f"killed by signal {-exit_code}"
    else:
        reason = f"exit code {exit_code}" + ("" if result else ", no result.json")
    return RunOutcome(RunStatus.FAILED, reason, exit_code, result, metrics, tail)


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
