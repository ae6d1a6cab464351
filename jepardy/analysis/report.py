"""`run_report`: builds and renders what `jepardy report` asks for (the compare table,
curves, horizons, plots) in the terminal, markdown, CSV or JSON.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Group

from jepardy.analysis import render
from jepardy.analysis.compare import (
    FORMATS,
    MATCH_COLUMNS,
    MATCH_PARAMS,
    METRICS,
    compare_sections,
    compare_table,
)
from jepardy.analysis.curves import Curves, curve_sections, curve_table
from jepardy.analysis.horizons import Horizons, horizon_sections, horizon_table
from jepardy.analysis.render import Section
from jepardy.analysis.summary import paused_gc
from jepardy.errors import UserError
from jepardy.store.engine import open_reader
from jepardy.store.frames import MIRRORED_PARAMS, RUN_COLUMNS, read_runs, tidy_runs
from jepardy.store.models import RunStatus
from jepardy.store.views import require_sweep


def render_compare(table: pd.DataFrame, fmt: str) -> str | Group:
    """Render a compare_table result.

    "table": a rich Group holding one rich Table per (sweep, lane), titled "sweep / lane"
    (print it with a rich Console). "markdown": GitHub markdown, a "### sweep / lane" heading
    and a table per lane, with the same columns. "csv": every column of `table`, lists as
    JSON. "json": a list of row objects (NaN as null). An unknown `fmt` is a UserError
    listing the allowed values.
    """
    check_format(fmt)
    if fmt in ("csv", "json"):
        return _frame_text(table, fmt)
    sections = compare_sections(table)
    return render.to_markdown(sections) if fmt == "markdown" else render.to_rich(sections)


def check_format(fmt: str) -> None:
    """UserError unless `fmt` is one of FORMATS."""
    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")


def _frame_text(frame: pd.DataFrame, fmt: str) -> str:
    """A frame as CSV (list cells as JSON text) or as a JSON list of objects."""
    if fmt == "json":
        return json.dumps(_records(frame), indent=2) + "\n"
    lists = [
        name
        for name in frame.columns
        if frame[name].dtype == object and frame[name].map(_is_list).any()
    ]
    flat = frame.assign(**{name: frame[name].map(json.dumps) for name in lists})
    return flat.to_csv(index=False)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Row objects with JSON types: NaN and NA as null, numpy scalars as Python numbers."""
    return json.loads(frame.to_json(orient="records", double_precision=15))


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


# --- the whole report ---


@dataclass(frozen=True)
class ReportRequest:
    """What `jepardy report` was asked for (see `run_report`)."""

    sweep: str | None = None
    compare: bool = True
    curve: str | None = None  # a numeric param: the curve's x axis
    horizons: str | None = None  # a numeric param: the budget axis
    metric: str = "val_bpb"  # of curves and horizons; compare always tests val_bpb
    noise: float | None = None  # noise floor of single-seed curves, in metric units
    resamples: int = 0  # parametric-bootstrap resamples of the curves' monotonicity test
    fmt: str = "table"
    plot: Path | None = None


@dataclass(frozen=True)
class Report:
    """The parts of a report that were asked for (None where not)."""

    compare: pd.DataFrame | None
    curves: Curves | None
    horizons: Horizons | None


@dataclass(frozen=True)
class ReportOutput:
    """A rendered report (text, or a rich Group for the terminal) and the plot written."""

    rendered: str | Group
    plot: Path | None


def check_request(request: ReportRequest) -> None:
    """UserError for a request that cannot be answered, before any database is opened."""
    check_format(request.fmt)
    if not (request.compare or request.curve or request.horizons):
        raise UserError("report: --no-compare and no --curve or --horizons: nothing to report")
    if request.metric not in METRICS:
        raise UserError(f"report: --metric {request.metric!r}; allowed: {', '.join(METRICS)}")
    if request.noise is not None and not request.noise > 0:
        raise UserError(f"report: --noise {request.noise}; a noise floor must be > 0")
    if request.resamples < 0:
        raise UserError(f"report: --resamples {request.resamples}; must be >= 0")
    if request.plot is not None and not (request.curve or request.horizons):
        raise UserError("report: --plot draws curves and horizons; add --curve or --horizons")
    if request.plot is not None and request.plot.suffix.lower() != ".png":
        raise UserError(f"report: --plot {request.plot}: the plot is written as PNG (*.png)")


def build_report(runs: pd.DataFrame, request: ReportRequest) -> Report:
    """The parts `request` asks for, from a runs frame (any form `tidy_runs` accepts)."""
    tidy = tidy_runs(runs)
    done = tidy[tidy["status"] == RunStatus.DONE.value].reset_index(drop=True)
    compare = compare_table(tidy) if request.compare else None
    curves = None
    if request.curve:
        curves = curve_table(
            done,
            request.curve,
            metric=request.metric,
            noise=request.noise,
            resamples=request.resamples,
        )
    horizons = None
    if request.horizons:
        horizons = horizon_table(done, request.horizons, metric=request.metric)
    return Report(compare, curves, horizons)


def render_report(report: Report, fmt: str) -> str | Group:
    """Every part of `report` in one format (see render_compare for the formats).

    Text formats put the parts one after the other; csv precedes each table with a
    `# name` line; json is one object with a key per part.
    """
    check_format(fmt)
    frames = _frames(report)
    if fmt == "json":
        return json.dumps({name: _records(frame) for name, frame in frames}, indent=2) + "\n"
    if fmt == "csv":
        if len(frames) == 1:
            return _frame_text(frames[0][1], "csv")
        return "\n".join(f"# {name}\n{_frame_text(frame, 'csv')}" for name, frame in frames)
    sections = _sections(report)
    return render.to_markdown(sections) if fmt == "markdown" else render.to_rich(sections)


def _frames(report: Report) -> list[tuple[str, pd.DataFrame]]:
    frames = []
    if report.compare is not None:
        frames.append(("compare", report.compare))
    if report.curves is not None:
        frames += [("curves", report.curves.summary), ("curve_points", report.curves.points)]
    if report.horizons is not None:
        frames += [
            ("horizons", report.horizons.arms),
            ("horizon_taus", report.horizons.taus),
            ("horizon_flips", report.horizons.flips),
        ]
    return frames


def _sections(report: Report) -> list[Section]:
    sections = []
    if report.compare is not None:
        sections += compare_sections(report.compare)
    if report.curves is not None:
        sections += curve_sections(report.curves)
    if report.horizons is not None:
        sections += horizon_sections(report.horizons)
    return sections


def run_report(db: str | Path, request: ReportRequest) -> ReportOutput:
    """Load the done runs of `db`, build and render the report, write the plot if asked.

    A SQLite path that does not exist is a UserError (a report never creates a database).
    """
    check_request(request)
    if "://" not in str(db) and not Path(db).exists():
        raise UserError(f"report: database {db} does not exist; run a sweep first or pass --db")
    # The typed copies of jepa_weight, ema and wallclock_s need no JSON: unless an axis is
    # another param, the params column is not even read (a third of the load time of
    # 100,000 runs, bench/report.py).
    other_axes = {request.curve, request.horizons} - {None, *MIRRORED_PARAMS}
    # Compare checks that arm and control ran the same code, data and budget (MATCH_*).
    wanted = sorted(other_axes | (set(MATCH_PARAMS) if request.compare else set()))
    # The cyclic GC finds nothing to free in a report (no reference cycles), but the many
    # small lists and tuples it builds trigger full collections: about 0.15 s of 2 for
    # 100,000 runs (bench/report.py).
    database = open_reader(db)
    require_sweep(database, request.sweep)
    with paused_gc():
        runs = read_runs(
            database,
            sweep=request.sweep,
            status=None,
            columns=_report_columns(request),
            params=wanted or False,
        )
        _require_done(runs, f"sweep {request.sweep}" if request.sweep else database.name)
        report = build_report(runs, request)
        rendered = render_report(report, request.fmt)
    plot = None
    if request.plot is not None:
        from jepardy.analysis.plots import plot_report

        plot = plot_report(report.curves, report.horizons, request.plot)
    return ReportOutput(rendered, plot)


def _report_columns(request: ReportRequest) -> list[str]:
    """The runs columns the asked-for parts read, and no more: the compare table's match
    checks (MATCH_COLUMNS) and the metric of curves and horizons. Each column left in SQL is
    time saved on a 100,000-run store (bench/report.py)."""
    # Not the run ids (no part shows them), nor under_cap (tidy_runs recomputes it).
    columns = [name for name in RUN_COLUMNS if name not in ("id", "under_cap")]
    if request.compare:
        columns += [name for name in MATCH_COLUMNS if name not in MIRRORED_PARAMS]
    if request.curve or request.horizons:
        columns.append(request.metric)
    return list(dict.fromkeys(columns))


def _require_done(runs: pd.DataFrame, where: str) -> None:
    """UserError when no run is done: every part of the report would be empty. Says how many
    runs there are in each state instead."""
    counts = runs["status"].astype(str).value_counts()
    if counts.get(RunStatus.DONE.value, 0):
        return
    states = ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "no runs"
    raise UserError(f"report: no done runs in {where} ({states}); nothing to report yet")


def rendered_text(rendered: str | Group, width: int = 200) -> str:
    """A rendered report as plain text (a rich Group printed without colour)."""
    if isinstance(rendered, str):
        return rendered
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(rendered)
    return console.file.getvalue()
