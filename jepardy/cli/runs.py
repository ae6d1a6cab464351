"""`jepardy status|runs|show|logs`: what the store holds about runs."""

from __future__ import annotations

import contextlib
import os
import re
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from jepardy.cli.options import DbOption, RunIdArg, SweepFilterOption
from jepardy.cli.output import console
from jepardy.cli.tables import (
    Cells,
    ColumnsOption,
    FormatOption,
    cells_frame,
    check_format,
    fitted,
    print_frames,
    select_columns,
    wanted_columns,
    with_axes,
)
from jepardy.errors import UserError

if TYPE_CHECKING:
    from jepardy.analysis.diff import RunDiff

app = typer.Typer()


# The columns kept first when a table does not fit the terminal (then the others).
RUNS_PRIORITY = ("id", "arm", "seed", "status", "val_bpb", "artifact_bytes", "train_time_s")
RUNNING_PRIORITY = ("id", "state", "arm", "seed", "job_id", "elapsed_s", "devices", "host")
_STALE = "running (stale"


@app.command()
def status(
    db: DbOption = "results.db",
    fmt: FormatOption = "table",
    columns: ColumnsOption = None,
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
    --columns picks the running runs' columns.
    With --watch: the live view of a sweep (--sweep, else the one running), from the store
    and the running runs' metrics.jsonl; plain lines per event when not on a terminal.
    """
    from jepardy.store.reader import open_rows
    from jepardy.store.views import require_sweep, running_jobs, status_counts

    check_format(fmt)
    if watch:
        from jepardy.cli.progress import watch as watch_store
        from jepardy.store.engine import open_reader

        database = open_reader(db)
        require_sweep(database, sweep_name)
        with contextlib.suppress(KeyboardInterrupt):  # the way a watch ends
            watch_store(database, sweep_name, interval_s, count)
        return
    reader = open_rows(db)
    require_sweep(reader, sweep_name)
    counts = status_counts(reader, sweep_name, every_state=False)
    running = running_jobs(reader, sweep_name, db=_db_argument(db, reader.name))
    if fmt != "table":
        running_frame = with_axes(cells_frame(running))
        picked = select_columns("running", running_frame, wanted_columns(columns))
        print_frames([("runs per state", counts), ("running", picked)], fmt)
        return
    if not counts["sweep"]:
        console.print(f"no runs in {reader.name}; jepardy sweep SPEC records them", highlight=False)
        return
    console.print(fitted("runs per state", counts))
    if running["id"]:
        console.print(_running_table(running, wanted_columns(columns)))


def _db_argument(db: str, name: str) -> str | None:
    """The --db a command run here needs for the store `db` (None: the one it finds
    itself, the default or JEPARDY_DB's): its name (a URL's password hidden)."""
    return None if db in ("results.db", os.environ.get("JEPARDY_DB")) else name


def _running_table(running: Cells, columns: list[str]) -> object:
    """The running runs; a stale one's state is `stale` in the table, and its whole state
    (how long without a heartbeat, the command that resumes it) is a line under it."""
    states = [str(state) for state in running["state"]]
    stale = [state.startswith(_STALE) for state in states]
    notes = [
        f"{i}: {state}" for i, state, old in zip(running["id"], states, stale, strict=True) if old
    ]
    shown = {
        **running,
        "state": ["stale" if old else s for s, old in zip(states, stale, strict=True)],
    }
    return fitted("running", shown, columns, RUNNING_PRIORITY, notes)


@app.command()
def runs(
    db: DbOption = "results.db",
    sweep_name: SweepFilterOption = None,
    state: Annotated[str | None, typer.Option("--status", help="Only this state.")] = None,
    lane: Annotated[str | None, typer.Option(help="Only this lane.")] = None,
    arm: Annotated[str | None, typer.Option(help="Only this arm.")] = None,
    fmt: FormatOption = "table",
    columns: ColumnsOption = None,
) -> None:
    """The recorded runs, filtered.

    Shows each run's id, labels and axis values, status, reason, val_bpb and bytes; what
    does not fit the terminal is named under the table (--columns picks columns).
    """
    from jepardy.store.reader import open_rows
    from jepardy.store.views import empty_selection, require_sweep, select_runs

    check_format(fmt)
    reader = open_rows(db)
    require_sweep(reader, sweep_name)
    frame = select_runs(reader, sweep=sweep_name, status=state, lane=lane, arm=arm)
    if fmt != "table":
        print_frames([("runs", frame)], fmt, wanted_columns(columns))
    elif len(set(frame["sweep"])) > 1:
        for heading, part in _per_sweep(frame):
            # A line, not the table's title: the title would wrap at the table's width.
            console.print(Text(heading, style="bold"))
            console.print(fitted("", part, wanted_columns(columns), RUNS_PRIORITY))
    elif frame["id"]:
        title = f"{len(frame['id'])} runs"
        console.print(fitted(title, frame, wanted_columns(columns), RUNS_PRIORITY))
    else:
        console.print(empty_selection(sweep_name, state, lane, arm), highlight=False)


def _per_sweep(frame: Cells) -> list[tuple[str, Cells]]:
    """Runs of several sweeps, one table per sweep under a line naming it whole: a long
    sweep name (`ingested:<record folder>`) never pushes the values that differ off an
    80-column terminal."""
    parts = []
    for sweep in dict.fromkeys(frame["sweep"]):
        rows = [i for i, name in enumerate(frame["sweep"]) if name == sweep]
        part = {column: [cells[i] for i in rows] for column, cells in frame.items()}
        parts.append((f"sweep {sweep}: {len(rows)} runs", part))
    return parts


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
def diff(
    first: RunIdArg,
    second: RunIdArg,
    db: DbOption = "results.db",
    every: Annotated[
        bool, typer.Option("--all", help="Every field, not only those that differ.")
    ] = False,
) -> None:
    """What differs between two runs.

    Labels, params (as given and as resolved), code hashes, data, runtime and outcome;
    --all adds the fields they share and each attempt's own (times, hosts, jobs).
    """
    from jepardy.analysis.diff import diff_runs
    from jepardy.store.engine import open_reader

    done = diff_runs(open_reader(db), first, second, everything=every)
    if not done.fields:
        console.print(
            f"runs {done.first_id} and {done.second_id} do not differ in labels, params, code, "
            "data, runtime or outcome (--all shows every field)",
            highlight=False,
            soft_wrap=True,
        )
        return
    console.print(_diff_table(done))


def _diff_table(done: RunDiff) -> object:
    from jepardy.analysis import fit

    sections = [f.section for f in done.fields]
    firsts = [i == 0 or sections[i - 1] != s for i, s in enumerate(sections)]
    values = {
        done.first_id: [_shown(f.field, f.first) for f in done.fields],
        done.second_id: [_shown(f.field, f.second) for f in done.fields],
    }
    differ = sum(f.differs for f in done.fields)
    shared = len(done.fields) - differ
    if shared:  # --all: mark the fields that differ among those that do not
        values["differs"] = ["yes" if f.differs else "" for f in done.fields]
    # The field names' room: the width less the section column, the other columns' headers
    # (their cells wrap under them) and the gaps; so long names go over lines, values keep
    # a third of the width or more.
    taken = max(len(s) for s in [*sections, "section"]) + sum(map(len, values))
    room = console.width - taken - fit.GAP * (len(values) + 1)
    longest = max(len(part) for f in done.fields for part in _NAME_PARTS.findall(f.field))
    room = min(room, max(console.width // 3, longest))
    columns = {
        "section": [s if first else "" for s, first in zip(sections, firsts, strict=True)],
        "field": [_name_lines(f.field, room) for f in done.fields],
        **values,
    }
    title = f"{differ} fields differ" + (f", {shared} the same" if shared else "")
    table = fit.rich_table(fit.Grid(title, columns), list(columns), done.notes, wrap=True)
    for column in table.columns[:2]:  # a section or field name is never folded mid-word
        column.no_wrap = True
    for column in table.columns[2:]:  # nor a run id (nor "differs") over its column
        column.min_width = len(str(column.header))
    return table


# A field name's parts, each up to and with its "." or "/" (data.shards.x.bin, code paths);
# a part still too long goes over lines after its "_".
_NAME_PARTS = re.compile(r"[^./]+[./]?|[./]")
_WORDS = re.compile(r"[^_]+_?|_")


def _name_lines(name: str, width: int) -> str:
    """`name` over lines of at most `width`, broken only after a ".", "/" or "_" (a word
    longer than `width` alone on its line)."""
    parts = [
        word
        for part in _NAME_PARTS.findall(name)
        for word in (_WORDS.findall(part) if len(part) > width else [part])
    ]
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _shown(name: str, value: object) -> str:
    import json

    from jepardy.analysis.quantities import format_value

    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return format_value(name.rsplit(".", 1)[-1], value)


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

    if lines < 1:  # a slice from -lines would show all, or all but the first lines
        raise UserError(f"logs: --lines {lines}: must be >= 1 (the lines from each log's end)")
    row = find_run(open_reader(db), run_id, "logs")
    files = log_files(row)
    for path in files:
        console.print(f"==> {path} <==", highlight=False, soft_wrap=True)
        console.print(log_tail(path, lines), highlight=False, soft_wrap=True)
    if not files:
        kept = row["log_tail"] if isinstance(row["log_tail"], str) else ""
        console.print(f"==> run {row['id']}: no log files; the store's tail <==", highlight=False)
        console.print("\n".join(kept.splitlines()[-lines:]), soft_wrap=True)
