"""The two small interfaces a sweep runs jobs through.

A `Launcher` knows one kind of job: its command, the files it needs before it starts, its
environment, and how to read its outcome back from its run directory. An `Executor` knows
where jobs run: it submits them, polls them, cancels them and settles the jobs an
orchestrator that is gone left behind. Two executors implement it: `LocalExecutor`
(local_executor.py: child processes packed onto this machine's GPUs or CPU slots) and
`SlurmExecutor` (slurm.py: one Slurm job per run through submitit). The tracker
(tracker.py), `sweep`, `status`, resume and the store see only these interfaces, the
executor's name and its job ids; a backend's state words stay inside it, mapped onto
RunStatus at its edge, with the raw word kept beside it for display.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jepardy.spec.identity import RunIdentity
from jepardy.store.states import Claim, JobRecord, RunOutcome, RunStatus


@dataclass(frozen=True)
class JobState:
    """A job as its executor last saw it.

    status: RUNNING while queued or running; else the terminal status the executor implies
    (DONE means "ended cleanly as far as the executor knows": the tracker confirms it with the
    run's result.json). backend_state: the executor's own word (Slurm's PENDING; a local
    job's RUNNING, COMPLETED, FAILED, TIMEOUT, CANCELLED), "" when it no longer knows the job.
    nodes: where it runs, "" when not known. reason: why it ended, when the executor knows
    better than the job's files (a timeout it enforced).
    """

    status: RunStatus
    backend_state: str
    nodes: str = ""
    reason: str = ""


class Launcher(Protocol):
    """One kind of job: its command, its files, its environment, its outcome."""

    def argv(self, run: RunIdentity, run_dir: Path) -> list[str]:
        """The command that runs `run` on one machine (no side effects: it is recorded in the
        store before anything is written)."""
        ...

    def prepare(self, run: RunIdentity, run_dir: Path) -> None:
        """Clear an earlier attempt's files and write what the job reads (run.json)."""
        ...

    def environment(self, run: RunIdentity, devices: tuple[str, ...]) -> dict[str, str]:
        """The job's environment on this machine, given its GPUs (() on CPU)."""
        ...

    def collect(self, run: RunIdentity, run_dir: Path, exit_code: int | None) -> RunOutcome:
        """The outcome the run directory's files show; `exit_code` None: not seen."""
        ...


class Executor(Protocol):
    """Runs jobs somewhere; holds no store and writes no rows."""

    name: str  # recorded with each run it holds ("local", "slurm")
    poll_s: float  # how often the tracker polls it
    # Whether a job runs on when its orchestrator dies, so that another one can follow it
    # (`recover` returns its id): Slurm jobs do; local jobs die with their orchestrator.
    jobs_outlive_orchestrator: bool

    def has_room(self, run: RunIdentity) -> bool:
        """Whether `run` can be submitted now (a local executor's free GPUs or slots)."""
        ...

    def submit(
        self, run: RunIdentity, run_dir: Path, argv: list[str], timeout_s: float | None
    ) -> JobRecord:
        """Start (or queue) the run whose files are in `run_dir`; `argv` is its one-machine
        command. Returns its job id, state and placement."""
        ...

    def poll(self, job_ids: list[str]) -> dict[str, JobState]:
        """Every given job's state, in one batched call."""
        ...

    def exit_code(self, job_id: str, run_dir: Path) -> int | None:
        """The ended job's exit status, None when it was never seen (killed before it could
        be reported)."""
        ...

    def cancel(self, job_ids: list[str], *, force: bool = False) -> None:
        """Ask the given jobs to stop (ended ones are ignored); `force`: at once (SIGKILL)."""
        ...

    def recover(self, claim: Claim, run: RunIdentity) -> str | None:
        """The job left running by the gone orchestrator of `claim`: its id when this
        executor can follow it to its end, None when it has ended or was stopped here (the
        run directory's files then decide the outcome)."""
        ...
