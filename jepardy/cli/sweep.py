"""`jepardy plan|sweep|cancel|rerun`: what a spec launches, launching it, stopping it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from jepardy.analysis.rules import RECORD_ALPHA
from jepardy.cli.options import (
    DbOption,
    ExecutorOption,
    GpusOption,
    RunsDirOption,
    SetOption,
    SlotsOption,
    SlurmOverrides,
    SpecArg,
    TimeoutOption,
    with_slurm_options,
)
from jepardy.cli.output import console
from jepardy.cli.tables import fitted

if TYPE_CHECKING:
    from jepardy.launch.livesweep import LiveSweep
    from jepardy.launch.sweep import PlanEntry, SweepOptions, SweepSummary

app = typer.Typer()


@app.command()
@with_slurm_options
def plan(
    spec: SpecArg,
    db: DbOption = "results.db",
    commands: Annotated[bool, typer.Option(help="Print every run's exact command.")] = False,
    sbatch: Annotated[
        bool, typer.Option(help="Print every run's sbatch script (--executor slurm's).")
    ] = False,
    runs_dir: RunsDirOption = Path("runs"),
    timeout_s: TimeoutOption = None,
    gpus: GpusOption = None,
    slots: SlotsOption = None,
    seed_std: Annotated[
        float | None, typer.Option(help="Seed sd of val_bpb (default: the store's history).")
    ] = None,
    detect: Annotated[
        float | None, typer.Option(help="A val_bpb difference: the seeds each arm needs for it.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Level of the report's test.")] = RECORD_ALPHA,
    sided: Annotated[str, typer.Option(help="one | two: the sides of the test.")] = "one",
    power: Annotated[float, typer.Option(help="Chance of detecting a difference.")] = 0.8,
    overhead_s: Annotated[
        float | None,
        typer.Option(help="Per-run overhead past the budget, s, when no run measured it."),
    ] = None,  # None: planning's stated default, named in what plan prints
    sets: SetOption = None,
    *,
    slurm: SlurmOverrides,
) -> None:
    """Show the job matrix, cost and power; launch nothing.

    Each run with its status; GPU-hours (CPU-hours off GPUs), wall time on the slots the
    sweep would use, each run's budget; per arm, the smallest difference its seeds detect.
    With --sbatch, also the sbatch script of every run as `jepardy sweep --executor slurm`
    with the same Slurm options would submit it.
    """
    from jepardy.launch.command import trainer_schema
    from jepardy.spec.parse import load_spec

    # A bad spec is refused before the imports below.
    checked = load_spec(spec, trainer_schema(), overrides=sets or [])
    from jepardy.cli.plan_view import PlanAsk, print_plan_summary
    from jepardy.launch.promotion import chain_lines, recorded_chain
    from jepardy.launch.sweep import data_paths, load_plan
    from jepardy.store.engine import open_reader

    database = open_reader(db) if Path(db).exists() or "://" in db else None
    loaded, entries = load_plan(checked, database)
    console.print(_plan_table(f"{loaded.name}: {len(entries)} runs", entries))
    for line in chain_lines(recorded_chain(checked, database)):
        console.print(line, highlight=False)
    ask = PlanAsk(gpus, slots, seed_std, detect, alpha, sided, power, overhead_s)
    print_plan_summary(console, loaded, entries, database, ask)
    for path in data_paths([e.run for e in entries]):  # what a sweep would refuse, said now
        shown = f"{path.name}: {path.value}: {path.problem or 'found'}"
        console.print(shown, highlight=False)
    if commands:
        _print_commands(entries, runs_dir)
    if sbatch:
        options = _sweep_options(runs_dir, None, 1, timeout_s, executor="slurm", slurm=slurm)
        _print_sbatch(spec, replace(options, overrides=tuple(sets or [])))


def _print_commands(entries: list[PlanEntry], runs_dir: Path) -> None:
    """`plan --commands`: every run's exact command, as a sweep would start it."""
    from jepardy.launch.command import run_argv

    for e in entries:
        argv = run_argv(e.run, runs_dir / e.run.sweep / e.run.run_id)
        console.print(f"{e.run.run_id}: {' '.join(argv)}", soft_wrap=True)


def _print_sbatch(spec: Path, options: SweepOptions) -> None:
    """`plan --sbatch`: every run's sbatch script, as `sweep --executor slurm` would submit."""
    from jepardy.launch.sweep import sbatch_scripts

    for run, script in sbatch_scripts(spec, options):
        console.print(f"# --- run {run.run_id} ---", highlight=False)
        console.print(script, highlight=False, soft_wrap=True)


# The plan's columns kept first when not all fit the terminal (after the varying ones).
PLAN_PRIORITY = ("id", "arm", "seed", "status", "lane")


def _plan_table(title: str, entries: list[PlanEntry]) -> object:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": [e.run.run_id for e in entries],
            "lane": [e.run.lane for e in entries],
            "arm": [e.run.arm for e in entries],
            "variant": [e.run.variant for e in entries],
            "match": [e.run.match for e in entries],
            "seed": [e.run.seed for e in entries],
            "status": [e.status for e in entries],
            "nproc": [e.run.nproc for e in entries],
        }
    )
    return fitted(title, frame, priority=PLAN_PRIORITY)


@app.command()
@with_slurm_options
def sweep(
    spec: SpecArg,
    db: DbOption = "results.db",
    runs_dir: RunsDirOption = Path("runs"),
    gpus: GpusOption = None,
    slots: SlotsOption = None,
    retry_failed: Annotated[
        bool, typer.Option(help="Run failed and timed-out runs again.")
    ] = False,
    timeout_s: TimeoutOption = None,
    executor: ExecutorOption = "local",
    sets: SetOption = None,
    *,
    slurm: SlurmOverrides,
) -> None:
    """Run every job of SPEC not already done.

    Runs are packed onto the GPUs (or CPU slots), or submitted as Slurm jobs with
    --executor slurm (its options override the spec's [slurm] table).

    Run it again to resume: done runs are skipped, interrupted and cancelled ones run again,
    and a Slurm job still queued or running is re-attached to, never submitted twice. Ctrl-C
    stops cleanly; a second Ctrl-C kills at once.

    --set KEY=VALUE gives every run a trainer param: other run ids, matched to controls with
    the same --set; the same --set again resumes them.
    """
    from jepardy.launch.sweep import prepare_sweep, run_sweep
    from jepardy.store.transitions import open_store

    options = _sweep_options(runs_dir, gpus, slots, timeout_s, retry_failed, executor, slurm)
    options = replace(options, overrides=tuple(sets or []))
    prepared = prepare_sweep(spec, options)  # before the database: a bad spec creates none
    store = open_store(db)
    with _interruptible() as observer:
        summary = run_sweep(prepared, store, options, observer=observer)
    _print_summary(summary, db)


@app.command()
def cancel(
    sweep_name: Annotated[str, typer.Argument(help="The sweep whose running runs to cancel.")],
    db: DbOption = "results.db",
) -> None:
    """Cancel a sweep's running runs.

    Marks them cancelled, scancels their Slurm jobs and stops their local jobs (here at
    once, on another machine at its orchestrator's next heartbeat). `jepardy sweep SPEC`
    later runs them again.
    """
    from jepardy.launch.tracker import cancel_sweep
    from jepardy.store.transitions import open_store

    cancelled = cancel_sweep(open_store(db), sweep_name)
    console.print(f"sweep {sweep_name}: {len(cancelled)} runs cancelled", highlight=False)


@app.command()
@with_slurm_options
def rerun(
    run_ids: Annotated[
        list[str], typer.Argument(help="Run ids or unique prefixes (see `jepardy runs`).")
    ],
    db: DbOption = "results.db",
    runs_dir: RunsDirOption = Path("runs"),
    gpus: GpusOption = None,
    slots: SlotsOption = None,
    timeout_s: TimeoutOption = None,
    executor: ExecutorOption = "local",
    *,
    slurm: SlurmOverrides,
) -> None:
    """Run recorded runs again, whatever their status.

    Each run gets the params it was stored with. With --executor slurm, the Slurm options
    override the [slurm] table of the spec its sweep last ran with.
    """
    from jepardy.launch.sweep import rerun as rerun_runs
    from jepardy.store.show import resolve_run_ids
    from jepardy.store.transitions import open_store

    options = _sweep_options(runs_dir, gpus, slots, timeout_s, False, executor, slurm)
    store = open_store(db)
    full_ids = resolve_run_ids(store, run_ids, "rerun")
    with _interruptible() as observer:
        summary = rerun_runs(full_ids, store, options, observer=observer)
    _print_summary(summary, db)


@contextmanager
def _interruptible() -> Iterator[LiveSweep]:
    """The sweep's view; after Ctrl-C (its jobs stopped and recorded by then), where it
    stands and the command that resumes it, and exit status 130."""
    from jepardy.cli.progress import print_interrupted, sweep_view

    with sweep_view() as observer:
        try:
            yield observer
        except KeyboardInterrupt:
            interrupted = True
        else:
            interrupted = False
    if interrupted:
        print_interrupted(observer)
        raise typer.Exit(130)


def _sweep_options(
    runs_dir: Path,
    gpus: str | None,
    slots: int | None,
    timeout_s: float | None,
    retry_failed: bool = False,
    executor: str = "local",
    slurm: SlurmOverrides | None = None,
) -> SweepOptions:
    from jepardy.launch.slots import parse_gpus
    from jepardy.launch.sweep import SweepOptions

    return SweepOptions(
        runs_root=runs_dir,
        executor=executor,
        slurm=slurm or {},
        gpus=parse_gpus(gpus) if gpus else None,
        slots=slots,
        retry_failed=retry_failed,
        timeout_s=timeout_s,
    )


def _print_summary(summary: SweepSummary, db: str) -> None:
    console.print(
        f"sweep {summary.sweep}: {summary.done} done, {summary.failed} failed, "
        f"{summary.skipped} skipped (done, or failed without --retry-failed), of "
        f"{summary.total}, in {summary.wall_s:.1f}s; db {db}",
        highlight=False,
    )
    for line in summary.notes:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    for line in summary.failures:
        console.print(Text(f"  {line}", style="red"))
    if summary.failed:
        raise typer.Exit(1)
