"""`jepardy report|export|export-submission|ingest`: results in and out of the store."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jepardy.analysis.rules import RECORD_ALPHA, RECORD_MARGIN_NATS
from jepardy.cli.options import DbOption, RunsDirOption, SweepFilterOption
from jepardy.cli.output import console, err_console, tagged
from jepardy.cli.tables import fitted
from jepardy.collector import paused_gc

if TYPE_CHECKING:
    from jepardy.analysis.report import ReportOutput
    from jepardy.ingest.batch import IngestReport

app = typer.Typer()
# Where the columns a narrow terminal leaves out of these commands' tables can be seen.
_RUNS_HINT = "jepardy runs --columns or --format csv shows them"


# The report command's own options, named once here so its signature reads one line each.
_Compare = Annotated[bool, typer.Option(help="Each arm against its matched control.")]
_Curve = Annotated[
    str | None, typer.Option(help="A numeric param: the metric over it, e.g. jepa_weight.")
]
_Horizons = Annotated[
    str | None, typer.Option(help="A budget param: rankings at each value, e.g. wallclock_s.")
]
_Metric = Annotated[str, typer.Option(help="Metric of --curve and --horizons.")]
_Noise = Annotated[
    float | None, typer.Option(help="Noise floor of single-seed curves (metric units).")
]
_Resamples = Annotated[
    int, typer.Option(help="Bootstrap resamples of the curves' monotonicity test; 0 = off.")
]
_Format = Annotated[
    str, typer.Option("--format", help="table | markdown | csv | json | html (needs --out)")
]
_Out = Annotated[Path | None, typer.Option(help="Write the report to this file, e.g. report.html.")]
_Plot = Annotated[
    Path | None,
    typer.Option(help="Write a PNG here: the forest plot of the arms, curves and horizons."),
]
_Health = Annotated[
    bool,
    typer.Option(
        help="First, the runs flagged for frozen groups, JEPA collapse or gradient trouble "
        "('health: no flags' when none is); in json the 'health' key, in csv the '# health' "
        "table, so stdout stays one document."
    ),
]
_Alpha = Annotated[
    float, typer.Option(help="Significance level of the verdicts (the record rule's 0.01).")
]
_Margin = Annotated[
    float, typer.Option(help="Improvement a verdict needs, in nats (record rule: 0.005).")
]
_Sided = Annotated[str, typer.Option(help="one | two: the sides of the tests.")]
_Against = Annotated[
    list[str] | None,
    typer.Option(
        help="A sweep or ingested record folder: the leader, compared by the leaderboard "
        "and record rules (repeat to pool reproductions)."
    ),
]


@app.command()
def report(
    db: DbOption = "results.db",
    sweep_name: SweepFilterOption = None,
    compare: _Compare = True,
    curve: _Curve = None,
    horizons: _Horizons = None,
    metric: _Metric = "val_bpb",
    noise: _Noise = None,
    resamples: _Resamples = 0,
    fmt: _Format = "table",
    out: _Out = None,
    plot: _Plot = None,
    health: _Health = False,
    alpha: _Alpha = RECORD_ALPHA,
    margin: _Margin = RECORD_MARGIN_NATS,
    sided: _Sided = "one",
    against: _Against = None,
) -> None:
    """Report a sweep.

    Arms against their matched control (tests, margin, cap), curves over a param, and
    rankings across budgets. With --against, each arm against a leader instead.
    """
    with _one_blas_thread(), paused_gc():
        from jepardy.analysis.report import ReportRequest, run_report
    from jepardy.analysis.rules import make_rule

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
        rule=make_rule(alpha, margin, sided),
        against=tuple(against or ()),
        out=out,
        health=health,
    )
    _print_report(run_report(db, request))


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Import numpy and scipy with one OpenBLAS thread, unless the user chose a number.

    Each of their two OpenBLAS libraries starts a thread pool as it loads, and its threads
    spin: 0.2 s of CPU on a 2-core machine, for a report whose arithmetic is a few means
    (bench/cli_latency.py). The variable is read at load only, so it is set for the import
    alone and then restored: the trainers a later command launches inherit the environment.
    """
    chosen = "OPENBLAS_NUM_THREADS" in os.environ
    if not chosen:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if not chosen:
            del os.environ["OPENBLAS_NUM_THREADS"]


def _print_report(output: ReportOutput) -> None:
    """The rendered report on stdout (text as it is, a rich table through the console), then
    where the files it wrote went."""
    if isinstance(output.rendered, str):
        sys.stdout.write(output.rendered)
    else:
        console.print(output.rendered)
    if output.out is not None:
        err_console.print(f"report: {output.out}", highlight=False, soft_wrap=True)
    if output.plot is not None:
        err_console.print(f"plot: {output.plot}", highlight=False, soft_wrap=True)


@app.command("export")
def export_run(
    run_id: Annotated[
        str, typer.Argument(help="A done run of the jepardy trainer (id or unique prefix).")
    ],
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
    """Re-export a run's final weights with other settings.

    Quantizes and compresses RUN_ID's final weights again (no training) and records the
    new artifact as a new run linked to it.
    """
    from jepardy.launch.reexport import reexport
    from jepardy.store.show import resolve_run_id
    from jepardy.store.transitions import open_store

    store = open_store(db)
    run_id = resolve_run_id(store, run_id, "export")
    done = reexport(
        store, run_id, quant_bits, zstd_level, runs_dir, device, target_bytes=target_bytes
    )
    result = done.result or {}
    figures = (
        f"val_bpb {result['val_bpb']:.5f}, artifact {result['artifact_bytes']:,} bytes"
        if done.status == "done" and "val_bpb" in result
        else done.reason
    )
    said = "exists" if done.existed else done.status
    console.print(
        f"export {done.run.run_id} of {run_id} ({done.run.variant}): {said}: {figures}; "
        f"{done.run_dir}",
        highlight=False,
        soft_wrap=True,
    )
    if done.status == "failed":
        raise typer.Exit(1)


@app.command("export-submission")
def export_submission(
    run_ids: Annotated[
        list[str], typer.Argument(help="The runs to submit, one per seed (ids or prefixes).")
    ],
    db: DbOption = "results.db",
    out: Annotated[Path, typer.Option(help="Submission folder to write.")] = Path("submission"),
    name: Annotated[str, typer.Option(help="Submission name.")] = "jepardy submission",
    author: Annotated[str, typer.Option(help="Author's name.")] = "",
    github_id: Annotated[str, typer.Option(help="Author's GitHub id.")] = "",
    script: Annotated[
        Path | None, typer.Option(help="The train_gpt.py to ship; must be the code that ran.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Write runs outside the 10min_16mb track, saying why.")
    ] = False,
) -> None:
    """Write a challenge submission from runs.

    Writes submission.json, a README results table (per seed, mean, std, bytes), each
    seed's log and --script as train_gpt.py. Runs that do not meet the track (8xH100,
    at most 600 s of training, the script and logs shipped) are refused unless --force.
    """
    from jepardy.analysis.submission import SubmissionInfo
    from jepardy.analysis.submission import export_submission as export
    from jepardy.store.engine import open_reader
    from jepardy.store.show import resolve_run_ids

    full_ids = resolve_run_ids(open_reader(db), run_ids, "export-submission")
    info = SubmissionInfo(name, author, github_id, script=script, force=force)
    done = export(db, full_ids, out, info)
    if done.track_problems:
        said = f"not a {info.track} submission: {'; '.join(done.track_problems)}"
        err_console.print(tagged("warning:", "yellow", said), soft_wrap=True)
    std = "n/a" if done.val_bpb_std is None else f"{done.val_bpb_std:.5f}"
    console.print(
        f"{done.submission_json}, {done.readme}: val_bpb {done.val_bpb:.5f} ± {std} "
        f"over {done.n} seeds",
        highlight=False,
        soft_wrap=True,
    )
    if done.selection_note:
        console.print(tagged("selection:", "yellow", done.selection_note), soft_wrap=True)


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
    """Bring challenge logs and results into the store.

    Logs, record folders and results tables become runs. Ingesting the same files again adds
    nothing. A log without a final metric becomes a failed run with its reason;
    submission.json is checked against the logs, not trusted.
    """
    from jepardy.ingest.ingest import ingest as ingest_paths
    from jepardy.ingest.labels import Labels, parse_assignments
    from jepardy.store.transitions import open_store

    labels = Labels(
        sweep=sweep_name,
        lane=lane,
        sets=parse_assignments(sets or [], "--set"),
        maps=parse_assignments(maps or [], "--map"),
    )
    done = ingest_paths(paths, open_store(db), labels)
    if done.added:
        console.print(_added_table(done))
    for note in done.notes:
        console.print(tagged("note:", "dim", note), soft_wrap=True)
    for check in done.checks:
        tag, style = ("ok:", "green") if check.ok else ("flag:", "yellow")
        console.print(tagged(tag, style, check.text), soft_wrap=True)
    failed = sum(1 for r in done.added if r.outcome.status != "done")
    sweeps = ", ".join(done.sweeps[:3]) or "none"
    if len(done.sweeps) > 3:
        sweeps += f", ... ({len(done.sweeps)} sweeps)"
    console.print(
        f"ingested {len(done.added)} new runs ({failed} failed), "
        f"{len(done.existing)} already in the store; sweeps: {sweeps}; db {db}",
        highlight=False,
        soft_wrap=True,
    )


# The ingest table's columns kept first when not all fit (after the varying ones).
_ADDED_PRIORITY = ("id", "arm", "seed", "status", "val_bpb", "artifact_bytes", "from")


def _added_table(done: IngestReport) -> object:
    """The runs added, one line each; a failed run's reason is a line under the table."""
    import pandas as pd

    rows, notes = [], []
    for added in done.added:
        run, outcome, result = added.identity, added.outcome, added.outcome.result or {}
        rows.append(
            {
                "id": run.run_id,
                "sweep": run.sweep,
                "lane": run.lane,
                "arm": "/".join(p for p in (run.arm, run.variant) if p),
                "seed": run.seed,
                "status": str(outcome.status),
                "val_bpb": result.get("val_bpb"),
                "artifact_bytes": result.get("artifact_bytes"),
                "from": result.get("metric") or added.source,
            }
        )
        if outcome.status != "done":
            notes.append(f"{run.run_id} failed: {outcome.reason}")
    frame = pd.DataFrame(rows)
    title = f"{len(done.added)} runs added"
    return fitted(title, frame, priority=_ADDED_PRIORITY, notes=notes, hint=_RUNS_HINT)
