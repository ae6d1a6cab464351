"""The job interface a sweep tracks runs through: submit, poll, cancel, and a state in the
store's terms. The Slurm executor (slurm.py) implements it; backend state strings stay
inside the executor, mapped onto RunStatus at its edge, with the raw string kept beside it
for display (`jepardy status`).

The local slot scheduler (scheduler.py) predates this interface and keeps its own loop over
child processes (it packs runs onto devices, which Slurm does for itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from jepardy.store import RunLike, RunStatus


@dataclass(frozen=True)
class JobState:
    """A job as its backend last reported it.

    status: RUNNING while queued or running, else the terminal status the backend implies
    (DONE means "ended cleanly": the caller confirms it with the run's result.json).
    backend_state: the backend's own word (e.g. Slurm's PENDING), "" when it no longer knows
    the job. nodes: where it runs, "" when not known.
    """

    status: RunStatus
    backend_state: str
    nodes: str = ""


class Executor(Protocol):
    """Submits runs as jobs and reports on them; holds no store and writes no rows."""

    def submit(self, run: RunLike, run_dir: Path, timeout_s: float | None) -> str:
        """Start (or queue) the run whose run.json is in `run_dir`; returns its job id."""
        ...

    def poll(self, job_ids: list[str]) -> dict[str, JobState]:
        """Every given job's state, in one batched call."""
        ...

    def cancel(self, job_ids: list[str]) -> None:
        """Stop the given jobs; ended ones are ignored."""
        ...

    def find(self, run: RunLike) -> str | None:
        """The live job of `run` whose id was never recorded (the submitter died right after
        submitting), or None."""
        ...
