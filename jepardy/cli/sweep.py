"""`jepardy plan|sweep|cancel|rerun`: what a spec launches, launching it, stopping it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from jepardy.cli.options import (
    DbOption,
    ExecutorOption,
    GpusOption,
    RunsDirOption,
    SlotsOption,
    SlurmOverrides,
    SpecArg,
    TimeoutOption,
    with_slurm_options,
)
from jepardy.cli.output import console

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
    *,
    slurm: SlurmOverrides,
) -> None:
    """Show the job matrix; launch nothing.

    Each run with its status in the store. With --sbatch, also the sbatch script of every run as
    `jepardy sweep --executor slurm` with the same Slurm options would submit it.
    """
    from jepardy.launch.command import run_argv, trainer_schema
    from jepardy.spec.parse import load_spec

    checked = load_spec(spec, trainer_schema())  # a bad spec is refused before the imports below
    from jepardy.launch.sweep import load_plan, sbatch_scripts
    from jepardy.spec.expand import describe_plan
    from jepardy.store.engine import open_reader

    loaded, entries = load_plan(
        checked, open_reader(db) if Path(db).exists() or "://" in db else None
    )
    console.print(_plan_table(f"{loaded.name}: {len(entries)} runs", entries))
    counts = describe_plan([e.run for e in entries])
    console.print({k: v for k, v in counts.items() if k != "runs"})
    if commands:
        for e in entries:
            argv = run_argv(e.run, runs_dir / e.run.sweep / e.run.run_id)
            console.print(f"{e.run.run_id}: {' '.join(argv)}", soft_wrap=True)
    if sbatch:
        options = _sweep_options(runs_dir, None, 1, timeout_s, executor="slurm", slurm=slurm)
        for run, script in sbatch_scripts(spec, options):
            console.print(f"# --- run {run.run_id} ---", highlight=False)
            console.print(script, highlight=False, soft_wrap=True)


def _plan_table(title: str, entries: list[PlanEntry]) -> Table:
    table = Table(title=title)
    for column in ("run_id", "lane", "arm", "variant", "match", "seed", "nproc", "status"):
        table.add_column(
            column, no_wrap=column == "run_id", min_width=16 if column == "run_id" else None
        )
    for e in entries:
        r = e.run
        table.add_row(
            r.run_id, r.lane, r.arm, r.variant, r.match, str(r.seed), str(r.nproc), e.status
        )
    return table


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
    *,
    slurm: SlurmOverrides,
) -> None:
    """Run every job of SPEC not already done.

    Runs are packed onto the GPUs (or CPU slots), or submitted as Slurm jobs with
    --executor slurm (its options override the spec's [slurm] table).

    Run it again to resume: done runs are skipped, interrupted and cancelled ones run again,
    and a Slurm job still queued or running is re-attached to, never submitted twice. Ctrl-C
    stops cleanly; a second Ctrl-C kills at once.
    """
    from jepardy.launch.sweep import prepare_sweep, run_sweep
    from jepardy.store.transitions import open_store

    options = _sweep_options(runs_dir, gpus, slots, timeout_s, retry_failed, executor, slurm)
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
    for line in summary.failures:
        console.print(Text(f"  {line}", style="red"))
    if summary.failed:
        raise typer.Exit(1)
