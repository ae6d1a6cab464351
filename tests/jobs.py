"""Fake jobs at the outer edge of the local executor: real child processes that sleep, record
when they ran and with which CUDA_VISIBLE_DEVICES, and write a result.json like the
trainer's. Used by the tracker tests and bench/scheduler.py."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from jepardy.launch.rundir import collect
from jepardy.launch.torchrun import job_environment
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import Store

# argv: run_dir sleep_s exit_code. Writes timing.json at once (so a killed job leaves a
# trace) and result.json at the end.
JOB_SCRIPT = """
import json, os, sys, time
run_dir, sleep_s, exit_code = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
start = time.time()
info = {"pid": os.getpid(), "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start}
open(os.path.join(run_dir, "timing.json"), "w").write(json.dumps(info))
time.sleep(sleep_s)
info["end"] = time.time()
open(os.path.join(run_dir, "timing.json"), "w").write(json.dumps(info))
if exit_code == 0:
    val_bpb = 1.0 + sleep_s
    result = {"status": "done", "reason": "", "val_bpb": val_bpb, "val_loss": 1.69 * val_bpb}
    open(os.path.join(run_dir, "result.json"), "w").write(json.dumps(result))
else:
    print("boom: failing on purpose", flush=True)
sys.exit(exit_code)
"""


# A run the fake launchers below understand: params sleep_s, exit_code.
FakeRun = partial(
    RunIdentity, lane="main", sweep="fake", arm="control", variant="", match="", seed=1, kind="fake"
)


@dataclass(frozen=True)
class SleepLauncher:
    """Each run sleeps params["sleep_s"] and exits with params.get("exit_code", 0)."""

    def argv(self, run: FakeRun, run_dir: Path) -> list[str]:
        sleep_s = str(run.params.get("sleep_s", 0.1))
        exit_code = str(run.params.get("exit_code", 0))
        return [sys.executable, "-c", JOB_SCRIPT, str(run_dir), sleep_s, exit_code]

    def prepare(self, run: FakeRun, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("result.json", "timing.json"):
            (run_dir / name).unlink(missing_ok=True)

    def environment(self, run: FakeRun, devices: tuple[str, ...]) -> dict[str, str]:
        return job_environment(devices, threads_per_rank=1)

    def collect(self, run: FakeRun, run_dir: Path, exit_code: int | None) -> RunOutcome:
        return collect(run_dir, exit_code)


def register(store: Store, runs: list[FakeRun]) -> None:
    store.upsert_sweep("fake", "fake.toml", "")
    store.register_runs(runs, git_commit=None)


def timings(runs_root: Path, runs: list[FakeRun]) -> dict[str, dict[str, Any]]:
    """run_id -> {pid, cvd, start, end} for the runs that started."""
    found = {}
    for run in runs:
        path = runs_root / run.sweep / run.run_id / "timing.json"
        if path.exists():
            found[run.run_id] = json.loads(path.read_text())
    return found


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    return peak


def ledger_spec(
    tmp_path: Path,
    name: str,
    seeds: int,
    sleep_s: float,
    script: Path,
    lanes: str = "[lanes.main]\ncontrol = {}\n",
) -> Path:
    """A sweep spec of `seeds` runs per lane (`lanes`: the spec's lane tables) of the ledger
    script (tests/ledger_train_gpt.py) that append to tmp_path/ledger.txt; their sleep is
    read from tmp_path/sleep_s at run time, so a test can shorten it for a resume without
    changing the runs' ids."""
    (tmp_path / "sleep_s").write_text(str(sleep_s))
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""\
[sweep]
name = "{name}"
seeds = [{", ".join(str(s) for s in range(1, seeds + 1))}]

[trainer]
kind = "script"
path = "{script}"

[params]
SLEEP_FILE = "{tmp_path / "sleep_s"}"
LEDGER = "{tmp_path / "ledger.txt"}"

{lanes}""")
    return path
