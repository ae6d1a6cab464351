"""A sweep: a spec's runs, packed onto this machine's devices, each recorded in the store.

Running the same sweep again continues where it stopped: done runs are skipped, runs left
"running" by an orchestrator that is gone are adopted (their job finished and wrote a
result) or run again, and failed runs are retried only with `retry_failed`. Only this
process writes the store; jobs write files in their run directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jepardy.errors import UserError
from jepardy.launch.command import trainer_schema
from jepardy.launch.local import TorchrunLauncher
from jepardy.launch.scheduler import HEARTBEAT_S, Launcher, LocalScheduler, SweepObserver
from jepardy.launch.slots import DevicePool, detect_gpus
from jepardy.spec import PlannedRun, Spec, expand_runs, load_spec
from jepardy.store import Claim, RunLike, RunStatus, Store

# Trainer params whose value is a path that must exist before anything is launched.
_PATH_PARAMS = ("data_dir", "tokenizer_path")
# A run whose wallclock budget is known gets this much on top of it before it is killed:
# start-up, compile, the final evaluations (the challenge allows 10 minutes) and export.
EVAL_ALLOWANCE_S = 900.0
# A running run whose heartbeat is older than this belongs to an orchestrator that is gone.
STALE_AFTER_S = 6 * HEARTBEAT_S
_RETRYABLE = {RunStatus.PENDING, RunStatus.INTERRUPTED}


@dataclass(frozen=True)
class SweepOptions:
    runs_root: Path = Path("runs")
    gpus: list[str] | None = None  # None: detect (CUDA_VISIBLE_DEVICES or nvidia-smi)
    slots: int = 1  # concurrent runs when there are no GPUs
    retry_failed: bool = False  # run failed and timed-out runs again
    timeout_s: float | None = None  # per-run limit; None: wallclock_s + EVAL_ALLOWANCE_S


@dataclass
class SweepSummary:
    sweep: str
    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0


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


def check_paths(source: str, runs: list[RunLike]) -> None:
    """Refuse to launch when a data path a run needs does not exist (one line, naming it)."""
    defaults = {name: trainer_schema()[name]["default"] for name in _PATH_PARAMS}
    for run in runs:
        if run.kind != "jepardy":
            continue  # other trainers' params are theirs to check
        for name in _PATH_PARAMS:
            value = run.params.get(name, defaults[name])
            if value and not Path(value).exists():
                hint = "; run `jepardy data build`" if "embedded" in str(value) else ""
                raise UserError(
                    f"{source}: {name}: {value} not found (run {run.lane}/"
                    f"{run.arm} seed {run.seed}){hint}"
                )


def run_timeout_s(run: RunLike, override_s: float | None) -> float | None:
    """The run's limit: the override, else its wallclock budget plus EVAL_ALLOWANCE_S."""
    if override_s is not None:
        return override_s
    budget = run.params.get("wallclock_s", 0.0)
    return float(budget) + EVAL_ALLOWANCE_S if budget else None


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


def recover_stale(store: Store, runs: list[RunLike], host: str, launcher: Launcher) -> None:
    """Settle the runs left "running" by an orchestrator that is gone (killed, or its machine
    rebooted): kill a leftover job, then adopt its result when it finished, else mark it
    interrupted so that it runs again. Runs held by a live orchestrator are left alone."""
    now = datetime.now(UTC)
    by_id = {r.run_id: r for r in runs}
    for claim in store.running_claims(list(by_id)):
        if not _is_stale(claim, host, now):
            continue
        if claim.host == host and claim.job_pid and claim.run_dir:
            _kill_leftover(claim.job_pid, claim.run_dir)
        run_dir = Path(claim.run_dir) if claim.run_dir else None
        has_files = run_dir is not None and (run_dir / "run.json").exists()
        outcome = launcher.collect(by_id[claim.run_id], run_dir, None) if has_files else None
        if outcome is not None and outcome.status == "done":
            store.record_result(
                claim.run_id,
                status=RunStatus.DONE,
                result=outcome.result,
                metrics=outcome.metrics,
                log_tail=outcome.log_tail,
            )
        else:
            store.record_result(
                claim.run_id,
                status=RunStatus.INTERRUPTED,
                result=None,
                metrics=[],
                reason=f"orchestrator {claim.host}:{claim.pid} gone",
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


def _kill_leftover(job_pid: int, run_dir: str) -> None:
    """SIGKILL a job's process group if it still runs this run (checked on its command line,
    so a recycled pid is never hit)."""
    try:
        cmdline = Path(f"/proc/{job_pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return
    if run_dir.encode() in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job_pid, signal.SIGKILL)


def run_sweep(
    spec_path: Path,
    store: Store,
    options: SweepOptions = SweepOptions(),
    observer: SweepObserver | None = None,
) -> SweepSummary:
    """Launch every run of the spec that is not done, packed onto the devices, telling
    `observer`. Ctrl-C stops every job cleanly (a second one kills at once), records them
    as interrupted and re-raises KeyboardInterrupt."""
    observer = observer or SweepObserver()
    spec = load_spec(spec_path, trainer_schema())
    runs = expand_runs(spec)
    check_paths(spec, runs)
    pool = DevicePool(detect_gpus() if options.gpus is None else options.gpus, options.slots)
    for run in runs:
        if not pool.fits(run.nproc):
            raise UserError(
                f"{spec.path}: trainer.nproc: {run.nproc} needs {run.nproc} GPUs; "
                f"this sweep has {pool.capacity}"
            )
    store.upsert_sweep(spec.name, str(spec_path), spec.text)
    store.register_runs(runs, git_commit())
    host = socket.gethostname()
    recover_stale(store, runs, host, TorchrunLauncher())
    statuses = store.statuses([r.run_id for r in runs])
    runnable = _RETRYABLE | (
        {RunStatus.FAILED, RunStatus.TIMEOUT} if options.retry_failed else set()
    )
    queue = [r for r in runs if statuses[r.run_id] in runnable]
    summary = SweepSummary(sweep=spec.name, total=len(runs))
    observer.planned(len(runs))
    for run in runs:
        if statuses[run.run_id] not in runnable:
            summary.skipped += 1
            observer.skipped(run)
    waits_for = {lane.name: set(lane.after) for lane in spec.lanes}
    return _execute(store, pool, queue, summary, options, observer, waits_for)


def rerun(
    run_ids: list[str],
    store: Store,
    options: SweepOptions = SweepOptions(),
    observer: SweepObserver | None = None,
) -> SweepSummary:
    """Run the given recorded runs again, whatever their status (not while running)."""
    observer = observer or SweepObserver()
    runs = [store.stored_run(run_id) for run_id in run_ids]
    for run in runs:
        # A script run's path lives in its spec, an ingested run has nothing to launch: both
        # are refused before any row is touched.
        if run.kind != "jepardy":
            raise UserError(
                f"rerun: {run.run_id}: kind {run.kind!r} cannot be rerun by id; "
                "use `jepardy sweep SPEC --retry-failed` for script runs"
            )
    check_paths("rerun", runs)
    pool = _pool(options, runs, "rerun")
    recover_stale(store, runs, socket.gethostname(), TorchrunLauncher())
    for run in runs:
        store.requeue(run.run_id)
    summary = SweepSummary(sweep=", ".join(sorted({r.sweep for r in runs})), total=len(runs))
    observer.planned(len(runs))
    return _execute(store, pool, runs, summary, options, observer, {})


def _pool(options: SweepOptions, runs: list[RunLike], source: str) -> DevicePool:
    pool = DevicePool(detect_gpus() if options.gpus is None else options.gpus, options.slots)
    for run in runs:
        if not pool.fits(run.nproc):
            raise UserError(
                f"{source}: trainer.nproc: {run.nproc} needs {run.nproc} GPUs; "
                f"this machine has {pool.capacity}"
            )
    return pool


def _execute(
    store: Store,
    pool: DevicePool,
    queue: list[RunLike],
    summary: SweepSummary,
    options: SweepOptions,
    observer: SweepObserver,
    waits_for: dict[str, set[str]],
) -> SweepSummary:
    """Schedule `queue` and count the outcomes into `summary`."""
    started = time.perf_counter()
    # CPU threads per rank: the cores shared among the concurrent CPU runs.
    concurrent = 1 if pool.uses_gpus else pool.capacity
    ranks = max((r.nproc for r in queue), default=1)  # an empty queue: nothing to run
    threads = max(1, (os.cpu_count() or 1) // concurrent // ranks)
    scheduler = LocalScheduler(
        store=store,
        pool=pool,
        launcher=TorchrunLauncher(threads_per_rank=threads),
        runs_root=options.runs_root,
        host=socket.gethostname(),
        observer=observer,
        timeout_s=lambda run: run_timeout_s(run, options.timeout_s),
        waits_for=waits_for,
    )
    result = scheduler.run(queue)
    for run_id, outcome in result.outcomes.items():
        if outcome.status == "done":
            summary.done += 1
        else:
            summary.failed += 1
            summary.failures.append(f"{run_id}: {outcome.status}: {outcome.reason}")
    for run_id in result.not_started:
        summary.failures.append(f"{run_id}: held by another orchestrator")
    summary.wall_s = time.perf_counter() - started
    return summary
