"""The `jepardy` command line: each command parses, calls the library once, and prints.

User mistakes raise `UserError` anywhere below; `main()` prints them as one line on stderr
and exits with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from jepardy.errors import UserError

if TYPE_CHECKING:
    from jepardy.launch.local import JobOutcome
    from jepardy.spec import PlannedRun

app = typer.Typer(
    help="Matched-control ablation sweeps for Parameter Golf trainers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Build and check token shards.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

DbOption = Annotated[
    str, typer.Option("--db", envvar="JEPARDY_DB", help="SQLAlchemy URL or SQLite file path.")
]
SpecArg = Annotated[Path, typer.Argument(help="Sweep spec (TOML), e.g. experiments/smoke.toml.")]


@data_app.command("build")
def data_build(
    root: Annotated[Path, typer.Option(help="Where to write the embedded corpus.")] = Path(
        "data/embedded"
    ),
    force: Annotated[bool, typer.Option(help="Rebuild even if intact.")] = False,
) -> None:
    """Build the embedded corpus (CPython's help texts): sp1024 and byte260 shards + tokenizer."""
    from jepardy.data.corpus import build_embedded

    corpus = build_embedded(root, force=force)
    verb = "built" if corpus.rebuilt else "up to date"
    console.print(
        f"{verb}: {corpus.root}  sp1024 train/val tokens {corpus.sp1024_tokens['train']:,}/"
        f"{corpus.sp1024_tokens['val']:,}  byte260 {corpus.byte260_tokens['train']:,}/"
        f"{corpus.byte260_tokens['val']:,}"
    )


@app.command()
def plan(
    spec: SpecArg,
    db: DbOption = "results.db",
    commands: Annotated[bool, typer.Option(help="Print every run's exact command.")] = False,
) -> None:
    """Show the expanded job matrix and what the store already holds; launch nothing."""
    from jepardy.launch.command import torchrun_argv
    from jepardy.launch.sweep import load_plan
    from jepardy.spec import describe_plan
    from jepardy.store import open_store

    loaded, entries = load_plan(spec, open_store(db) if Path(db).exists() or "://" in db else None)
    table = Table(title=f"{loaded.name}: {len(entries)} runs")
    for column in ("run_id", "lane", "arm", "variant", "match", "seed", "nproc", "status"):
        table.add_column(
            column, no_wrap=column == "run_id", min_width=16 if column == "run_id" else None
        )
    for e in entries:
        r = e.run
        table.add_row(
            r.run_id, r.lane, r.arm, r.variant, r.match, str(r.seed), str(r.nproc), e.status
        )
    console.print(table)
    counts = describe_plan([e.run for e in entries])
    console.print({k: v for k, v in counts.items() if k != "runs"})
    if commands:
        for e in entries:
            argv = torchrun_argv(e.run.nproc, Path("runs") / e.run.sweep / e.run.run_id)
            console.print(f"{e.run.run_id}: {' '.join(argv)}", soft_wrap=True)


@app.command()
def sweep(
    spec: SpecArg,
    db: DbOption = "results.db",
    runs_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
) -> None:
    """Run every job of SPEC not already done, recording each in the store."""
    from jepardy.launch.sweep import run_sweep
    from jepardy.store import open_store

    store = open_store(db)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        summary = run_sweep(spec, store, runs_dir, observer=RichSweepObserver(progress))
    console.print(
        f"sweep {summary.sweep}: {summary.done} done, {summary.failed} failed, "
        f"{summary.skipped} already done, of {summary.total}, in {summary.wall_s:.1f}s; db {db}"
    )
    if summary.failed:
        raise typer.Exit(1)


class RichSweepObserver:
    """A progress bar with counts and ETA, and one line per finished run."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("sweep", total=None)

    def planned(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def skipped(self, run: PlannedRun) -> None:
        self.progress.update(self.task, advance=1)

    def started(self, run: PlannedRun) -> None:
        self.progress.update(self.task, description=f"{run.run_id} {_label(run)}")

    def finished(self, run: PlannedRun, outcome: JobOutcome) -> None:
        self.progress.update(self.task, advance=1)
        if outcome.status == "done" and outcome.result:
            r = outcome.result
            line = (
                f"[green]done[/] {run.run_id} {_label(run)}  val_bpb {r['val_bpb']:.4f}  "
                f"bytes {r['artifact_bytes']:,}  train {r['train_time_s']:.1f}s"
            )
        else:
            line = f"[red]{outcome.status}[/] {run.run_id} {_label(run)}: {outcome.reason}"
        self.progress.console.print(line, highlight=False)


def _label(run: PlannedRun) -> str:
    parts = [f"{run.lane}/{run.arm}", run.variant, run.match, f"seed={run.seed}"]
    return " ".join(p for p in parts if p)


@app.command()
def report(
    db: DbOption = "results.db",
    sweep_name: Annotated[str | None, typer.Option("--sweep", help="Only this sweep.")] = None,
    compare: Annotated[bool, typer.Option(help="Each arm against its matched control.")] = True,
    fmt: Annotated[str, typer.Option("--format", help="table | markdown | csv")] = "table",
) -> None:
    """Report a sweep: the control and each arm, val_bpb, delta, artifact bytes and cap."""
    from jepardy.report import compare_table, render_compare
    from jepardy.store import open_store

    if not compare:
        raise UserError("report: --no-compare: nothing else to report yet; use --compare")
    rendered = render_compare(compare_table(open_store(db).runs_frame(sweep_name)), fmt)
    if isinstance(rendered, str):
        sys.stdout.write(rendered)
    else:
        console.print(rendered)


def main() -> None:
    """Console-script entry point: one line on stderr for a user mistake."""
    try:
        app()
    except UserError as err:
        Console(stderr=True).print(f"[red]error:[/] {err}", soft_wrap=True, highlight=False)
        sys.exit(2)
