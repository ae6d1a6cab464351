"""The local executor: each run a child process group on this machine, on its own GPUs (or
a CPU slot) from a DevicePool.

Each job is its own process session with its own CUDA_VISIBLE_DEVICES; torchrun's
--standalone picks a free rendezvous port per job. A job is every process that carries its
JOB_ENV variable or descends from one (`job_processes`), wherever it was re-parented:
torchrun starts each worker in a session of its own, and a worker may start more, so the
job's process group holds only torchrun. A job past its timeout, or asked to stop, gets
SIGTERM on every such process and SIGKILL on those left KILL_AFTER_S later; it has ended
only when none is left, so its outcome is recorded, and its GPUs reused, only then. Jobs
die with the orchestrator (PR_SET_PDEATHSIG), so a job of a gone orchestrator is never
followed: it is killed, and its files decide its outcome.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from jepardy.launch.executor import JobState, Launcher
from jepardy.launch.rundir import STDOUT_LOG
from jepardy.launch.slots import DevicePool
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import Claim, JobRecord, RunStatus

LOCAL = "local"
# A job asked to stop (its timeout, Ctrl-C, `jepardy cancel`) gets this long to exit cleanly
# (torchrun forwards SIGTERM to its ranks) before what is left of it is killed.
KILL_AFTER_S = 10.0
# Every process of a job inherits this variable (its run directory) from the job's first
# one: it finds the job's processes that left its process tree (see job_processes).
JOB_ENV = "JEPARDY_JOB"
# How often a job that is ending is looked for in /proc (a scan costs milliseconds; a
# SIGKILLed rank may take seconds to release its GPU).
RESCAN_S = 0.1


@dataclass
class _Job:
    proc: subprocess.Popen
    run_dir: str
    devices: tuple[str, ...]
    started_s: float
    deadline_s: float | None  # stop at this monotonic time (a timeout)
    kill_at_s: float | None = None  # SIGKILL what is left at this monotonic time (stopping)
    next_scan_s: float = 0.0  # look for its processes again at this monotonic time
    ending: str = ""  # the state a job being stopped ends in: TIMEOUT or CANCELLED
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
        env = self.launcher.environment(run, devices) | {JOB_ENV: str(run_dir)}
        with (run_dir / STDOUT_LOG).open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        now = time.monotonic()
        job_id = str(proc.pid)  # also its process group id (a new session)
        deadline = now + timeout_s if timeout_s else None
        self._jobs[job_id] = _Job(proc, str(run_dir), devices, now, deadline)
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
        """Move a running job on: stopped at its deadline, killed after its grace, ended
        when its first process has exited and no process of it is left."""
        if not job.ending and job.deadline_s is not None and now > job.deadline_s:
            _stop(job, "TIMEOUT", now)
            job.reason = f"timeout after {job.deadline_s - job.started_s:.0f}s"
        graced = job.kill_at_s is not None and now > job.kill_at_s
        if (job.proc.poll() is None and not graced) or now < job.next_scan_s:
            return
        job.next_scan_s = now + RESCAN_S
        left = job_processes(job.run_dir)
        # What a job that ended by itself left behind (a worker whose torchrun died) would
        # hold its GPUs: killed now; a stopped job's, after its grace.
        if left and (graced or not job.ending):
            _signal_all(left, signal.SIGKILL)
        if left or job.proc.poll() is None:
            return
        job.state = job.ending or _exit_state(job.proc.returncode)
        self.pool.release(job.devices)

    def exit_code(self, job_id: str, run_dir: Path) -> int | None:
        job = self._jobs.get(job_id)
        return job.proc.returncode if job is not None else None

    def cancel(self, job_ids: list[str], *, force: bool = False) -> None:
        """Stop each job (SIGTERM, then poll kills what is left KILL_AFTER_S later); `force`:
        SIGKILL every process of it and wait until they are gone."""
        now = time.monotonic()
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is None or job.state != "RUNNING":
                continue
            if force:
                kill_jobs([job.run_dir], grace_s=0.0)
                job.proc.wait()
                job.ending, job.kill_at_s = job.ending or "CANCELLED", now
            elif not job.ending:
                _stop(job, "CANCELLED", now)

    def recover(self, claim: Claim, run: RunIdentity) -> str | None:
        """Kill what is left of the gone orchestrator's job here (PDEATHSIG asked its
        torchrun to stop, which does not reach workers in sessions of their own); never
        followed."""
        if claim.host == self.host and claim.run_dir:
            kill_jobs([claim.run_dir], grace_s=0.0)
        return None


def _stop(job: _Job, ending: str, now: float) -> None:
    """Ask every process of a running job to stop; poll kills the rest after the grace."""
    _signal_all(job_processes(job.run_dir), signal.SIGTERM)
    job.ending, job.kill_at_s = ending, now + KILL_AFTER_S


_STATUS = {
    "RUNNING": RunStatus.RUNNING,
    "COMPLETED": RunStatus.DONE,
    "FAILED": RunStatus.FAILED,
    "TIMEOUT": RunStatus.TIMEOUT,
    "CANCELLED": RunStatus.CANCELLED,
}


def _exit_state(code: int) -> str:
    return "COMPLETED" if code == 0 else "FAILED"


def kill_jobs(run_dirs: list[str], grace_s: float = KILL_AFTER_S) -> None:
    """Stop jobs that need not be children of ours (a gone orchestrator's; `jepardy
    cancel`): SIGTERM every process of them, SIGKILL those left after `grace_s`, and return
    once none is left (or, a process stuck in the kernel, KILL_AFTER_S after the SIGKILL)."""
    kill_at = time.monotonic() + grace_s
    give_up = kill_at + KILL_AFTER_S
    _signal_all(job_processes(*run_dirs), signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
    while (left := job_processes(*run_dirs)) and time.monotonic() < give_up:
        if time.monotonic() > kill_at:
            _signal_all(left, signal.SIGKILL)  # each time: one may have forked meanwhile
        time.sleep(0.05)


def job_processes(*run_dirs: str) -> set[int]:
    """The live processes of the jobs of `run_dirs`: those whose environment carries
    JOB_ENV=<run dir> (inherited, so also a worker re-parented after its torchrun died) and
    their descendants (also one that cleared its environment). Zombies are left out: they
    hold nothing, and only their parent can remove them."""
    markers = {f"{JOB_ENV}={run_dir}".encode() for run_dir in run_dirs}
    children: dict[int, list[int]] = {}
    found = []
    for pid, ppid in _live_processes():
        children.setdefault(ppid, []).append(pid)
        if _carries(pid, markers):
            found.append(pid)
    job: set[int] = set()
    while found:
        pid = found.pop()
        if pid not in job:
            job.add(pid)
            found.extend(children.get(pid, ()))
    return job


def _live_processes() -> Iterator[tuple[int, int]]:
    """(pid, parent pid) of every process on this machine that is not a zombie."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        state, ppid = stat[stat.rindex(")") + 2 :].split(maxsplit=2)[:2]
        if state not in ("Z", "X"):
            yield int(entry.name), int(ppid)


def _carries(pid: int, markers: set[bytes]) -> bool:
    """Whether the process's environment (as it was started) holds one of `markers`."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False  # ended, or another user's
    return not markers.isdisjoint(environ.split(b"\0"))


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            continue  # ended meanwhile; or a recycled pid that is not ours


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
