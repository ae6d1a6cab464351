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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from jepardy.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from jepardy.launch.local import JobOutcome
    from jepardy.launch.sweep import SweepOptions, SweepSummary
    from jepardy.store import RunLike

app = typer.Typer(
    help="Matched-control ablation sweeps for Parameter Golf trainers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Build, fetch and check token shards.", no_args_is_help=True)
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


@data_app.command("fetch")
def data_fetch(
    variant: Annotated[str, typer.Option(help="sp1024, another sp<N>, or byte260.")] = "sp1024",
    train_shards: Annotated[
        int, typer.Option(help="Training shards to fetch (every validation shard is fetched).")
    ] = 80,
    out: Annotated[Path, typer.Option(help="Where the data goes.")] = Path("data/fineweb"),
    source: Annotated[
        Path | None,
        typer.Option(help="A local folder laid out like the hub repo, instead of the hub."),
    ] = None,
    repo: Annotated[str, typer.Option(help="The Hugging Face dataset repo.")] = (
        "willdepueoai/parameter-golf"
    ),
    revision: Annotated[str | None, typer.Option(help="A branch, tag or commit.")] = None,
) -> None:
    """Download the challenge's FineWeb shards and tokenizer (resumable, size-checked)."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    from jepardy.data.fetch import DirSource, HubSource, fetch

    origin = DirSource(source) if source is not None else HubSource(repo, revision)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        result = fetch(variant, train_shards, out, origin, RichFetchObserver(progress))
    console.print(
        f"{result.dataset}: {len(result.fetched)} files fetched "
        f"({result.fetched_bytes / 1e6:,.1f} MB), {len(result.kept)} already here; "
        f"tokenizer {result.tokenizer}",
        highlight=False,
        soft_wrap=True,
    )


class RichFetchObserver:
    """One bar over the bytes to fetch, naming the file under way."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None  # no bar before the fetch knows what it fetches

    def planned(self, files: int, total_bytes: int) -> None:
        self.task = self.progress.add_task(f"{files} files", total=total_bytes)

    def started(self, name: str, size: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=name.rsplit("/", 1)[-1])

    def finished(self, name: str, size: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=size)


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="A dataset folder, or a data root with datasets/.")],
    vocab_size: Annotated[
        int | None, typer.Option(help="Vocabulary size (default: tokenizer, manifest, name).")
    ] = None,
    tokenizer: Annotated[
        Path | None, typer.Option(help="SentencePiece model whose vocabulary the tokens use.")
    ] = None,
) -> None:
    """Verify shard headers and sizes, and that every token is in the vocabulary."""
    from jepardy.data.check import check_data

    checks = check_data(path, vocab_size, tokenizer)
    table = Table(title="data check")
    for column in ("dataset", "vocab", "split", "files", "tokens", "documents", "max id"):
        table.add_column(column)
    for check in checks:
        vocab = f"{check.vocab_size} ({check.vocab_source})"
        for split, found in check.splits.items():
            table.add_row(
                str(check.path),
                vocab,
                split,
                str(found.files),
                f"{found.tokens:,}",
                f"{found.documents:,}",
                str(found.max_token),
            )
    console.print(table)
    problems = [p for check in checks for p in check.problems]
    for problem in problems:
        console.print(f"[red]problem:[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print("ok: headers, sizes and token ids all check out", highlight=False)


@app.command()
def plan(
    spec: SpecArg,
    db: DbOption = "results.db",
    commands: Annotated[bool, typer.Option(help="Print every run's exact command.")] = False,
    sbatch: Annotated[
        bool, typer.Option(help="Print every run's sbatch script (--executor slurm's).")
    ] = False,
    runs_dir: RunsDirOption = Path("runs"),
    timeout_s: TimeoutOption = None,
    partition: PartitionOption = None,
    nodes: NodesOption = None,
    gpus_per_node: GpusPerNodeOption = None,
    time: TimeOption = None,
    account: AccountOption = None,
    qos: QosOption = None,
    constraint: ConstraintOption = None,
) -> None:
    """Show the expanded job matrix and what the store already holds; launch nothing.
    With --sbatch, also the sbatch script of every run as `jepardy sweep --executor slurm`
    with the same Slurm options would submit it."""
    from jepardy.launch.command import run_argv
    from jepardy.launch.sweep import load_plan, sbatch_scripts
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
            argv = run_argv(e.run, runs_dir / e.run.sweep / e.run.run_id)
            console.print(f"{e.run.run_id}: {' '.join(argv)}", soft_wrap=True)
    if sbatch:
        slurm = _slurm_overrides(partition, nodes, gpus_per_node, time, account, qos, constraint)
        options = _sweep_options(runs_dir, None, 1, timeout_s, executor="slurm", slurm=slurm)
        for run, script in sbatch_scripts(spec, options):
            console.print(f"# --- run {run.run_id} ---", highlight=False)
            console.print(script, highlight=False, markup=False, soft_wrap=True)


GpusOption = Annotated[
    str | None,
    typer.Option(help="GPU ids to pack runs onto, e.g. 0,1,2,3 (default: detected)."),
]
SlotsOption = Annotated[int, typer.Option(help="Concurrent runs when there are no GPUs.")]
TimeoutOption = Annotated[
    float | None,
    typer.Option("--timeout-s", help="Per-run limit (default: wallclock_s + 900 s, else none)."),
]
RunsDirOption = Annotated[Path, typer.Option(help="Where run directories go.")]
ExecutorOption = Annotated[str, typer.Option(help="local (this machine) or slurm.")]
PartitionOption = Annotated[str | None, typer.Option(help="Slurm partition.")]
NodesOption = Annotated[int | None, typer.Option(help="Slurm nodes per run.")]
GpusPerNodeOption = Annotated[int | None, typer.Option(help="Slurm GPUs per node.")]
TimeOption = Annotated[int | None, typer.Option("--time", help="Slurm minutes per run.")]
AccountOption = Annotated[str | None, typer.Option(help="Slurm account.")]
QosOption = Annotated[str | None, typer.Option(help="Slurm QOS.")]
ConstraintOption = Annotated[str | None, typer.Option(help="Slurm node constraint.")]


def _slurm_overrides(*values: str | int | None) -> dict[str, str | int]:
    """The Slurm options given on the command line, in SLURM_OPTIONS order (they override
    the spec's [slurm] table)."""
    return {key: v for key, v in zip(SLURM_OPTIONS, values, strict=True) if v is not None}


SLURM_OPTIONS = ("partition", "nodes", "gpus_per_node", "time", "account", "qos", "constraint")


def _sweep_options(
    runs_dir: Path,
    gpus: str | None,
    slots: int,
    timeout_s: float | None,
    retry_failed: bool = False,
    executor: str = "local",
    slurm: dict[str, str | int] | None = None,
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
        console.print(f"  [red]{line}[/]", highlight=False)
    if summary.failed:
        raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@app.command()
def sweep(
    spec: SpecArg,
    db: DbOption = "results.db",
    runs_dir: RunsDirOption = Path("runs"),
    gpus: GpusOption = None,
    slots: SlotsOption = 1,
    retry_failed: Annotated[
        bool, typer.Option(help="Run failed and timed-out runs again.")
    ] = False,
    timeout_s: TimeoutOption = None,
    executor: ExecutorOption = "local",
    partition: PartitionOption = None,
    nodes: NodesOption = None,
    gpus_per_node: GpusPerNodeOption = None,
    time: TimeOption = None,
    account: AccountOption = None,
    qos: QosOption = None,
    constraint: ConstraintOption = None,
) -> None:
    """Run every job of SPEC not already done, packed onto the GPUs (or CPU slots), or as
    Slurm jobs with --executor slurm (its options override the spec's [slurm] table).

    Run it again to resume: done runs are skipped, interrupted and cancelled ones run again,
    and a Slurm job still queued or running is re-attached to, never submitted twice. Ctrl-C
    stops cleanly; a second Ctrl-C kills at once.
    """
    from jepardy.launch.sweep import run_sweep
    from jepardy.store import open_store

    slurm = _slurm_overrides(partition, nodes, gpus_per_node, time, account, qos, constraint)
    options = _sweep_options(runs_dir, gpus, slots, timeout_s, retry_failed, executor, slurm)
    store = open_store(db)
    with _progress() as progress:
        summary = run_sweep(spec, store, options, observer=RichSweepObserver(progress))
    _print_summary(summary, db)


@app.command()
def cancel(
    sweep_name: Annotated[str, typer.Argument(help="The sweep whose running runs to cancel.")],
    db: DbOption = "results.db",
) -> None:
    """Cancel a sweep's running runs: mark them cancelled, scancel their Slurm jobs, stop
    their local jobs (here at once, on another machine at its orchestrator's next
    heartbeat). `jepardy sweep SPEC` later runs them again."""
    from jepardy.launch.tracker import cancel_sweep
    from jepardy.store import open_store

    cancelled = cancel_sweep(open_store(db), sweep_name)
    console.print(f"sweep {sweep_name}: {len(cancelled)} runs cancelled", highlight=False)


@app.command()
def rerun(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids (see `jepardy runs`).")],
    db: DbOption = "results.db",
    runs_dir: RunsDirOption = Path("runs"),
    gpus: GpusOption = None,
    slots: SlotsOption = 1,
    timeout_s: TimeoutOption = None,
    executor: ExecutorOption = "local",
    partition: PartitionOption = None,
    nodes: NodesOption = None,
    gpus_per_node: GpusPerNodeOption = None,
    time: TimeOption = None,
    account: AccountOption = None,
    qos: QosOption = None,
    constraint: ConstraintOption = None,
) -> None:
    """Run recorded runs again, whatever their status, with the params they were stored
    with; on Slurm with --executor slurm (the options over the [slurm] table of the spec
    their sweep last ran with)."""
    from jepardy.launch.sweep import rerun as rerun_runs
    from jepardy.store import open_store

    slurm = _slurm_overrides(partition, nodes, gpus_per_node, time, account, qos, constraint)
    options = _sweep_options(runs_dir, gpus, slots, timeout_s, False, executor, slurm)
    store = open_store(db)
    with _progress() as progress:
        summary = rerun_runs(run_ids, store, options, observer=RichSweepObserver(progress))
    _print_summary(summary, db)


@app.command()
def status(db: DbOption = "results.db") -> None:
    """Runs per state and sweep; the running runs: their orchestrator, their job (executor,
    id, state, nodes, devices), elapsed time and heartbeat age."""
    from jepardy.status import running_jobs, status_counts
    from jepardy.store import open_store

    runs = open_store(db).runs_frame()
    console.print(_frame_table(status_counts(runs, every_state=False), "runs per state"))
    running = running_jobs(runs)
    if len(running):
        console.print(_frame_table(running, "running"))


@app.command()
def runs(
    db: DbOption = "results.db",
    sweep_name: Annotated[str | None, typer.Option("--sweep", help="Only this sweep.")] = None,
    state: Annotated[str | None, typer.Option("--status", help="Only this state.")] = None,
    lane: Annotated[str | None, typer.Option(help="Only this lane.")] = None,
    arm: Annotated[str | None, typer.Option(help="Only this arm.")] = None,
) -> None:
    """The recorded runs, filtered: id, labels, status, reason, val_bpb, bytes."""
    from jepardy.status import filter_runs
    from jepardy.store import open_store

    frame = filter_runs(open_store(db).runs_frame(sweep_name), status=state, lane=lane, arm=arm)
    console.print(_frame_table(frame, f"{len(frame)} runs"))


def _frame_table(frame: pd.DataFrame, title: str) -> Table:
    """A rich table of `frame`; columns blank in every row are left out, to fit a terminal."""
    import pandas as pd

    table = Table(title=title)
    frame = frame.loc[:, frame.notna().any() | frame.empty]
    for column in frame.columns:
        table.add_column(str(column), no_wrap=column == "id")
    for row in frame.itertuples(index=False):
        table.add_row(
            *("" if pd.isna(v) else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row)
        )
    return table


class RichSweepObserver:
    """A progress bar with counts and ETA, and one line per finished run."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("sweep", total=None)

    def planned(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def skipped(self, run: RunLike) -> None:
        self.progress.update(self.task, advance=1)

    def started(self, run: RunLike) -> None:
        self.progress.update(self.task, description=f"{run.run_id} {_label(run)}")

    def finished(self, run: RunLike, outcome: JobOutcome) -> None:
        self.progress.update(self.task, advance=1)
        if outcome.status == "done" and outcome.result:
            r = outcome.result
            figures = [
                ("val_bpb", "{:.4f}"),
                ("artifact_bytes", "{:,}"),
                ("train_time_s", "{:.1f}s"),
            ]
            shown = "  ".join(
                f"{name} " + (fmt.format(r[name]) if r.get(name) is not None else "?")
                for name, fmt in figures
            )
            line = f"[green]done[/] {run.run_id} {_label(run)}  {shown}"
        else:
            line = f"[red]{outcome.status}[/] {run.run_id} {_label(run)}: {outcome.reason}"
        self.progress.console.print(line, highlight=False)


def _label(run: RunLike) -> str:
    parts = [f"{run.lane}/{run.arm}", run.variant, run.match, f"seed={run.seed}"]
    return " ".join(p for p in parts if p)


@app.command()
def report(
    db: DbOption = "results.db",
    sweep_name: Annotated[str | None, typer.Option("--sweep", help="Only this sweep.")] = None,
    compare: Annotated[bool, typer.Option(help="Each arm against its matched control.")] = True,
    curve: Annotated[
        str | None, typer.Option(help="A numeric param: the metric over it, e.g. jepa_weight.")
    ] = None,
    horizons: Annotated[
        str | None, typer.Option(help="A budget param: rankings at each value, e.g. wallclock_s.")
    ] = None,
    metric: Annotated[str, typer.Option(help="Metric of --curve and --horizons.")] = "val_bpb",
    noise: Annotated[
        float | None, typer.Option(help="Noise floor of single-seed curves (metric units).")
    ] = None,
    resamples: Annotated[
        int, typer.Option(help="Bootstrap resamples of the curves' monotonicity test; 0 = off.")
    ] = 0,
    fmt: Annotated[str, typer.Option("--format", help="table | markdown | csv | json")] = "table",
    plot: Annotated[
        Path | None, typer.Option(help="Write the curves and horizons as a PNG here.")
    ] = None,
    health: Annotated[
        bool, typer.Option(help="First, flag frozen groups, JEPA collapse, gradient trouble.")
    ] = False,
) -> None:
    """Report a sweep: arms against their matched control (tests, margin, cap), curves over a
    param, and rankings across budgets."""
    from jepardy.report import ReportRequest, run_report

    if health:
        from jepardy.health import health_table
        from jepardy.store import open_store

        flagged = health_table(open_store(db).runs_frame(sweep_name), only_flagged=True)
        title = f"health: {len(flagged)} runs flagged" if len(flagged) else "health: no flags"
        console.print(_frame_table(flagged, title))

    request = ReportRequest(
        sweep=sweep_name,
        compare=compare,
        curve=curve,
        horizons=horizons,
        metric=metric,
        noise=noise,
        resamples=resamples,
        fmt=fmt,
        plot=plot,
    )
    output = run_report(db, request)
    if isinstance(output.rendered, str):
        sys.stdout.write(output.rendered)
    else:
        console.print(output.rendered, soft_wrap=True)
    if output.plot is not None:
        Console(stderr=True).print(f"plot: {output.plot}", highlight=False, soft_wrap=True)


@app.command("export")
def export_run(
    run_id: Annotated[str, typer.Argument(help="A done run of the jepardy trainer.")],
    db: DbOption = "results.db",
    quant_bits: Annotated[int, typer.Option(help="Bits per quantized weight (2..8).")] = 6,
    zstd_level: Annotated[int, typer.Option(help="zstd compression level.")] = 19,
    target_bytes: Annotated[
        int, typer.Option(help="Model byte budget (default 0: the cap minus the code bytes).")
    ] = 0,
    runs_dir: RunsDirOption = Path("runs"),
    device: Annotated[
        str | None, typer.Option(help="auto, cpu or cuda (default: the run's device).")
    ] = None,
) -> None:
    """Re-export RUN_ID's final weights with other quantization or compression settings
    (no training) and record the new artifact as a new run linked to it."""
    from jepardy.launch.reexport import reexport
    from jepardy.store import open_store

    done = reexport(
        open_store(db), run_id, quant_bits, zstd_level, runs_dir, device, target_bytes=target_bytes
    )
    result = done.result or {}
    figures = (
        f"val_bpb {result['val_bpb']:.5f}, artifact {result['artifact_bytes']:,} bytes"
        if done.status in ("done", "exists") and "val_bpb" in result
        else done.reason
    )
    console.print(
        f"export {done.run.run_id} of {run_id} ({done.run.variant}): {done.status}: {figures}; "
        f"{done.run_dir}",
        highlight=False,
        soft_wrap=True,
    )
    if done.status == "failed":
        raise typer.Exit(1)


@app.command("export-submission")
def export_submission(
    run_ids: Annotated[list[str], typer.Argument(help="The runs to submit, one per seed.")],
    db: DbOption = "results.db",
    out: Annotated[Path, typer.Option(help="Submission folder to write.")] = Path("submission"),
    name: Annotated[str, typer.Option(help="Submission name.")] = "jepardy submission",
    author: Annotated[str, typer.Option(help="Author's name.")] = "",
    github_id: Annotated[str, typer.Option(help="Author's GitHub id.")] = "",
    script: Annotated[
        Path | None, typer.Option(help="The train_gpt.py to ship; must be the code that ran.")
    ] = None,
) -> None:
    """Write submission.json and a README results table (per seed, mean, std, bytes)."""
    from jepardy.submission import SubmissionInfo
    from jepardy.submission import export_submission as export

    info = SubmissionInfo(name=name, author=author, github_id=github_id, script=script)
    done = export(db, run_ids, out, info)
    std = "n/a" if done.val_bpb_std is None else f"{done.val_bpb_std:.5f}"
    console.print(
        f"{done.submission_json}, {done.readme}: val_bpb {done.val_bpb:.5f} ± {std} "
        f"over {done.n} seeds",
        highlight=False,
        soft_wrap=True,
    )
    if done.selection_note:
        console.print(
            f"[yellow]selection:[/] {done.selection_note}", highlight=False, soft_wrap=True
        )


@app.command()
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Logs (.log, .txt), tables (.csv, .tsv, .md) or record folders."),
    ],
    db: DbOption = "results.db",
    sweep_name: Annotated[
        str | None, typer.Option("--sweep", help="Sweep name (default: ingested:<folder>).")
    ] = None,
    lane: Annotated[str | None, typer.Option(help="Lane (default: logs, or table).")] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="KEY=VALUE for what the source leaves out (a param, seed, arm, ...)."
        ),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option("--map", help="COLUMN=FIELD for a table column; FIELD - drops it."),
    ] = None,
) -> None:
    """Bring challenge logs, record folders and results tables into the store as runs.

    Ingesting the same files again adds nothing. A log without a final metric becomes a
    failed run with its reason; submission.json is checked against the logs, not trusted.
    """
    from jepardy.ingest import Labels, parse_assignments
    from jepardy.ingest import ingest as ingest_paths
    from jepardy.store import open_store

    labels = Labels(
        sweep=sweep_name,
        lane=lane,
        sets=parse_assignments(sets or [], "--set"),
        maps=parse_assignments(maps or [], "--map"),
    )
    report = ingest_paths(paths, open_store(db), labels)
    if report.added:
        table = Table(title=f"{len(report.added)} runs added")
        for column in ("id", "sweep", "lane", "arm", "seed", "status", "val_bpb", "bytes", "from"):
            table.add_column(column, no_wrap=column == "id")
        for run in report.added:
            bpb, size = run.result.get("val_bpb"), run.result.get("artifact_bytes")
            table.add_row(
                run.run_id,
                run.sweep,
                run.lane,
                "/".join(p for p in (run.arm, run.variant) if p),
                str(run.seed),
                run.status if run.status == "done" else f"failed: {run.reason}",
                "" if bpb is None else f"{bpb:.4f}",
                "" if size is None else f"{size:,}",
                run.result.get("metric") or run.source,
            )
        console.print(table)
    for note in report.notes:
        console.print(f"[dim]note:[/] {note}", highlight=False, soft_wrap=True)
    for check in report.checks:
        mark = "[green]ok:[/]" if check.ok else "[yellow]flag:[/]"
        console.print(f"{mark} {check.text}", highlight=False, soft_wrap=True)
    failed = sum(1 for r in report.added if r.status != "done")
    sweeps = ", ".join(report.sweeps[:3]) or "none"
    if len(report.sweeps) > 3:
        sweeps += f", ... ({len(report.sweeps)} sweeps)"
    console.print(
        f"ingested {len(report.added)} new runs ({failed} failed), "
        f"{len(report.existing)} already in the store; sweeps: {sweeps}; db {db}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    db: DbOption = "results.db",
) -> None:
    """One run's identity, outcome and provenance: code hashes, git, versions, GPU, data."""
    from rich.pretty import Pretty

    from jepardy.show import describe_run
    from jepardy.store import open_store

    for title, section in describe_run(open_store(db), run_id).items():
        console.print(f"[bold]{title}[/]")
        console.print(Pretty(section, expand_all=True), soft_wrap=True)


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="A run id or a unique prefix of one.")],
    db: DbOption = "results.db",
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines from each log's end.")] = 40,
) -> None:
    """The end of every log a run's job wrote (each node's, and submitit's for a Slurm
    job), running or ended; for a run without files, the log tail the store kept."""
    from jepardy.launch.local import log_tail
    from jepardy.show import find_run, log_files
    from jepardy.store import open_store

    row = find_run(open_store(db), run_id, "logs")
    files = log_files(row)
    for path in files:
        console.print(f"==> {path} <==", highlight=False, soft_wrap=True)
        console.print(log_tail(path, lines), highlight=False, markup=False, soft_wrap=True)
    if not files:
        kept = row["log_tail"] if isinstance(row["log_tail"], str) else ""
        console.print(f"==> run {row['id']}: no log files; the store's tail <==", highlight=False)
        console.print("\n".join(kept.splitlines()[-lines:]), markup=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point: one line on stderr for a user mistake."""
    try:
        app()
    except UserError as err:
        Console(stderr=True).print(f"[red]error:[/] {err}", soft_wrap=True, highlight=False)
        sys.exit(2)
