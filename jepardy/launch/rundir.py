"""One local job of the jepardy trainer: its run directory, its environment, and what it
wrote (result.json, metrics.jsonl, the log tail). An executor (executor.py) starts it.
A kind "script" run (a challenge train_gpt.py) gets its params as environment variables and
its result.json written from its log (`write_script_result`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jepardy.data.shards import write_bytes_atomic
from jepardy.ingest.logparse import parse_log
from jepardy.ingest.logresult import metric_series, run_result
from jepardy.launch.command import (
    RUN_CONFIG,
    SCRIPT,
    run_argv,
    script_environment,
    write_run_config,
)
from jepardy.spec.identity import RunIdentity
from jepardy.store.models import RunOutcome, RunStatus

STDOUT_LOG = "stdout.log"
# result.json fields of docs/architecture.md a script's log may not print.
_RESULT_KEYS = (
    "val_loss",
    "val_bpb",
    "prequant_val_loss",
    "prequant_val_bpb",
    "artifact_bytes",
    "model_bytes",
    "under_cap",
    "steps",
    "train_time_s",
    "eval_time_s",
    "tokens_per_s",
    "n_params",
    "world_size",
)
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


@dataclass(frozen=True)
class TorchrunLauncher:
    """Jobs of the built-in trainer under torchrun; `threads_per_rank` CPU threads each."""

    threads_per_rank: int = 1

    def argv(self, run: RunIdentity, run_dir: Path) -> list[str]:
        return run_argv(run, run_dir)

    def prepare(self, run: RunIdentity, run_dir: Path) -> None:
        prepare_run_dir(run, run_dir)

    def environment(self, run: RunIdentity, devices: tuple[str, ...]) -> dict[str, str]:
        env = job_environment(devices, self.threads_per_rank)
        if run.kind == SCRIPT:
            env |= script_environment(run)
        return env

    def collect(self, run: RunIdentity, run_dir: Path, exit_code: int | None) -> RunOutcome:
        if run.kind == SCRIPT:
            write_script_result(run_dir)
        return collect(run_dir, exit_code)


def write_script_result(run_dir: Path) -> dict[str, Any]:
    """A script run has no result.json of its own: parse its stdout.log with the parser
    `jepardy ingest` uses (the last run in it), add the script's provenance from run.json
    (code_sha256, and code_bytes = the script's size), and write result.json and
    metrics.jsonl, so `collect` reads it like the jepardy trainer's. Status is "done" only
    when a final metric line was printed. Returns the result."""
    log = run_dir / STDOUT_LOG
    text = log.read_bytes().decode("utf-8", errors="replace") if log.exists() else ""
    parsed = parse_log(text).runs[-1]
    result = run_result(parsed)
    script = json.loads((run_dir / RUN_CONFIG).read_text()).get("script", {})
    printed = result.get("code_bytes")
    result |= {
        "code_sha256": script.get("sha256"),
        "code_bytes": script.get("bytes"),
        "code_files": {
            script.get("path"): {"bytes": script.get("bytes"), "sha256": script.get("sha256")}
        },
        "log": STDOUT_LOG,
    }
    for key in _RESULT_KEYS:  # the trainer's result.json fields, null when not printed
        result.setdefault(key, None)
    if printed is not None and printed != script.get("bytes"):
        result["printed_code_bytes"] = printed
        result["flags"].append(
            f"the script printed a code size of {printed} bytes; its file has {script.get('bytes')}"
        )
    write_bytes_atomic(
        run_dir / "result.json", json.dumps(result, indent=1, sort_keys=True).encode()
    )
    lines = "".join(json.dumps(point) + "\n" for point in metric_series(parsed))
    write_bytes_atomic(run_dir / "metrics.jsonl", lines.encode())
    return result


def job_environment(devices: tuple[str, ...], threads_per_rank: int) -> dict[str, str]:
    """The parent's environment, unbuffered output, the job's own GPUs (when it has any)
    and its share of CPU threads (torchrun would otherwise force OMP_NUM_THREADS=1)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", str(max(1, threads_per_rank)))
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    return env
