"""The one loop every sweep runs, whatever executes its jobs: claim, submit, poll, record.

Policy, stated once: runs are submitted in spec order; a run is submitted when every lane
it waits for has finished and the executor has room for it (a local executor's free GPUs
or slots; Slurm always has room, its own queue decides); when the next run in order has no
room, no later run jumps ahead of it (no backfill), so a full-node run is never starved by
a stream of small screens. Runs of a lane that waits do not block the lanes after it.

The store is written by this process only: a claim before anything is written or submitted
(so a run held by another orchestrator is never touched), job ids and states as they change
(batched, one write per loop), heartbeats while jobs run, outcomes at the end, each guarded
by the claim (a run cancelled or taken over meanwhile keeps its row). A run whose row stops
being ours (`jepardy cancel`) has its job stopped at the next heartbeat.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jepardy.errors import UserError
from jepardy.launch.executor import Executor, JobState, Launcher
from jepardy.launch.local_executor import LOCAL, kill_jobs
from jepardy.launch.slurm import SLURM, scancel
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import HEARTBEAT_S, STALE_AFTER_S, Claim, JobRecord, RunOutcome, RunStatus
from jepardy.store.transitions import Store, TransitionError


class SweepObserver:
    """Hooks a caller overrides to show a sweep's progress; the defaults do nothing."""

    def planned(self, runs: list[RunIdentity], slots: int | None) -> None:
        """Every run of the sweep (skipped ones included); `slots`: how many can run at
        once (None: no limit this side of the executor)."""

    def skipped(self, run: RunIdentity, val_bpb: float | None = None) -> None:
        """A run this sweep leaves as it is; `val_bpb`: its result when it is done."""

    def started(self, run: RunIdentity, job: JobRecord, executor: str, run_dir: str) -> None: ...

    def finished(self, run: RunIdentity, outcome: RunOutcome) -> None: ...


@dataclass
class Interrupts:
    """SIGINT/SIGTERM count; the first asks for a clean stop, the second for one now."""

    count: int = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1


@dataclass
class TrackedJob:
    run: RunIdentity
    run_dir: Path
    job_id: str
    state: str


@dataclass
class JobTracker:
    """Runs a queue of runs through `executor` to their end, recording every transition."""

    store: Store
    executor: Executor
    launcher: Launcher
    runs_root: Path
    observer: SweepObserver = field(default_factory=SweepObserver)
    timeout_s: Callable[[RunIdentity], float | None] = lambda run: None
    waits_for: dict[str, set[str]] = field(default_factory=dict)  # lane -> lanes it waits for
    slots: int | None = None  # runs the executor can run at once; None: no limit here
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    active: dict[str, TrackedJob] = field(default_factory=dict)
    outcomes: dict[str, RunOutcome] = field(default_factory=dict)
    not_started: list[str] = field(default_factory=list)  # held by another orchestrator
    interrupts: Interrupts = field(default_factory=Interrupts)
    _records: list[JobRecord] = field(default_factory=list)  # not yet in the store
    _stopping: int = 0  # interrupts acted on

    def run_dir(self, run: RunIdentity) -> Path:
        return self.runs_root / run.sweep / run.run_id

    def run(self, queue: list[RunIdentity]) -> None:
        """Run `queue` to the end. Ctrl-C (or SIGTERM): stop every job (local: SIGTERM, then
        SIGKILL after a grace; a second Ctrl-C at once), record them interrupted, and raise
        KeyboardInterrupt."""
        queue = list(queue)
        handlers = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self.interrupts) for s in handlers}
        try:
            next_heartbeat = time.monotonic() + HEARTBEAT_S
            while queue or self.active:
                self.poll()  # first: the slots of jobs that ended are refilled at once
                if self.interrupts.count > self._stopping:
                    queue.clear()
                    self._stop()
                else:
                    self._submit_ready(queue)
                self.flush()  # submissions and state changes, once per loop
                if time.monotonic() >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = time.monotonic() + HEARTBEAT_S
                if queue or self.active:
                    time.sleep(self.executor.poll_s)
            if self._stopping:
                raise KeyboardInterrupt
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def flush(self) -> None:
        """Write the job records gathered since the last flush, in one transaction."""
        self.store.set_jobs(self._records)
        self._records.clear()

    def _submit_ready(self, queue: list[RunIdentity]) -> None:
        blocked_lanes: set[str] = set()
        for run in list(queue):
            if run.lane in blocked_lanes or self._waiting(run, queue):
                blocked_lanes.add(run.lane)
                continue
            if not self.executor.has_room(run):
                return  # no backfill: later runs wait for this one (see module docstring)
            queue.remove(run)
            self._submit(run)

    def _waiting(self, run: RunIdentity, queue: list[RunIdentity]) -> bool:
        """Whether a lane this run waits for still has queued or running runs."""
        deps = self.waits_for.get(run.lane, set())
        if not deps:
            return False
        pending = [r.lane for r in queue] + [j.run.lane for j in self.active.values()]
        return any(lane in deps for lane in pending)

    def _submit(self, run: RunIdentity) -> None:
        run_dir = self.run_dir(run)
        argv = self.launcher.argv(run, run_dir)
        try:
            # Claim first: files of a run another live orchestrator holds are never touched.
            self.store.mark_running(
                run.run_id, self.host, self.pid, str(run_dir), argv, self.executor.name
            )
        except TransitionError:
            self.not_started.append(run.run_id)
            return
        self.launcher.prepare(run, run_dir)
        try:
            record = self.executor.submit(run, run_dir, argv, self.timeout_s(run))
        except UserError as exc:
            # The executor refused the job (a bad Slurm setting): the run failed, and the
            # sweep stops here; jobs already submitted are followed by the next sweep.
            self.store.record_result(
                run.run_id,
                RunOutcome(status=RunStatus.FAILED, reason=str(exc), result=None, metrics=[]),
                holder=(self.host, self.pid),
            )
            raise
        self._records.append(record)
        self.active[run.run_id] = TrackedJob(run, run_dir, record.job_id, record.state or "")
        self.observer.started(run, record, self.executor.name, str(run_dir))

    def poll(self) -> None:
        """One batched poll of every active job; note state changes, finish ended jobs."""
        if not self.active:
            return
        states = self.executor.poll([j.job_id for j in self.active.values()])
        for job in list(self.active.values()):
            seen = states[job.job_id]
            if seen.status is not RunStatus.RUNNING:
                self._finish(job, seen)
            elif seen.backend_state != job.state:
                job.state = seen.backend_state
                self._records.append(
                    JobRecord(job.run.run_id, job.job_id, seen.backend_state, seen.nodes or None)
                )

    def _heartbeat(self) -> None:
        """Refresh the claims; act on the runs no longer ours. A run cancelled meanwhile, or
        taken over by an orchestrator that started a job of its own (it thought this one
        gone), has its job here stopped; a run taken over with this very job (a Slurm job
        the other one re-attached to) is left to its new holder. A local job is always
        stopped: no other orchestrator can follow it (its recover kills it)."""
        lost = self.store.heartbeat(list(self.active), self.host, self.pid)
        if not lost:
            return
        holders = {c.run_id: c for c in self.store.running_claims(lost)}
        stop = []
        for run_id in lost:
            job, holder = self.active[run_id], holders.get(run_id)
            followed = self.executor.jobs_outlive_orchestrator and holder is not None
            if not followed or holder.job_id != job.job_id:
                stop.append(job.job_id)  # its end is recorded by nobody: the row moved on
                continue
            del self.active[run_id]
            outcome = RunOutcome(
                RunStatus.RUNNING.value, f"taken over by {holder.host}:{holder.pid}", None, None
            )
            self.outcomes[run_id] = outcome
            self.observer.finished(job.run, outcome)
        self.executor.cancel(stop)

    def _stop(self) -> None:
        """Act on a new Ctrl-C: ask every job to stop; at the second, stop them now and
        record them interrupted without waiting for the executor to see them end."""
        self._stopping = self.interrupts.count
        force = self._stopping > 1
        self.executor.cancel([j.job_id for j in self.active.values()], force=force)
        if force:
            for job in list(self.active.values()):
                self._finish(job, JobState(RunStatus.CANCELLED, "CANCELLED"))

    def _finish(self, job: TrackedJob, seen: JobState) -> None:
        self.flush()  # its job's earlier records first: the outcome is the last word
        exit_code = self.executor.exit_code(job.job_id, job.run_dir)
        outcome = self.launcher.collect(job.run, job.run_dir, exit_code)
        status, reason = self._verdict(job, seen, outcome, exit_code)
        outcome = outcome.with_status(status.value, reason)
        recorded = self.store.record_result(
            job.run.run_id,
            RunOutcome(
                status=status,
                reason=reason,
                exit_code=outcome.exit_code,
                result=outcome.result,
                metrics=outcome.metrics,
                log_tail=outcome.log_tail,
            ),
            holder=(self.host, self.pid),
            job_state=seen.backend_state or "ENDED",
        )
        if not recorded:  # the row stopped being ours: cancelled, or taken over
            now = self.store.statuses([job.run.run_id])[job.run.run_id]
            why = "cancelled" if now is RunStatus.CANCELLED else "taken over by another sweep"
            outcome = outcome.with_status(now.value, why)
        del self.active[job.run.run_id]
        self.outcomes[job.run.run_id] = outcome
        self.observer.finished(job.run, outcome)

    def _verdict(
        self, job: TrackedJob, seen: JobState, outcome: RunOutcome, exit_code: int | None
    ) -> tuple[RunStatus, str]:
        """The run's status from what the executor saw and what the job's files show."""
        if outcome.status is RunStatus.DONE:
            return RunStatus.DONE, ""  # a real result stands, however the job ended
        if self._stopping:
            return RunStatus.INTERRUPTED, "interrupted"
        if seen.status is RunStatus.TIMEOUT:
            return RunStatus.TIMEOUT, seen.reason or f"job {job.job_id} timed out"
        if seen.status is RunStatus.CANCELLED:
            return RunStatus.CANCELLED, f"job {job.job_id} cancelled"
        if seen.status is RunStatus.DONE and exit_code is None:
            # Ended without reporting an exit status (killed or purged before it could): it
            # never finished, so it runs again, as a job killed with its orchestrator.
            return RunStatus.INTERRUPTED, f"job {job.job_id} ended without an exit status"
        return RunStatus.FAILED, outcome.reason

    # --- resuming ---

    def recover(self, runs: list[RunIdentity]) -> None:
        """Settle the runs left running by an orchestrator that is gone (killed, or its
        machine rebooted): take each over (compare-and-set, so two resuming orchestrators
        never both do), then follow its job when the executor still has it, else record the
        outcome its files show (done, or interrupted so that it runs again). Runs held by a
        live orchestrator are left alone. UserError when such a run's job belongs to another
        executor than this sweep's."""
        now = datetime.now(UTC)
        by_id = {r.run_id: r for r in runs}
        claims = [c for c in self.store.running_claims(list(by_id)) if _is_stale(c, self.host, now)]
        for claim in claims:
            if claim.executor not in (None, self.executor.name):
                run = by_id[claim.run_id]
                raise UserError(
                    f"run {claim.run_id}: its {claim.executor} job {claim.job_id} was left "
                    f"by orchestrator {claim.host}:{claim.pid}, which is gone; resume with "
                    f"--executor {claim.executor}, or `jepardy cancel {run.sweep}`"
                )
        for claim in claims:
            if self.store.adopt(claim, self.host, self.pid):
                self._settle(claim, by_id[claim.run_id])
        self.flush()
        self.poll()  # jobs that ended meanwhile are recorded now, so they can run again

    def _settle(self, claim: Claim, run: RunIdentity) -> None:
        run_dir = Path(claim.run_dir) if claim.run_dir else self.run_dir(run)
        job_id = self.executor.recover(claim, run)
        if job_id is not None:
            record = JobRecord(run.run_id, job_id)
            self._records.append(record)
            self.active[run.run_id] = TrackedJob(run, run_dir, job_id, "")
            self.observer.started(run, record, self.executor.name, str(run_dir))
            return
        has_files = (run_dir / "run.json").exists()
        outcome = self.launcher.collect(run, run_dir, None) if has_files else None
        if outcome is not None and outcome.status is RunStatus.DONE:
            status, reason = RunStatus.DONE, ""
        else:
            status, reason = RunStatus.INTERRUPTED, f"orchestrator {claim.host}:{claim.pid} gone"
        self.store.record_result(
            run.run_id,
            RunOutcome(
                status=status,
                reason=reason,
                result=outcome.result if status is RunStatus.DONE and outcome else None,
                metrics=outcome.metrics if status is RunStatus.DONE and outcome else [],
                log_tail=outcome.log_tail if outcome else "",
            ),
            holder=(self.host, self.pid),
        )


def _is_stale(claim: Claim, host: str, now: datetime) -> bool:
    """Its orchestrator's pid is dead on this host (or is ours: a recycled pid), or its
    heartbeat is older than STALE_AFTER_S (any host; assumes clocks in sync)."""
    on_this_host = claim.host == host and claim.pid is not None
    if on_this_host and (not _pid_alive(claim.pid) or claim.pid == os.getpid()):
        return True
    beat = claim.heartbeat_at
    return beat is None or now - beat > timedelta(seconds=STALE_AFTER_S)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cancel_sweep(store: Store, sweep: str) -> list[str]:
    """Cancel a sweep's running runs: mark them cancelled (first, in one transaction, so no
    outcome of theirs can land after), then stop their jobs: scancel the Slurm ones; on this
    machine, every process of the local ones (SIGTERM, SIGKILL after a grace), returning
    when none is left. A local job on another machine is stopped by its own
    orchestrator at its next heartbeat. Returns the cancelled run ids; UserError when the
    store has no such sweep."""
    if sweep not in (names := store.sweep_names()):
        raise UserError(
            f"cancel: sweep {sweep!r} is not in database {store.name}; "
            f"it has {', '.join(names) or 'no sweeps'}"
        )
    claims = store.cancel_running(store.runs_frame(sweep)["id"].tolist())
    scancel(sorted({c.job_id for c in claims if c.executor == SLURM and c.job_id}))
    host = socket.gethostname()
    kill_jobs([c.run_dir for c in claims if c.executor == LOCAL and c.host == host and c.run_dir])
    return [c.run_id for c in claims]
