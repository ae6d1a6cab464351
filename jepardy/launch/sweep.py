"""A sweep: a spec's runs, run through an executor (this machine's devices, or Slurm), each
recorded in the store.

Running the same sweep again continues where it stopped: done runs are skipped, runs left
"running" by an orchestrator that is gone are settled (a Slurm job still queued or running
is followed, a finished job's result adopted, anything else run again), and failed runs are
retried only with `retry_failed`. Only this process writes the store; jobs write files in
their run directory.
"""

from __future__ import annotations

import errno
import os
import subprocess
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from jepardy.data.layout import fetched_variant
from jepardy.errors import UserError, clipped_repr
from jepardy.launch.command import trainer_schema
from jepardy.launch.executor import Executor
from jepardy.launch.local_executor import LOCAL, LocalExecutor
from jepardy.launch.promotion import recorded_chain, stages
from jepardy.launch.slots import DevicePool, detect_gpus
from jepardy.launch.slurm import SLURM, SlurmExecutor, SlurmOptions
from jepardy.launch.torchrun import TorchrunLauncher
from jepardy.launch.tracker import JobTracker, SweepObserver
from jepardy.spec.expand import expand_runs
from jepardy.spec.identity import RunIdentity
from jepardy.spec.model import Spec
from jepardy.spec.parse import load_spec
from jepardy.spec.promote import every_candidate
from jepardy.spec.validate import run_where
from jepardy.store.engine import Database
from jepardy.store.frames import read_runs
from jepardy.store.states import RunStatus
from jepardy.store.transitions import Store
from jepardy.trainer.config import preset_params

# Trainer params whose value is a path that must exist before anything is launched.
_PATH_PARAMS = ("data_dir", "tokenizer_path")
# A run whose wallclock budget is known gets this much on top of it before it is killed:
# start-up, compile, the final evaluations (the challenge allows 10 minutes) and export.
EVAL_ALLOWANCE_S = 900.0
# Runs a sweep (re)starts: new ones, and those stopped before their end (Ctrl-C, a gone
# orchestrator, `jepardy cancel`): running the sweep again resumes them.
# Each rank of a CPU job runs single-threaded (see threads_per_rank).
CPU_THREADS_PER_RANK = 1
_RETRYABLE = {RunStatus.PENDING, RunStatus.INTERRUPTED, RunStatus.CANCELLED}


@dataclass(frozen=True)
class SweepOptions:
    runs_root: Path = Path("runs")
    executor: str = LOCAL  # or SLURM
    slurm: dict[str, str | int] = field(default_factory=dict)  # SlurmOptions over the spec's
    gpus: list[str] | None = None  # None: detect (CUDA_VISIBLE_DEVICES or nvidia-smi)
    slots: int | None = None  # concurrent runs when there are no GPUs; None: cpu_slots()
    retry_failed: bool = False  # run failed and timed-out runs again
    timeout_s: float | None = None  # per-run limit; None: wallclock_s + EVAL_ALLOWANCE_S
    overrides: tuple[str, ...] = ()  # `--set key=value` items over the spec's [params]


@dataclass
class SweepSummary:
    sweep: str
    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)  # promotions decided, lanes pending


@dataclass(frozen=True)
class PlanEntry:
    run: RunIdentity
    status: str  # the store's status, or "new" for a run the store has not seen


@dataclass(frozen=True)
class PreparedSweep:
    """A spec checked for launching (`prepare_sweep`) and its runs."""

    spec: Spec
    runs: list[RunIdentity]


def load_plan(spec: Path | Spec, store: Database | None) -> tuple[Spec, list[PlanEntry]]:
    """The spec's runs with their status in the store (when one is given); a promoted lane
    has runs once its decision is recorded there."""
    if not isinstance(spec, Spec):
        spec = load_spec(spec, trainer_schema())
    spec = recorded_chain(spec, store).spec  # promoted lanes: their runs once decided
    runs = expand_runs(spec)
    statuses = store.statuses([r.run_id for r in runs]) if store else {}
    return spec, [PlanEntry(r, str(statuses.get(r.run_id, "new"))) for r in runs]


def prepare_sweep(spec_path: Path, options: SweepOptions) -> PreparedSweep:
    """The spec, checked for launching before any database is opened or run claimed: the
    spec itself (`load_spec`), the data paths its runs read, and the run directories."""
    spec = load_spec(spec_path, trainer_schema(), overrides=options.overrides)
    runs = expand_runs(spec)
    check_paths(spec.path, expand_runs(every_candidate(spec)))  # promoted runs' too
    check_runs_dir(options.runs_root, spec.name)
    return PreparedSweep(spec, runs)


def check_paths(source: Path | str, runs: list[RunIdentity]) -> None:
    """Refuse to launch when a data path a run needs does not exist (one line, naming it)."""
    for path in data_paths(runs):
        if path.problem:
            raise UserError(
                f"{run_where(source, path.run)}: {path.name} = {clipped_repr(path.value)}: "
                f"{path.problem}"
            )


@dataclass(frozen=True)
class DataPath:
    """A data path runs read: the param, its value, the first run reading it, and why it
    cannot be read ("" when it exists)."""

    name: str
    value: str
    run: RunIdentity
    problem: str


def data_paths(runs: list[RunIdentity]) -> list[DataPath]:
    """Every distinct data path (`data_dir`, `tokenizer_path`) the jepardy runs read, in run
    order, each looked up once (10,000 runs usually share two). A run's path is its param,
    else its preset's (byte260 presets read no tokenizer), else the trainer's default."""
    defaults = {name: trainer_schema()[name]["default"] for name in _PATH_PARAMS}
    found: dict[str, DataPath] = {}
    for run in runs:
        if run.kind != "jepardy":
            continue  # other trainers' params are theirs to check
        resolved = {**defaults, **preset_params(str(run.params.get("preset", ""))), **run.params}
        for name in _PATH_PARAMS:
            value = str(resolved.get(name, defaults[name]))
            if value and value not in found:
                found[value] = DataPath(name, value, run, _path_problem(value) or "")
    return list(found.values())


def _path_problem(value: str) -> str | None:
    """Why a data path cannot be read, or None when it exists."""
    try:
        if Path(value).exists():
            return None
    except OSError as err:  # e.g. a name too long for the filesystem
        return f"cannot be looked up ({err.strerror})"
    if "embedded" in value:
        return "not found; run `jepardy data build`"
    variant = fetched_variant(value)
    return f"not found; run `jepardy data fetch --variant {variant}`" if variant else "not found"


def check_runs_dir(runs_root: Path, sweep: str) -> None:
    """UserError unless the sweep's run directories can be made under `runs_root`, so a
    sweep that could not write its runs' files stops before it claims one. Tried by writing
    a temporary file into the nearest existing folder (os.access says yes to root on a
    read-only mount); nothing is left behind."""
    target = runs_root / sweep
    existing = next(path for path in (target, *target.parents) if path.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is not a directory")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UserError(f"--runs-dir: {target}: cannot be written ({err.strerror})") from None


def run_timeout_s(run: RunIdentity, override_s: float | None) -> float | None:
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


def run_sweep(
    spec: Path | PreparedSweep,
    store: Store,
    options: SweepOptions = SweepOptions(),
    observer: SweepObserver | None = None,
) -> SweepSummary:
    """Run every run of the spec that is not done through the executor `options` names
    (local: packed onto this machine's devices; slurm: one Slurm job each), telling
    `observer`. Runs left running by a gone orchestrator are settled first (their Slurm jobs
    followed, not submitted again). Ctrl-C stops every job cleanly (a second one at once),
    records them interrupted and re-raises KeyboardInterrupt."""
    observer = observer or SweepObserver()
    prepared = spec if isinstance(spec, PreparedSweep) else prepare_sweep(spec, options)
    loaded = prepared.spec
    # Absolute: `jepardy status` names it in the command that resumes a stale run, from
    # whatever directory it is run in.
    store.upsert_sweep(loaded.name, str(Path(loaded.path).resolve()), loaded.text)
    summary = SweepSummary(sweep=loaded.name, total=0)
    started = time.perf_counter()
    # Stages: the runs known now, then those each promotion decided meanwhile promotes.
    for runs, decisions in stages(loaded, store):
        summary.notes += [f"lane {d.lane}: {d.note}" for d in decisions]
        _run_stage(loaded, runs, store, options, observer, summary)
    waiting = recorded_chain(loaded, store).waiting
    summary.notes += [f"lane {lane}: pending, {why}" for lane, why in waiting.items()]
    summary.wall_s = time.perf_counter() - started
    return summary


def _run_stage(
    spec: Spec,
    runs: list[RunIdentity],
    store: Store,
    options: SweepOptions,
    observer: SweepObserver,
    summary: SweepSummary,
) -> None:
    """Register `runs`, settle those a gone orchestrator left, run the rest (see run_sweep),
    counting into `summary`."""
    waits_for = {lane.name: set(lane.after) for lane in spec.lanes}
    tracker = _tracker(store, options, runs, spec.path, spec.slurm, observer, waits_for)
    store.register_runs(runs, git_commit())
    tracker.recover(runs)
    statuses = store.statuses([r.run_id for r in runs])
    runnable = _RETRYABLE | (
        {RunStatus.FAILED, RunStatus.TIMEOUT} if options.retry_failed else set()
    )
    queue = [r for r in runs if statuses[r.run_id] in runnable]
    summary.total += len(runs)
    observer.planned(runs, tracker.slots)
    skipped = [
        r for r in runs if statuses[r.run_id] not in runnable and r.run_id not in tracker.active
    ]
    # A control done before (a resumed sweep) is what this sweep's arms are compared with.
    known = _done_val_bpb(store, spec.name) if skipped else {}
    for run in skipped:
        summary.skipped += 1
        observer.skipped(run, known.get(run.run_id))
    _execute(tracker, queue, summary)


def _done_val_bpb(store: Store, sweep: str) -> dict[str, float]:
    """run id -> val_bpb of the sweep's done runs that have one."""
    done = read_runs(store, sweep=sweep, status="done", columns=["id", "val_bpb"], params=False)
    done = done[done["val_bpb"].notna()]
    return dict(zip(done["id"].astype(str), done["val_bpb"].astype(float), strict=True))


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
    sweeps = sorted({run.sweep for run in runs})
    for name in sweeps:
        check_runs_dir(options.runs_root, name)
    # On Slurm: the [slurm] table of the spec the runs' sweep last ran with, when they
    # share one, under the command's options.
    table = tomllib.loads(store.spec_text(sweeps[0]) or "") if len(sweeps) == 1 else {}
    tracker = _tracker(store, options, runs, "rerun", table.get("slurm", {}), observer)
    tracker.recover(runs)
    for run in runs:
        store.requeue(run.run_id)
    summary = SweepSummary(sweep=", ".join(sweeps), total=len(runs))
    observer.planned(runs, tracker.slots)
    return _execute(tracker, runs, summary)


def _tracker(
    store: Store,
    options: SweepOptions,
    runs: list[RunIdentity],
    source: str | Path,
    spec_slurm: dict[str, str | int],
    observer: SweepObserver,
    waits_for: dict[str, set[str]] | None = None,
) -> JobTracker:
    """A tracker over the executor `options` names, checked against `runs` (every run must
    fit this machine, for the local one); `waits_for`: lane -> the lanes it waits for."""
    runs_root = options.runs_root.resolve()  # absolute: Slurm jobs and later `show` need it
    if options.executor == SLURM:
        executor: Executor = _slurm_executor(spec_slurm, options)
        launcher = TorchrunLauncher(threads_per_rank=1)
        concurrent = None  # Slurm's queue decides
    elif options.executor == LOCAL:
        ranks = max((r.nproc for r in runs), default=1)
        slots = options.slots or cpu_slots(ranks)
        pool = DevicePool(detect_gpus() if options.gpus is None else options.gpus, slots)
        for run in runs:
            if not pool.fits(run.nproc):
                raise UserError(
                    f"{source}: trainer.nproc: {run.nproc} needs {run.nproc} GPUs; "
                    f"this machine has {pool.capacity}"
                )
        concurrent = max(1, pool.capacity // ranks) if pool.uses_gpus else pool.capacity
        launcher = TorchrunLauncher(threads_per_rank=threads_per_rank(pool.uses_gpus, ranks))
        executor = LocalExecutor(pool, launcher)
    else:
        raise UserError(f"--executor: {options.executor!r} invalid; expected local or slurm")
    return JobTracker(
        store=store,
        executor=executor,
        launcher=launcher,
        runs_root=runs_root,
        observer=observer,
        timeout_s=lambda run: run_timeout_s(run, options.timeout_s),
        waits_for=waits_for or {},
        slots=concurrent,
    )


def cpu_slots(ranks: int = 1) -> int:
    """CPU runs at once by default: one per core this process may use (per rank)."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, ranks))


def threads_per_rank(uses_gpus: bool, ranks: int) -> int:
    """CPU threads each rank of a local job gets (its OMP_NUM_THREADS, unless set). On CPU
    always CPU_THREADS_PER_RANK, whatever --slots: a run's numbers never depend on how many
    ran beside it, and single-threaded runs side by side beat threads fighting over cores.
    A GPU job's host threads: the cores shared among one machine's ranks."""
    if not uses_gpus:
        return CPU_THREADS_PER_RANK
    return max(1, len(os.sched_getaffinity(0)) // max(1, ranks))


def _slurm_executor(spec_slurm: dict[str, str | int], options: SweepOptions) -> SlurmExecutor:
    """The sweep's Slurm executor: the spec's [slurm] table under the command's options."""
    return SlurmExecutor(SlurmOptions(**(spec_slurm | options.slurm)))


def sbatch_scripts(spec_path: Path, options: SweepOptions) -> list[tuple[RunIdentity, str]]:
    """Every run of the spec with the sbatch script `jepardy sweep --executor slurm` would
    submit for it (and each node's command), submitting nothing."""
    spec = load_spec(spec_path, trainer_schema(), overrides=options.overrides)
    runs_root = options.runs_root.resolve()
    executor = _slurm_executor(spec.slurm, options)
    return [
        (
            run,
            executor.sbatch_script(
                run, runs_root / run.sweep / run.run_id, run_timeout_s(run, options.timeout_s)
            ),
        )
        for run in expand_runs(spec)
    ]


def _execute(tracker: JobTracker, queue: list[RunIdentity], summary: SweepSummary) -> SweepSummary:
    """Run `queue` (and the jobs `recover` follows) and count the outcomes into `summary`."""
    started = time.perf_counter()
    tracker.run(queue)
    for run_id, outcome in tracker.outcomes.items():
        if outcome.status is RunStatus.DONE:
            summary.done += 1
        else:
            summary.failed += 1
            summary.failures.append(f"{run_id}: {outcome.status}: {outcome.reason}")
    for run_id in tracker.not_started:
        summary.failures.append(f"{run_id}: held by another orchestrator")
    summary.wall_s = time.perf_counter() - started
    return summary
