"""The local scheduler: packs runs onto free GPUs (or CPU slots), in spec order.

Policy, stated once: runs start in spec order; a run starts when every lane it waits for
has finished and enough devices are free; when the next run in order does not fit, no later
run jumps ahead of it (no backfill), so a full-node run is never starved by a stream of small
screens. Runs of a lane that waits do not block the lanes after it.

Each job is its own process session with its own CUDA_VISIBLE_DEVICES; torchrun's
--standalone picks a free rendezvous port per job. A job past its timeout has its whole
process group killed. The store is written by this process only: claims before launch,
heartbeats while running, outcomes at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from jepardy.launch.local import JobOutcome, kill_group
from jepardy.launch.slots import DevicePool
from jepardy.store import RunLike, RunStatus, Store, TransitionError

POLL_S = 0.02  # how often children are polled; bounds the per-job scheduling latency
HEARTBEAT_S = 10.0


class Launcher(Protocol):
    """How one kind of job is prepared, started and read back."""

    def prepare(self, run: RunLike, run_dir: Path) -> list[str]: ...

    def environment(self, run: RunLike, devices: tuple[str, ...]) -> dict[str, str]: ...

    def collect(self, run: RunLike, run_dir: Path, exit_code: int | None) -> JobOutcome: ...


class SweepObserver:
    """Hooks a caller overrides to show a sweep's progress; the defaults do nothing."""

    def planned(self, total: int) -> None: ...

    def skipped(self, run: RunLike) -> None: ...

    def started(self, run: RunLike) -> None: ...

    def finished(self, run: RunLike, outcome: JobOutcome) -> None: ...


@dataclass
class ActiveJob:
    run: RunLike
    run_dir: Path
    proc: subprocess.Popen
    devices: tuple[str, ...]
    started_s: float
    deadline_s: float | None


@dataclass
class Interrupts:
    """SIGINT/SIGTERM count; the first asks for a clean stop, the second for SIGKILL now."""

    count: int = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1


@dataclass
class ScheduleResult:
    outcomes: dict[str, JobOutcome] = field(default_factory=dict)
    not_started: list[str] = field(default_factory=list)  # claimed by another orchestrator


@dataclass
class LocalScheduler:
    store: Store
    pool: DevicePool
    launcher: Launcher
    runs_root: Path
    host: str
    observer: SweepObserver
    timeout_s: Callable[[RunLike], float | None]
    waits_for: dict[str, set[str]] = field(default_factory=dict)  # lane -> lanes it waits for
    poll_s: float = POLL_S
    active: dict[str, ActiveJob] = field(default_factory=dict)
    interrupts: Interrupts = field(default_factory=Interrupts)
    launched: list[tuple[str, int, str]] = field(default_factory=list)  # not yet in the store

    def run(self, queue: list[RunLike]) -> ScheduleResult:
        """Run `queue` to the end. Ctrl-C: kill every job (SIGTERM, then SIGKILL; a second
        Ctrl-C kills at once), record them as interrupted, and raise KeyboardInterrupt."""
        previous = {s: signal.signal(s, self.interrupts) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._loop(list(queue))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self, queue: list[RunLike]) -> ScheduleResult:
        result = ScheduleResult()
        next_heartbeat = time.monotonic() + HEARTBEAT_S
        while queue or self.active:
            if self.interrupts.count:
                self._stop_all(result)
                raise KeyboardInterrupt
            self._start_ready(queue, result)
            self.store.set_jobs(self.launched)
            self.launched.clear()
            self._reap(result)
            if time.monotonic() >= next_heartbeat:
                self.store.heartbeat(list(self.active))
                next_heartbeat = time.monotonic() + HEARTBEAT_S
            time.sleep(self.poll_s)
        return result

    def _start_ready(self, queue: list[RunLike], result: ScheduleResult) -> None:
        blocked_lanes: set[str] = set()
        for run in list(queue):
            if run.lane in blocked_lanes or self._waiting(run, queue):
                blocked_lanes.add(run.lane)
                continue
            devices = self.pool.acquire(run.nproc)
            if devices is None:
                return  # no backfill: later runs wait for this one (see module docstring)
            queue.remove(run)
            if not self._launch(run, devices):
                self.pool.release(devices)
                result.not_started.append(run.run_id)

    def _waiting(self, run: RunLike, queue: list[RunLike]) -> bool:
        """Whether a lane this run waits for still has queued or running runs."""
        deps = self.waits_for.get(run.lane, set())
        if not deps:
            return False
        pending = [r.lane for r in queue] + [j.run.lane for j in self.active.values()]
        return any(lane in deps for lane in pending)

    def _launch(self, run: RunLike, devices: tuple[str, ...]) -> bool:
        run_dir = self.runs_root / run.sweep / run.run_id
        argv = self.launcher.prepare(run, run_dir)
        try:
            # Claim first: a run held by another live orchestrator is never started twice.
            self.store.mark_running(run.run_id, self.host, os.getpid(), str(run_dir), argv)
        except TransitionError:
            return False
        with (run_dir / "stdout.log").open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.launcher.environment(run, devices),
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.launched.append((run.run_id, proc.pid, ",".join(devices)))
        timeout = self.timeout_s(run)
        now = time.monotonic()
        self.active[run.run_id] = ActiveJob(
            run, run_dir, proc, devices, now, now + timeout if timeout else None
        )
        self.observer.started(run)
        return True

    def _reap(self, result: ScheduleResult) -> None:
        now = time.monotonic()
        for run_id, job in list(self.active.items()):
            exit_code = job.proc.poll()
            if exit_code is None and job.deadline_s is not None and now > job.deadline_s:
                kill_group(job.proc)
                outcome = self.launcher.collect(job.run, job.run_dir, job.proc.returncode)
                outcome = outcome.with_status(
                    "timeout", f"timeout after {job.deadline_s - job.started_s:.0f}s"
                )
            elif exit_code is not None:
                outcome = self.launcher.collect(job.run, job.run_dir, exit_code)
            else:
                continue
            self._finish(run_id, job, outcome, result)

    def _finish(
        self, run_id: str, job: ActiveJob, outcome: JobOutcome, result: ScheduleResult
    ) -> None:
        self.store.record_result(
            run_id,
            status=RunStatus(outcome.status),
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            result=outcome.result,
            metrics=outcome.metrics,
            log_tail=outcome.log_tail,
        )
        del self.active[run_id]
        self.pool.release(job.devices)
        result.outcomes[run_id] = outcome
        self.observer.finished(job.run, outcome)

    def _stop_all(self, result: ScheduleResult) -> None:
        """SIGTERM every job group, wait up to 10 s (or SIGKILL at a second interrupt)."""
        for job in self.active.values():
            _signal_group(job.proc, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        while any(j.proc.poll() is None for j in self.active.values()):
            if self.interrupts.count > 1 or time.monotonic() > deadline:
                for job in self.active.values():
                    _signal_group(job.proc, signal.SIGKILL)
                for job in self.active.values():
                    job.proc.wait()
                break
            time.sleep(self.poll_s)
        for run_id, job in list(self.active.items()):
            outcome = self.launcher.collect(job.run, job.run_dir, job.proc.returncode)
            self._finish(run_id, job, outcome.with_status("interrupted", "interrupted"), result)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the orchestrator dies, so a
    killed sweep leaves no orphan jobs behind (torchrun then stops its ranks)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass  # not Linux: a killed sweep's jobs run to their end and resume adopts them
