"""The local executor: each run a child process group on this machine, on its own GPUs (or
a CPU slot) from a DevicePool.

Each job is its own process session with its own CUDA_VISIBLE_DEVICES; torchrun's
--standalone picks a free rendezvous port per job. A job past its timeout, or asked to stop
and still there after KILL_AFTER_S, has its whole process group killed. Jobs die with the
orchestrator (PR_SET_PDEATHSIG), so a job of a gone orchestrator is never followed: it is
killed, and its files decide its outcome.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jepardy.launch.executor import JobState, Launcher
from jepardy.launch.rundir import STDOUT_LOG
from jepardy.launch.slots import DevicePool
from jepardy.spec.identity import RunIdentity
from jepardy.store.models import Claim, JobRecord, RunStatus

LOCAL = "local"
# A job asked to stop (SIGTERM: Ctrl-C, `jepardy cancel`) gets this long to exit cleanly
# (torchrun forwards the signal to its ranks) before its group is killed.
KILL_AFTER_S = 10.0


@dataclass
class _Job:
    proc: subprocess.Popen
    devices: tuple[str, ...]
    started_s: float
    deadline_s: float | None  # kill at this monotonic time (a timeout)
    kill_at_s: float | None = None  # kill at this monotonic time (asked to stop)
    state: str = "RUNNING"
    reason: str = ""


class LocalExecutor:
    """The Executor (executor.py) of this machine."""

    name = LOCAL
    poll_s = 0.02  # bounds the per-job scheduling latency
    jobs_outlive_orchestrator = False  # PR_SET_PDEATHSIG

    def __init__(self, pool: DevicePool, launcher: Launcher) -> None:
        self.pool = pool
        self.launcher = launcher
        self.host = socket.gethostname()
        self._jobs: dict[str, _Job] = {}

    def has_room(self, run: RunIdentity) -> bool:
        return self.pool.available(run.nproc)

    def submit(
        self, run: RunIdentity, run_dir: Path, argv: list[str], timeout_s: float | None
    ) -> JobRecord:
        devices = self.pool.acquire(run.nproc)
        if devices is None:
            raise RuntimeError(f"run {run.run_id} submitted without room (has_room first)")
        with (run_dir / STDOUT_LOG).open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.launcher.environment(run, devices),
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        now = time.monotonic()
        job_id = str(proc.pid)  # also its process group id (a new session)
        self._jobs[job_id] = _Job(proc, devices, now, now + timeout_s if timeout_s else None)
        return JobRecord(run.run_id, job_id, "RUNNING", self.host, ",".join(devices))

    def poll(self, job_ids: list[str]) -> dict[str, JobState]:
        now = time.monotonic()
        states = {}
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is None:  # not a child of ours: we cannot follow it (see recover)
                states[job_id] = JobState(RunStatus.DONE, "")
                continue
            if job.state == "RUNNING":
                self._check(job, now)
            states[job_id] = JobState(_STATUS[job.state], job.state, self.host, job.reason)
        return states

    def _check(self, job: _Job, now: float) -> None:
        """Move a running job on: ended, or killed at its deadline or after its grace."""
        code = job.proc.poll()
        if code is None and job.deadline_s is not None and now > job.deadline_s:
            _signal_group(job.proc, signal.SIGKILL)
            job.proc.wait()
            job.state = "TIMEOUT"
            job.reason = f"timeout after {job.deadline_s - job.started_s:.0f}s"
        elif code is None and job.kill_at_s is not None and now > job.kill_at_s:
            _signal_group(job.proc, signal.SIGKILL)
            job.proc.wait()
            job.state = "CANCELLED"
        elif code is not None:
            job.state = "CANCELLED" if job.kill_at_s is not None else _exit_state(code)
        if job.state != "RUNNING":
            self.pool.release(job.devices)

    def exit_code(self, job_id: str, run_dir: Path) -> int | None:
        job = self._jobs.get(job_id)
        return job.proc.returncode if job is not None else None

    def cancel(self, job_ids: list[str], *, force: bool = False) -> None:
        """SIGTERM each job's group (killed KILL_AFTER_S later by poll); `force`: SIGKILL and
        wait for it now."""
        now = time.monotonic()
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is None or job.state != "RUNNING":
                continue
            if force:
                _signal_group(job.proc, signal.SIGKILL)
                job.proc.wait()
                job.kill_at_s = now
            elif job.kill_at_s is None:
                _signal_group(job.proc, signal.SIGTERM)
                job.kill_at_s = now + KILL_AFTER_S

    def recover(self, claim: Claim, run: RunIdentity) -> str | None:
        """Kill the gone orchestrator's job if it is still here (PDEATHSIG asked it to stop
        already); never followed."""
        if claim.host == self.host and claim.job_id and claim.run_dir:
            signal_job(claim.job_id, claim.run_dir, signal.SIGKILL)
        return None


_STATUS = {
    "RUNNING": RunStatus.RUNNING,
    "COMPLETED": RunStatus.DONE,
    "FAILED": RunStatus.FAILED,
    "TIMEOUT": RunStatus.TIMEOUT,
    "CANCELLED": RunStatus.CANCELLED,
}


def _exit_state(code: int) -> str:
    return "COMPLETED" if code == 0 else "FAILED"


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def signal_job(job_id: str, run_dir: str, sig: int) -> bool:
    """Send `sig` to a local job's process group (not a child of ours) if it still runs that
    run: checked on its command line, so a recycled pid is never hit. Returns whether sent."""
    try:
        pid = int(job_id)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (ValueError, OSError):
        return False
    if run_dir.encode() not in cmdline:
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, bound once here: the child calls it between fork and exec, where
    loading a library would cost every launch a few milliseconds."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None  # not Linux: a killed sweep's jobs run to their end; files decide


_PRCTL = _prctl()
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the orchestrator dies, so a
    killed sweep leaves no orphan jobs behind (torchrun then stops its ranks)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
