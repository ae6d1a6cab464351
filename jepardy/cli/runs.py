"""`jepardy status|runs|show|logs`: what the store holds about runs."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer
from rich.text import Text

from jepardy.cli.options import DbOption, RunIdArg, SweepFilterOption
from jepardy.cli.output import console, frame_table

app = typer.Typer()


@app.command()
def status(
    db: DbOption = "results.db",
    watch: Annotated[
        bool, typer.Option(help="Follow a sweep live, as `jepardy sweep` shows it (Ctrl-C ends).")
    ] = False,
    sweep_name: SweepFilterOption = None,
    interval_s: Annotated[
        float, typer.Option("--interval-s", min=0.1, help="Seconds between polls of --watch.")
    ] = 1.0,
    count: Annotated[
        int | None, typer.Option(min=1, help="Stop --watch after this many polls.")
    ] = None,
) -> None:
    """Runs per state and sweep, and the running runs.

    For each running run: its orchestrator, its job (executor, id, state, nodes, devices),
    elapsed time and heartbeat age; a run whose orchestrator stopped beating shows as stale.
    With --watch: the live view of a sweep (--sweep, else the one running), from the store
    and the running runs' metrics.jsonl; plain lines per event when not on a terminal.
    """
    from jepardy.store.engine import open_reader
    from jepardy.store.views import require_sweep, running_jobs, status_counts, sweep_specs

    database = open_reader(db)
    require_sweep(database, sweep_name)
    if watch:
        from jepardy.cli.progress import watch as watch_store

        with contextlib.suppress(KeyboardInterrupt):  # the way a watch ends
            watch_store(database, sweep_name, interval_s, count)
        return
    runs = database.runs_frame(sweep_name)
    console.print(frame_table(status_counts(runs, every_state=False), "runs per state"))
    running = running_jobs(runs, specs=sweep_specs(database))
    if len(running):
        console.print(frame_table(running, "running"))


@app.command()
def runs(
    db: DbOption = "results.db",
    sweep_name: SweepFilterOption = None,
    state: Annotated[str | None, typer.Option("--status", help="Only this state.")] = None,
    lane: Annotated[str | None, typer.Option(help="Only this lane.")] = None,
    arm: Annotated[str | None, typer.Option(help="Only this arm.")] = None,
) -> None:
    """The recorded runs, filtered.

    Shows each run's id, labels, status, reason, val_bpb and bytes.
    """
    from jepardy.store.engine import open_reader
    from jepardy.store.views import empty_selection, filter_runs, require_sweep

    database = open_reader(db)
    require_sweep(database, sweep_name)
    frame = filter_runs(database.runs_frame(sweep_name), status=state, lane=lane, arm=arm)
    if len(frame):
        console.print(frame_table(frame, f"{len(frame)} runs"))
    else:
        console.print(empty_selection(sweep_name, state, lane, arm), highlight=False)


@app.command()
def show(run_id: RunIdArg, db: DbOption = "results.db") -> None:
    """One run's identity, outcome and provenance.

    Provenance: code hashes, git, versions, GPU, data.
    """
    from rich.pretty import Pretty

    from jepardy.store.engine import open_reader
    from jepardy.store.show import describe_run

    for title, section in describe_run(open_reader(db), run_id).items():
        console.print(Text(title, style="bold"))
        console.print(Pretty(section, expand_all=True), soft_wrap=True)


@app.command()
def logs(
    run_id: RunIdArg,
    db: DbOption = "results.db",
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines from each log's end.")] = 40,
) -> None:
    """The end of each log of a run's job.

    Running or ended: each node's log, and submitit's for a Slurm job; for a run without files,
    the log tail the store kept.
    """
    from jepardy.launch.joblogs import log_files
    from jepardy.launch.rundir import log_tail
    from jepardy.store.engine import open_reader
    from jepardy.store.show import find_run

    row = find_run(open_reader(db), run_id, "logs")
    files = log_files(row)
    for path in files:
        console.print(f"==> {path} <==", highlight=False, soft_wrap=True)
        console.print(log_tail(path, lines), highlight=False, soft_wrap=True)
    if not files:
        kept = row["log_tail"] if isinstance(row["log_tail"], str) else ""
        console.print(f"==> run {row['id']}: no log files; the store's tail <==", highlight=False)
        console.print("\n".join(kept.splitlines()[-lines:]), soft_wrap=True)
