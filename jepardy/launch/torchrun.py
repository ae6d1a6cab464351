"""Jobs under torchrun: the built-in trainer, or a challenge train_gpt.py whose params are
environment variables and whose result.json is written from its log (`write_script_result`).
An executor (executor.py) starts them; their run directory is rundir.py's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jepardy.data.shards import write_bytes_atomic
from jepardy.ingest.logparse import parse_log
from jepardy.ingest.logresult import metric_series, run_result
from jepardy.launch.command import RUN_CONFIG, SCRIPT, run_argv, script_environment
from jepardy.launch.rundir import STDOUT_LOG, collect, prepare_run_dir
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome

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
