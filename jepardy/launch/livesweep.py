"""What a live view of a sweep shows, as plain data: each run's label, state, placement,
progress (the last points of its metrics.jsonl) and outcome.

Two sources fill it: `LiveSweep`, the observer of a sweep's own tracker (in its process),
and `store_snapshot`, a read of the store by any other process (`jepardy status --watch`).
Both give a `SweepSnapshot`, which the CLI renders (cli/live.py).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from jepardy.launch.metrics_tail import MetricsTail, MetricsTails
from jepardy.launch.slurm import SLURM
from jepardy.launch.tracker import SweepObserver
from jepardy.spec.identity import JEPARDY, RunIdentity
from jepardy.spec.model import CONTROL
from jepardy.store.states import TERMINAL, JobRecord, RunOutcome, RunStatus
from jepardy.trainer.config import TrainConfig

SKIPPED = "skipped"  # done before this sweep started (or failed, without --retry-failed)


@dataclass
class LiveRun:
    """One run as a live view shows it; None where it is not known (yet)."""

    run_id: str
    label: str  # lane/arm, the arm's axis values, the match, the seed
    lane: str
    match: str
    seed: int
    is_control: bool
    status: str = RunStatus.PENDING.value  # a RunStatus value, or SKIPPED
    where: str = ""  # "cpu", "gpu 0,1", "slurm 1234 node7"
    run_dir: str = ""
    started_s: float | None = None  # epoch seconds
    ended_s: float | None = None
    iterations: int | None = None  # the step cap
    wallclock_s: float | None = None  # the training-time budget
    step: int | None = None  # the last step in metrics.jsonl
    train_loss: float | None = None
    val_bpb: float | None = None  # the last one seen while it runs; the final one when done
    # (skipped: the one recorded, if it was done before)
    tokens_per_s: float | None = None
    reason: str = ""  # why it failed

    @property
    def running(self) -> bool:
        return self.status == RunStatus.RUNNING.value

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class SweepSnapshot:
    """Every run of a sweep as it stands at `now_s`; `slots`: runs that can run at once
    (None: no limit this side of the executor, e.g. Slurm's own queue)."""

    name: str
    runs: list[LiveRun]
    slots: int | None
    now_s: float


def run_label(lane: str, arm: str, variant: str, match: str, seed: object) -> str:
    """`main/jepa jepa_weight=0.1 ema=true seed=2`: what tells a run from its neighbours."""
    return " ".join(p for p in (f"{lane}/{arm}", variant, match, f"seed={seed}") if p)


def live_run(run: RunIdentity) -> LiveRun:
    """A planned run, not started."""
    return LiveRun(
        run_id=run.run_id,
        label=run_label(run.lane, run.arm, run.variant, run.match, run.seed),
        lane=run.lane,
        match=run.match,
        seed=run.seed,
        is_control=run.arm == CONTROL,
        **_budget(run.params, run.kind),
    )


def _budget(params: dict[str, Any], kind: str) -> dict[str, Any]:
    """The run's step cap and wallclock budget, the trainer's defaults where unset."""
    defaults = TrainConfig() if kind == JEPARDY else None
    iterations = params.get("iterations", defaults.iterations if defaults else None)
    wallclock = params.get("wallclock_s", defaults.wallclock_s if defaults else None)
    return {
        "iterations": int(iterations) if iterations else None,
        "wallclock_s": float(wallclock) if wallclock else None,
    }


def placement(
    executor: str | None, job_id: str | None, devices: str | None, nodes: str | None
) -> str:
    """Where a job runs, in a few characters."""
    if executor == SLURM:
        return " ".join(p for p in ("slurm", job_id, nodes) if p)
    return f"gpu {devices}" if devices else "cpu"


def take_progress(run: LiveRun, tail: MetricsTail) -> None:
    """The run's latest step and figures from its metrics.jsonl."""
    run.step = tail.step
    run.train_loss = tail.last.get("train_loss")
    run.val_bpb = tail.last.get("val_bpb", run.val_bpb)
    run.tokens_per_s = tail.last.get("tokens_per_s")


def control_delta(run: LiveRun, runs: list[LiveRun]) -> float | None:
    """The done run's val_bpb minus the mean of its lane's done controls of the same match
    (those of its own seed when there are any), a control done before this sweep (skipped,
    with its val_bpb) included; None for a control or without one."""
    if run.is_control or run.val_bpb is None or run.status != RunStatus.DONE.value:
        return None
    controls = [
        r
        for r in runs
        if r.is_control
        and r.lane == run.lane
        and r.match == run.match
        and r.status in (RunStatus.DONE.value, SKIPPED)
        and r.val_bpb is not None
    ]
    chosen = [r for r in controls if r.seed == run.seed] or controls
    if not chosen:
        return None
    return run.val_bpb - sum(r.val_bpb for r in chosen) / len(chosen)


class LiveSweep(SweepObserver):
    """The tracker's observer that keeps every run's LiveRun; `snapshot()` (from any
    thread) adds the running runs' progress. `notify` is told of each start and end."""

    def __init__(self, notify: Callable[[LiveRun, list[LiveRun]], None] | None = None) -> None:
        self.notify = notify
        self.name = ""
        self.slots: int | None = 1
        self._runs: dict[str, LiveRun] = {}
        self._tails = MetricsTails()
        self._lock = threading.Lock()

    def planned(self, runs: list[RunIdentity], slots: int | None) -> None:
        with self._lock:
            self.name = ", ".join(sorted({r.sweep for r in runs}))
            self.slots = slots
            for run in runs:
                self._runs.setdefault(run.run_id, live_run(run))

    def skipped(self, run: RunIdentity, val_bpb: float | None = None) -> None:
        with self._lock:
            live = self._runs.setdefault(run.run_id, live_run(run))
            live.status, live.val_bpb = SKIPPED, val_bpb

    def started(self, run: RunIdentity, job: JobRecord, executor: str, run_dir: str) -> None:
        with self._lock:
            live = self._runs.setdefault(run.run_id, live_run(run))
            live.status, live.run_dir = RunStatus.RUNNING.value, run_dir
            live.started_s, live.ended_s = time.time(), None
            live.where = placement(executor, job.job_id, job.devices, job.nodes)
        self._notify(live)

    def finished(self, run: RunIdentity, outcome: RunOutcome) -> None:
        with self._lock:
            live = self._runs.setdefault(run.run_id, live_run(run))
            live.status, live.ended_s = outcome.status.value, time.time()
            live.reason = outcome.reason
            result = outcome.result or {}
            live.val_bpb = result.get("val_bpb") if live.status == RunStatus.DONE else None
            live.step = result.get("steps", live.step)
            self._tails.forget(live.run_dir)
        self._notify(live)

    def _notify(self, live: LiveRun) -> None:
        if self.notify is not None:
            self.notify(live, self.snapshot().runs)

    def snapshot(self) -> SweepSnapshot:
        with self._lock:
            runs = [replace(r) for r in self._runs.values()]
        for run in runs:
            if run.running and run.run_dir:
                take_progress(run, self._tails.read(run.run_dir))
        return SweepSnapshot(self.name, runs, self.slots, time.time())


def store_snapshot(
    frame: pd.DataFrame, name: str, tails: MetricsTails, slots: int | None = None
) -> SweepSnapshot:
    """A sweep's runs as the store has them (`Database.runs_frame(sweep)`), with the
    running ones' progress from their run directories (`tails` kept between polls). Without
    `slots`, as many runs as run now are taken to run at once (None when none runs)."""
    runs = [_stored_run(row) for row in frame.to_dict("records")]
    running = [r for r in runs if r.running]
    for run in running:
        if run.run_dir:
            take_progress(run, tails.read(run.run_dir))
    return SweepSnapshot(name, runs, slots or len(running) or None, time.time())


def _stored_run(row: dict[str, Any]) -> LiveRun:
    params = json.loads(row["params"]) if isinstance(row["params"], str) else {}
    return LiveRun(
        run_id=row["id"],
        label=run_label(row["lane"], row["arm"], row["variant"], row["match"], row["seed"]),
        lane=row["lane"],
        match=row["match"],
        seed=int(row["seed"]),
        is_control=row["arm"] == CONTROL and row["kind"] != "export",
        status=str(row["status"]),
        where=placement(row["executor"], row["job_id"], row["devices"], row["job_nodes"]),
        run_dir=row["run_dir"] if isinstance(row["run_dir"], str) else "",
        started_s=_epoch_s(row["started_at"]),
        ended_s=_epoch_s(row["finished_at"]),
        val_bpb=None if pd.isna(row["val_bpb"]) else float(row["val_bpb"]),
        step=None if pd.isna(row["steps"]) else int(row["steps"]),
        reason=row["reason"] if isinstance(row["reason"], str) else "",
        **_budget(params, str(row["kind"])),
    )


def _epoch_s(value: object) -> float | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).timestamp()
