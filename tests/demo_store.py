"""A store shaped like `make demo`'s, without training: the runs of experiments/smoke.toml
(their real ids, params and labels from the real spec), registered and recorded through the
Store exactly as a sweep records them, with results of the demo's size (val_bpb near 2.47,
artifacts near 331,000 bytes). Optionally two of them left running with their jobs, as
`jepardy status` sees a sweep in progress.
"""

from __future__ import annotations

import os
from pathlib import Path

from jepardy.launch.command import trainer_schema
from jepardy.spec.expand import expand_runs
from jepardy.spec.parse import load_spec
from jepardy.store.states import JobRecord, RunOutcome
from jepardy.store.transitions import Store, open_store

SMOKE = Path(__file__).resolve().parent.parent / "experiments" / "smoke.toml"


def demo_result(index: int) -> dict[str, object]:
    """A done run's result.json: values that differ from run to run in every field shown."""
    bpb = 2.4693 + 0.0037 * index - 0.0011 * index * index
    return {
        "status": "done",
        "val_bpb": round(bpb, 6),
        "val_loss": round(bpb * 0.6931 * 1.43, 6),
        "artifact_bytes": 331_088 + 117 * index,
        "model_bytes": 262_000 + 113 * index,
        "code_bytes": 69_088 + 4 * index,
        "under_cap": True,
        "steps": 150,
        "train_time_s": 31.25 + 0.5 * index,
        "eval_time_s": 1.5,
        "tokens_per_s": 19_660.0 - 11 * index,
        "code_sha256": "a" * 64,
        "code_files": {"jepardy/trainer/train.py": "c" * 64},
        "python_version": "3.11.2",
        "torch_version": "2.5.1",
        "device": "cpu",
        "data": {"train_shards": 1, "val_tokens": 65_536},
    }


def write_demo(db: Path, running: int = 0) -> list[str]:
    """Register the smoke spec's 8 runs in SQLite `db`; the first `running` of them are left
    running (held by this process, with a local job on devices "cpu"), the rest done. Their
    ids, in spec order."""
    spec = load_spec(SMOKE, trainer_schema(), trainer_rules=False)
    runs = expand_runs(spec)
    store = open_store(str(db))
    store.upsert_sweep(spec.name, str(SMOKE), spec.text)
    store.register_runs(runs, git_commit="abc123")
    for index, run in enumerate(runs):
        if index < running:
            _start(store, run.run_id, db.parent / "runs" / run.run_id, index)
        else:
            outcome = RunOutcome(status="done", result=demo_result(index), metrics=[])
            store.record_result(run.run_id, outcome)
    return [run.run_id for run in runs]


def _start(store: Store, run_id: str, run_dir: Path, index: int) -> None:
    store.mark_running(run_id, "demo-host", os.getpid(), str(run_dir), ["torchrun"])
    job = JobRecord(run_id, job_id=str(40_000 + index), state="RUNNING", nodes="demo-host")
    store.set_jobs([job])
