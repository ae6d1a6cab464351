"""The live view of a sweep, as a pure function of a snapshot (launch/livesweep.py) and a
width: a header with counts, slots and ETA; a row per running job (label, step of its cap,
elapsed against its budget, last train loss and val_bpb, tokens/s, where it runs); the
latest finished runs with their val_bpb and delta to the control so far, or their one-line
reason. Columns are dropped, least needed first, until the tables fit the width. Also the
plain line of each event, for output that is not a terminal.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from jepardy.launch.eta import eta_s
from jepardy.launch.livesweep import SKIPPED, LiveRun, SweepSnapshot, control_delta
from jepardy.store.states import RunStatus

# Finished runs the view lists (the latest); the summary and `jepardy runs` have the rest.
FINISHED_SHOWN = 8
REASON = "reason"  # the finished runs' column that is cut rather than dropped
REASON_MIN_WIDTH = 16
_FINISHED_WORDS = ("done", "failed", "timeout", "interrupted", "cancelled")
_MEASURE = Console(width=10_000, file=io.StringIO(), markup=False, emoji=False)


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[LiveRun], str]
    drop_rank: int  # columns with the highest rank are dropped first; 0 never
    justify: JustifyMethod = "right"


def clock(seconds: float | None) -> str:
    """m:ss, or h:mm:ss from an hour; "-" when not known."""
    if seconds is None:
        return "-"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _step(run: LiveRun) -> str:
    step = "-" if run.step is None else str(run.step)
    return f"{step}/{run.iterations}" if run.iterations else step


def _elapsed(run: LiveRun, now_s: float) -> str:
    shown = clock(now_s - run.started_s if run.started_s is not None else None)
    return f"{shown}/{clock(run.wallclock_s)}" if run.wallclock_s else shown


def _running_columns(now_s: float) -> list[Column]:
    return [
        Column("run", lambda r: r.label, 0, "left"),
        Column("step", _step, 1),
        Column("time", lambda r: _elapsed(r, now_s), 2),
        Column("loss", lambda r: _number(r.train_loss, ".4f"), 3),
        Column("where", lambda r: r.where, 4, "left"),
        Column("val_bpb", lambda r: _number(r.val_bpb, ".4f"), 5),
        Column("tok/s", lambda r: _number(r.tokens_per_s, ",.0f"), 6),
        Column("id", lambda r: r.run_id, 7, "left"),
    ]


def _finished_columns(runs: list[LiveRun]) -> list[Column]:
    def delta(run: LiveRun) -> str:
        return _number(control_delta(run, runs), "+.4f")

    def result(run: LiveRun) -> str:
        return _number(run.val_bpb, ".4f") if run.status == "done" else run.status

    def took(run: LiveRun) -> str:
        if run.started_s is None or run.ended_s is None:
            return "-"
        return clock(run.ended_s - run.started_s)

    return [
        Column("finished", lambda r: r.label, 0, "left"),
        Column("val_bpb", result, 0),
        Column("vs ctl", delta, 1),
        Column("time", took, 3),
        Column("id", lambda r: r.run_id, 4, "left"),
        Column(REASON, lambda r: r.reason, 0, "left"),
    ]


def fitted_table(columns: list[Column], runs: list[LiveRun], width: int) -> Table:
    """The runs' table with the columns that fit `width` (blank ones left out). A reason
    column is never dropped: it is cut to what is left, with an ellipsis, keeping at least
    REASON_MIN_WIDTH; the first column folds if even the kept ones do not fit."""
    cells = {c.header: [c.cell(r) for r in runs] for c in columns}
    kept = [c for c in columns if any(v not in ("", "-") for v in cells[c.header])]
    while _width(_table(kept, cells, REASON_MIN_WIDTH)) > width and any(c.drop_rank for c in kept):
        kept.remove(max(kept, key=lambda c: c.drop_rank))
    left_for_reason = width - _width(_table(kept, cells, 0))
    return _table(kept, cells, max(REASON_MIN_WIDTH, left_for_reason))


def _table(columns: list[Column], cells: dict[str, list[str]], reason_width: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for i, column in enumerate(columns):
        reason = column.header == REASON
        table.add_column(
            column.header,
            justify=column.justify,
            no_wrap=i > 0,
            overflow="ellipsis" if reason else "fold",
            max_width=reason_width if reason else None,
        )
    for row in zip(*(cells[c.header] for c in columns), strict=True):
        table.add_row(*row)
    return table


def _width(table: Table) -> int:
    return Measurement.get(_MEASURE, _MEASURE.options, table).maximum


def header(snapshot: SweepSnapshot) -> Text:
    """`smoke: 3 done, 1 failed, 2 running, 2 pending of 8 | 2 slots | ETA 1:40`."""
    if not snapshot.runs:
        return Text(f"{snapshot.name}: no runs yet", style="bold")
    counts: dict[str, int] = {}
    for run in snapshot.runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    words = [*_FINISHED_WORDS, "running", "pending", SKIPPED]
    shown = ", ".join(f"{counts.get(w, 0)} {w}" for w in words if counts.get(w) or w == "done")
    parts = [f"{snapshot.name}: {shown} of {len(snapshot.runs)}"]
    if snapshot.slots is not None:
        parts.append(f"{snapshot.slots} slot{'s' if snapshot.slots != 1 else ''}")
    if counts.get("running") or counts.get("pending"):
        parts.append(f"ETA {clock(eta_s(snapshot))}")
    return Text(" | ".join(parts), style="bold")


def render(snapshot: SweepSnapshot, width: int) -> RenderableType:
    """The whole view of `snapshot` at `width` columns."""
    parts: list[RenderableType] = [header(snapshot)]
    running = [r for r in snapshot.runs if r.running]
    if running:
        parts.append(fitted_table(_running_columns(snapshot.now_s), running, width))
    finished = sorted((r for r in snapshot.runs if r.finished), key=lambda r: r.ended_s or 0.0)[
        -FINISHED_SHOWN:
    ]
    if finished:
        parts.append(fitted_table(_finished_columns(snapshot.runs), finished, width))
    return Group(*parts)


def event_line(run: LiveRun, runs: list[LiveRun]) -> str:
    """The one plain line of a run's start or end."""
    if run.running:
        return f"started {run.run_id} {run.label} on {run.where or '?'}"
    took = (
        f" in {clock(run.ended_s - run.started_s)}"
        if run.started_s is not None and run.ended_s is not None
        else ""
    )
    if run.status == RunStatus.DONE.value:
        delta = control_delta(run, runs)
        versus = f" vs control {delta:+.4f}" if delta is not None else ""
        return f"done {run.run_id} {run.label} val_bpb {_number(run.val_bpb, '.4f')}{versus}{took}"
    return f"{run.status} {run.run_id} {run.label}{took}: {run.reason or 'no reason recorded'}"
