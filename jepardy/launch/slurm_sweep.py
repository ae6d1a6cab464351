"""A sweep on Slurm: every run not done becomes one Slurm job, tracked until it ends.

The same contract as the local sweep (sweep.py): the store is written by this process only
(claim before submitting, job id right after, heartbeats and Slurm states while it runs, the
outcome from the run directory's files at the end); running it again continues where it
stopped. What differs is who runs the job: a job outlives the orchestrator that submitted it,
so a resumed sweep re-attaches to its runs' jobs that are still queued or running (by the
recorded job id, or by the job name `jepardy-<run id>` when the orchestrator died between
sbatch and recording the id) instead of submitting them again.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from jepardy.launch.command import trainer_schema
from jepardy.launch.executor import Executor, JobState
from jepardy.launch.local import JobOutcome, TorchrunLauncher, prepare_run_dir
from jepardy.launch.scheduler import HEARTBEAT_S, Interrupts, SweepObserver
from jepardy.launch.slurm import SlurmExecutor, SlurmOptions, exit_code
from jepardy.launch.sweep import (
    _RETRYABLE,
    SweepOptions,
    SweepSummary,
    _is_stale,
    check_paths,
    git_commit,
    run_timeout_s,
)
from jepardy.spec import expand_runs, load_spec
from jepardy.store import RunLike, RunStatus, Store, TransitionError

POLL_S = 2.0  # one batched executor.poll (squeue) call per poll


@dataclass
class TrackedJob:
    run: RunLike
    run_dir: Path
    job_id: str
    state: str = "PENDING"


@dataclass
class JobTracker:
    """Submits runs through an Executor and follows their jobs to the end, recording each
    transition; it knows no backend (its states arrive as executor.JobState)."""

    store: Store
    executor: Executor
    runs_root: Path
    observer: SweepObserver
    options: SweepOptions
    waits_for: dict[str, set[str]] = field(default_factory=dict)
    active: dict[str, TrackedJob] = field(default_factory=dict)
    outcomes: dict[str, JobOutcome] = field(default_factory=dict)
    not_started: list[str] = field(default_factory=list)
    poll_s: float = POLL_S

    def run_dir(self, run: RunLike) -> Path:
        return (self.runs_root / run.sweep / run.run_id).resolve()

    def submit(self, run: RunLike) -> None:
        """Claim the run, then sbatch it; a run held by another orchestrator is skipped."""
        run_dir = self.run_dir(run)
        argv = prepare_run_dir(run, run_dir)
        try:
            self.store.mark_running(
                run.run_id, socket.gethostname(), os.getpid(), str(run_dir), argv
            )
        except TransitionError:
            self.not_started.append(run.run_id)
            return
        job_id = self.executor.submit(run, run_dir, run_timeout_s(run, self.options.timeout_s))
        self.store.set_slurm_job(run.run_id, job_id, state="PENDING")
        self.active[run.run_id] = TrackedJob(run, run_dir, job_id)
        self.observer.started(run)

    def attach(self, run: RunLike, job_id: str, state: str) -> None:
        """Follow a job submitted by an earlier orchestrator."""
        self.store.set_slurm_job(run.run_id, job_id, state=state)
        self.active[run.run_id] = TrackedJob(run, self.run_dir(run), job_id, state)
        self.observer.started(run)

    def run(self, queue: list[RunLike]) -> None:
        """Submit `queue` (lanes after the lanes they wait for) and poll until every job ended.
        Ctrl-C: cancel every job, record them interrupted, raise KeyboardInterrupt."""
        interrupts = Interrupts()
        previous = {s: signal.signal(s, interrupts) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            next_heartbeat = time.monotonic() + HEARTBEAT_S
            while queue or self.active:
                if interrupts.count:
                    self.cancel_all("interrupted")
                    raise KeyboardInterrupt
                self._submit_ready(queue)
                self.poll()
                if time.monotonic() >= next_heartbeat:
                    self.store.heartbeat(list(self.active))
                    next_heartbeat = time.monotonic() + HEARTBEAT_S
                if queue or self.active:
                    time.sleep(self.poll_s)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _submit_ready(self, queue: list[RunLike]) -> None:
        lanes_left = {r.lane for r in queue} | {j.run.lane for j in self.active.values()}
        for run in list(queue):
            if self.waits_for.get(run.lane, set()) & lanes_left:
                continue
            queue.remove(run)
            self.submit(run)

    def poll(self) -> None:
        """One batched poll of every active job; record state changes and ended jobs."""
        states = self.executor.poll([j.job_id for j in self.active.values()])
        for run_id, job in list(self.active.items()):
            seen = states[job.job_id]
            if seen.status is RunStatus.RUNNING:
                if seen.backend_state != job.state:
                    self.store.set_slurm_job(
                        run_id, job.job_id, seen.nodes or None, seen.backend_state
                    )
                job.state = seen.backend_state
                continue
            self._finish(job, seen.status, seen.backend_state)

    def _finish(self, job: TrackedJob, status: RunStatus, state: str) -> None:
        outcome = TorchrunLauncher().collect(job.run, job.run_dir, exit_code(job.run_dir))
        if status is RunStatus.DONE and outcome.status != "done":
            # No exit status from node 0's task: it never finished (killed, purged), so the
            # run is interrupted and runs again, as a local run killed with its orchestrator.
            status = RunStatus.FAILED if outcome.exit_code is not None else RunStatus.INTERRUPTED
        reason = outcome.reason if status is not RunStatus.DONE else ""
        if status in (RunStatus.TIMEOUT, RunStatus.INTERRUPTED):
            reason = f"job {job.job_id} {state.lower() or 'ended'}"
        outcome = outcome.with_status(status.value, reason)
        self.store.set_slurm_job(job.run.run_id, job.job_id, state=state or "ENDED")
        self.store.record_result(
            job.run.run_id,
            status=status,
            reason=reason,
            exit_code=outcome.exit_code,
            result=outcome.result,
            metrics=outcome.metrics,
            log_tail=outcome.log_tail,
        )
        del self.active[job.run.run_id]
        self.outcomes[job.run.run_id] = outcome
        self.observer.finished(job.run, outcome)

    def cancel_all(self, reason: str) -> None:
        """Cancel every active job and record it interrupted."""
        self.executor.cancel([j.job_id for j in self.active.values()])
        for job in list(self.active.values()):
            self._finish(job, RunStatus.INTERRUPTED, "CANCELLED")


def reattach(store: Store, runs: list[RunLike], tracker: JobTracker) -> None:
    """Settle the runs left running by an orchestrator that is gone: follow their jobs that
    Slurm still has queued or running; record the outcome of those that ended meanwhile
    (done from a done result.json; interrupted, so they run again, otherwise)."""
    host, now = socket.gethostname(), datetime.now(UTC)
    by_id = {r.run_id: r for r in runs}
    claims = [c for c in store.running_claims(list(by_id)) if _is_stale(c, host, now)]
    if not claims:
        return
    recorded = store.slurm_jobs([c.run_id for c in claims])
    job_ids = {c.run_id: recorded.get(c.run_id) for c in claims}
    for run_id, job_id in job_ids.items():
        if job_id is None:  # died between submitting and recording the id: find it by name
            job_ids[run_id] = tracker.executor.find(by_id[run_id])
    states: dict[str, JobState] = tracker.executor.poll([j for j in job_ids.values() if j])
    for claim in claims:
        run, job_id = by_id[claim.run_id], job_ids[claim.run_id]
        if job_id and states[job_id].status is RunStatus.RUNNING:
            tracker.attach(run, job_id, states[job_id].backend_state)
        elif job_id:
            job = TrackedJob(run, tracker.run_dir(run), job_id)
            tracker.active[run.run_id] = job
            tracker._finish(job, states[job_id].status, states[job_id].backend_state)
        else:
            store.record_result(
                run.run_id,
                status=RunStatus.INTERRUPTED,
                result=None,
                metrics=[],
                reason=f"orchestrator {claim.host}:{claim.pid} gone before sbatch",
            )


def run_slurm_sweep(
    spec_path: Path,
    store: Store,
    options: SweepOptions,
    slurm: dict[str, str | int],
    observer: SweepObserver | None = None,
) -> SweepSummary:
    """Run every run of the spec that is not done as a Slurm job; re-attach to the jobs of
    an earlier, dead orchestrator; return when every job has ended. `slurm`: SlurmOptions
    fields given on the command line, over the spec's [slurm] table."""
    observer = observer or SweepObserver()
    started = time.perf_counter()
    spec = load_spec(spec_path, trainer_schema())
    runs = expand_runs(spec)
    check_paths(spec, runs)
    store.upsert_sweep(spec.name, str(spec_path), spec.text)
    store.register_runs(runs, git_commit())
    tracker = JobTracker(
        store=store,
        executor=SlurmExecutor(
            options.runs_root.resolve() / spec.name / ".submitit",
            SlurmOptions(**(spec.slurm | slurm)),
        ),
        runs_root=options.runs_root,
        observer=observer,
        options=options,
        waits_for={lane.name: set(lane.after) for lane in spec.lanes},
    )
    observer.planned(len(runs))
    reattach(store, runs, tracker)
    statuses = store.statuses([r.run_id for r in runs])
    runnable = _RETRYABLE | (
        {RunStatus.FAILED, RunStatus.TIMEOUT} if options.retry_failed else set()
    )
    queue = [r for r in runs if statuses[r.run_id] in runnable]
    summary = SweepSummary(sweep=spec.name, total=len(runs))
    for run in runs:
        if statuses[run.run_id] not in runnable and run.run_id not in tracker.active:
            summary.skipped += 1
            observer.skipped(run)
    tracker.run(queue)
    for run_id, outcome in tracker.outcomes.items():
        if outcome.status == "done":
            summary.done += 1
        else:
            summary.failed += 1
            summary.failures.append(f"{run_id}: {outcome.status}: {outcome.reason}")
    summary.failures += [f"{r}: held by another orchestrator" for r in tracker.not_started]
    summary.wall_s = time.perf_counter() - started
    return summary


def cancel_sweep(store: Store, sweep: str, executor: Executor | None = None) -> list[str]:
    """Cancel the jobs of a sweep's running runs that have a recorded job (scancel by
    default) and record those runs interrupted with reason "cancelled"; returns their ids.
    Runs of a local sweep (no job id) are left to their orchestrator's Ctrl-C."""
    executor = executor or SlurmExecutor(Path("."), SlurmOptions())
    claims = store.running_claims(store.runs_frame(sweep)["id"].tolist())
    jobs = store.slurm_jobs([c.run_id for c in claims])
    running = [c for c in claims if c.run_id in jobs]
    executor.cancel(sorted(set(jobs.values())))
    for claim in running:
        store.record_result(
            claim.run_id,
            status=RunStatus.INTERRUPTED,
            result=None,
            metrics=[],
            reason="cancelled",
        )
    return [c.run_id for c in running]
