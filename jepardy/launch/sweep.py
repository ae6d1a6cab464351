"""A sweep: a spec's runs, launched one after another, each recorded in the store.

Runs already done in the store are skipped, so running the same sweep again continues
where it stopped. A failed run is recorded with its reason and log tail, and the sweep
goes on. Only this process writes the store; jobs write files in their run directory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from jepardy.errors import UserError
from jepardy.launch.command import trainer_schema
from jepardy.launch.local import JobOutcome, prepare_run_dir, run_job
from jepardy.spec import PlannedRun, Spec, expand_runs, load_spec
from jepardy.store import RunStatus, Store

# Trainer params whose value is a path that must exist before anything is launched.
_PATH_PARAMS = ("data_dir", "tokenizer_path")


@dataclass
class SweepSummary:
    sweep: str
    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class SweepObserver:
    """Hooks a caller overrides to show progress; the defaults do nothing."""

    def planned(self, total: int) -> None: ...

    def skipped(self, run: PlannedRun) -> None: ...

    def started(self, run: PlannedRun) -> None: ...

    def finished(self, run: PlannedRun, outcome: JobOutcome) -> None: ...


@dataclass(frozen=True)
class PlanEntry:
    run: PlannedRun
    status: str  # the store's status, or "new" for a run the store has not seen


def load_plan(spec_path: Path, store: Store | None) -> tuple[Spec, list[PlanEntry]]:
    """The spec's runs with their status in the store (when one is given)."""
    spec = load_spec(spec_path, trainer_schema())
    runs = expand_runs(spec)
    statuses = store.statuses([r.run_id for r in runs]) if store else {}
    return spec, [PlanEntry(r, str(statuses.get(r.run_id, "new"))) for r in runs]


def check_paths(spec: Spec, runs: list[PlannedRun]) -> None:
    """Refuse to launch when a data path a run needs does not exist (one line, naming it)."""
    defaults = {name: trainer_schema()[name]["default"] for name in _PATH_PARAMS}
    for run in runs:
        for name in _PATH_PARAMS:
            value = run.params.get(name, defaults[name])
            if value and not Path(value).exists():
                hint = "; run `jepardy data build`" if "embedded" in str(value) else ""
                raise UserError(
                    f"{spec.path}: {name}: {value} not found (run {run.lane}/"
                    f"{run.arm} seed {run.seed}){hint}"
                )


def release_stale_claims(store: Store, runs: list[PlannedRun], host: str) -> None:
    """Mark interrupted the runs left "running" on this host by an orchestrator that is gone
    (killed, or the machine rebooted), so this sweep can run them again. Runs held by a live
    orchestrator, or by another host, are left alone (mark_running will refuse them)."""
    for run_id, (claim_host, pid) in store.running_claims([r.run_id for r in runs]).items():
        if claim_host == host and pid is not None and not _pid_alive(pid):
            store.record_result(
                run_id,
                status=RunStatus.INTERRUPTED,
                result=None,
                metrics=[],
                reason=f"orchestrator pid {pid} is gone",
            )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def git_commit() -> str | None:
    """The commit of the checkout jepardy runs from, with '-dirty' when it has changes."""
    cwd = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def run_sweep(
    spec_path: Path,
    store: Store,
    runs_root: Path,
    observer: SweepObserver | None = None,
) -> SweepSummary:
    """Launch every run of the spec not yet done, in spec order, telling `observer`.

    Ctrl-C kills the running job's process group, records it as interrupted and re-raises.
    """
    observer = observer or SweepObserver()
    spec = load_spec(spec_path, trainer_schema())
    runs = expand_runs(spec)
    check_paths(spec, runs)
    store.upsert_sweep(spec.name, str(spec_path), spec.text)
    store.register_runs(runs, git_commit())
    host = socket.gethostname()
    release_stale_claims(store, runs, host)
    statuses = store.statuses([r.run_id for r in runs])
    summary = SweepSummary(sweep=spec.name, total=len(runs))
    observer.planned(len(runs))
    started = time.perf_counter()
    for run in runs:
        if statuses[run.run_id] == RunStatus.DONE:
            summary.skipped += 1
            observer.skipped(run)
            continue
        run_dir = runs_root / run.sweep / run.run_id
        argv = prepare_run_dir(run, run_dir)
        # Claim before launching: a run another live orchestrator holds is never started twice.
        store.mark_running(run.run_id, host, os.getpid(), str(run_dir), argv)
        observer.started(run)
        outcome = run_job(run, run_dir, argv)
        store.record_result(
            run.run_id,
            status=RunStatus(outcome.status),
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            result=outcome.result,
            metrics=outcome.metrics,
            log_tail=outcome.log_tail,
        )
        observer.finished(run, outcome)
        if outcome.status == "interrupted":
            raise KeyboardInterrupt
        if outcome.status == "done":
            summary.done += 1
        else:
            summary.failed += 1
            summary.failures.append(f"{run.run_id} {run.lane}/{run.arm}: {outcome.reason}")
    summary.wall_s = time.perf_counter() - started
    return summary
