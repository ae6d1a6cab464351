"""`run_report`: builds and renders what `jepardy report` asks for (the compare table, or
arms against a leader, curves, horizons, plots) in the terminal, markdown, CSV, JSON or one
HTML file.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Group

from jepardy.analysis import render
from jepardy.analysis.compare import FORMATS, METRICS, compare_table
from jepardy.analysis.compare_render import compare_sections
from jepardy.analysis.matching import MATCH_COLUMNS, MATCH_PARAMS
from jepardy.analysis.render import Section
from jepardy.analysis.rules import RECORD, Rule
from jepardy.analysis.scoring import RESULT_FIELDS as SCORING_FIELDS
from jepardy.analysis.scoring import mixed_scoring, scoring_sections
from jepardy.collector import paused_gc
from jepardy.errors import UserError
from jepardy.store.frames import MIRRORED_PARAMS, RUN_COLUMNS, read_metrics, read_runs, tidy_runs
from jepardy.store.promotions import read_decisions
from jepardy.store.reader import Reader, open_rows
from jepardy.store.states import RunStatus
from jepardy.store.views import require_sweep

if TYPE_CHECKING:
    from jepardy.analysis.curves import Curves
    from jepardy.analysis.horizons import Horizons

# The parts a report may not be asked for (against a leader, curves, horizons, the chain of
# promotions) are imported where they are used: 20 ms of every plain `jepardy report`.


def render_compare(table: pd.DataFrame, fmt: str, rule: Rule = RECORD) -> str | Group:
    """Render a compare_table result.

    "table": a rich Group holding one rich Table per (sweep, lane), titled "sweep / lane"
    (print it with a rich Console). "markdown": GitHub markdown, a "### sweep / lane" heading
    and a table per lane, with the same columns. "csv": every column of `table`, lists as
    JSON. "json": a list of row objects (NaN as null). An unknown `fmt` is a UserError
    listing the allowed values.
    """
    check_format(fmt)
    if fmt in ("csv", "json"):
        return render.frame_text(table, fmt)
    sections = compare_sections(table, rule)
    return render.to_markdown(sections) if fmt == "markdown" else render.to_rich(sections)


def check_format(fmt: str) -> None:
    """UserError unless `fmt` is one of FORMATS."""
    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")


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
    fmt: str = "table"  # one of REPORT_FORMATS
    plot: Path | None = None
    rule: Rule = RECORD  # of the compare table's verdicts (--alpha, --margin, --sided)
    # Sweeps or record folders pooled as the leader; the arms are compared with it by the
    # leaderboard and record rules instead of with their controls.
    against: tuple[str, ...] = ()
    out: Path | None = None  # write the rendered report here instead of returning it
    # First, the runs with health flags (analysis/flags.py): a table of its own in every
    # format (the `health` key of json, a `# health` block of csv), empty when none is.
    health: bool = False


# Every format of the whole report: the table formats, and html (a file: needs `out`).
HTML = "html"
REPORT_FORMATS = (*FORMATS, HTML)


@dataclass(frozen=True)
class Report:
    """The parts of a report that were asked for (None where not)."""

    compare: pd.DataFrame | None
    curves: Curves | None
    horizons: Horizons | None
    against: pd.DataFrame | None = None
    rule: Rule = RECORD
    scoring: pd.DataFrame | None = None  # lanes whose arms were scored differently
    chain: pd.DataFrame | None = None  # the promotions between lanes (analysis/chain.py)
    notes: tuple[str, ...] = ()  # parts the HTML report found no axis for, and why
    health: pd.DataFrame | None = None  # the runs with health flags (analysis/flags.py)


@dataclass(frozen=True)
class ReportOutput:
    """A rendered report (text, or a rich Group for the terminal; "" when written to a
    file), the file written and the plot written."""

    rendered: str | Group
    plot: Path | None
    out: Path | None = None


def check_request(request: ReportRequest) -> None:
    """UserError for a request that cannot be answered, before any database is opened."""
    if request.fmt not in REPORT_FORMATS:
        allowed = ", ".join(REPORT_FORMATS)
        raise UserError(f"unknown report format {request.fmt!r}; allowed: {allowed}")
    if request.fmt == HTML and request.out is None:
        raise UserError("report --format html writes one file: add --out, e.g. --out report.html")
    asked = request.compare or request.curve or request.horizons or request.against
    if not (asked or request.health):
        raise UserError(
            "report: --no-compare and no --curve, --horizons or --health: nothing to report"
        )
    if request.metric not in METRICS:
        raise UserError(f"report: --metric {request.metric!r}; allowed: {', '.join(METRICS)}")
    if request.noise is not None and not request.noise > 0:
        raise UserError(f"report: --noise {request.noise}; a noise floor must be > 0")
    if request.resamples < 0:
        raise UserError(f"report: --resamples {request.resamples}; must be >= 0")
    if request.plot is not None and request.plot.suffix.lower() != ".png":
        raise UserError(f"report: --plot {request.plot}: the plot is written as PNG (*.png)")


def build_report(runs: pd.DataFrame, request: ReportRequest) -> Report:
    """The parts `request` asks for, from a runs frame (any form `tidy_runs` accepts);
    `request.against` holds sweep names here (run_report resolves folders)."""
    tidy = tidy_runs(runs)
    done = tidy[tidy["status"] == RunStatus.DONE.value].reset_index(drop=True)
    against = None
    if request.against:
        from jepardy.analysis.against import RULES, against_table

        # The challenge's two rules, and the one asked for when it is neither (--alpha, ...).
        rules = tuple(dict.fromkeys((*RULES, request.rule))) if request.rule != RECORD else RULES
        against = against_table(tidy, request.against, rules)
    compare = compare_table(tidy, request.rule) if request.compare and against is None else None
    curves = None
    if request.curve:
        from jepardy.analysis.curves import curve_table

        curves = curve_table(
            done,
            request.curve,
            metric=request.metric,
            noise=request.noise,
            resamples=request.resamples,
        )
    horizons = None
    if request.horizons:
        from jepardy.analysis.horizons import horizon_table

        horizons = horizon_table(done, request.horizons, metric=request.metric)
    notes: tuple[str, ...] = ()
    if request.fmt == HTML:  # the page shows the curves and horizons the runs have, unasked
        from jepardy.analysis.found_axes import found_axes

        # Only for the parts the request names no axis for: a named axis keeps its errors.
        found = found_axes(done, request)
        curves = found.curves if curves is None else curves
        horizons = found.horizons if horizons is None else horizons
        notes = found.notes
    scoring = mixed_scoring(tidy) if request.compare else None
    return Report(compare, curves, horizons, against, request.rule, scoring, notes=notes)


def render_report(report: Report, fmt: str) -> str | Group:
    """Every part of `report` in one format (see render_compare for the formats).

    Text formats put the parts one after the other; csv precedes each table with a
    `# name` line; json is one object with a key per part.
    """
    check_format(fmt)
    if fmt in ("csv", "json"):
        return render.frames_text(_frames(report), fmt)
    sections = _sections(report)
    return render.to_markdown(sections) if fmt == "markdown" else render.to_rich(sections)


def _frames(report: Report) -> list[tuple[str, pd.DataFrame]]:
    frames = []
    if report.health is not None:  # first: a run it flags qualifies every table after it
        frames.append(("health", report.health))
    if report.scoring is not None and not report.scoring.empty:
        frames.append(("scored_differently", report.scoring))  # first: it qualifies the rest
    if report.against is not None:
        frames.append(("against", report.against))
    if report.compare is not None:
        frames.append(("compare", report.compare))
    if report.curves is not None:
        frames += [("curves", report.curves.summary), ("curve_points", report.curves.points)]
    if report.chain is not None:
        frames.append(("chain", report.chain))
    if report.horizons is not None:
        frames += [
            ("horizons", report.horizons.arms),
            ("horizon_taus", report.horizons.taus),
            ("horizon_flips", report.horizons.flips),
        ]
    return frames


def _sections(report: Report) -> list[Section]:
    sections = []
    if report.health is not None:
        from jepardy.analysis.flags import health_sections

        sections += health_sections(report.health)
    if report.scoring is not None:
        sections += scoring_sections(report.scoring)
    if report.against is not None:
        from jepardy.analysis.against import against_sections

        sections += against_sections(report.against)
    if report.compare is not None:
        sections += compare_sections(report.compare, report.rule)
    if report.curves is not None:
        from jepardy.analysis.curves import curve_sections

        sections += curve_sections(report.curves)
    if report.chain is not None:
        from jepardy.analysis.chain import chain_sections

        sections += chain_sections(report.chain)
    if report.horizons is not None:
        from jepardy.analysis.horizons import horizon_sections

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
    with contextlib.closing(open_rows(db)) as database:
        require_sweep(database, request.sweep)
        if request.against:
            from jepardy.analysis.against import DATA_PARAMS, leader_sweeps

            known = database.sweep_names()
            leaders = tuple(leader_sweeps(request.against, known, database.name))
            request = replace(request, against=leaders)
            wanted = sorted({*wanted, *DATA_PARAMS})
        # The cyclic GC finds nothing to free in a report (no reference cycles), but the
        # many small lists and tuples it builds trigger full collections: about 0.15 s of 2
        # for 100,000 runs (bench/report.py).
        with paused_gc():
            # The HTML report lists the params each arm changed: every param is read.
            runs = _read(database, request, True if request.fmt == HTML else wanted or False)
            if not other_axes <= set(runs.columns):  # no run has it: the error lists them all
                runs = _read(database, request, True)
            _require_done(runs, f"sweep {request.sweep}" if request.sweep else database.name)
            report = build_report(runs, request)
            report = _with_chain(report, database, request.sweep, runs)
            report = _with_health(report, database, request)
            rendered = (
                _html(database, report, runs)
                if request.fmt == HTML
                else render_report(report, request.fmt)
            )
    plot = None
    if request.plot is not None:
        from jepardy.analysis.plots import plot_report

        plot = plot_report(report.compare, report.curves, report.horizons, request.plot)
    if request.out is None:
        return ReportOutput(rendered, plot)
    request.out.parent.mkdir(parents=True, exist_ok=True)
    request.out.write_text(rendered_text(rendered), encoding="utf-8")
    return ReportOutput("", plot, request.out)


def _html(database: Reader, report: Report, runs: pd.DataFrame) -> str:
    """The HTML page of `report`, with the done runs' training metrics from the store."""
    from jepardy.analysis.htmlreport import html_report
    from jepardy.analysis.training import CLOCK, CURVE_METRICS

    done = runs[runs["status"].astype(str) == RunStatus.DONE.value]
    metrics = read_metrics(database, done["id"].tolist(), [*CURVE_METRICS, CLOCK])
    return html_report(report, runs, metrics, database.name)


def _read(database: Reader, request: ReportRequest, params: list[str] | bool) -> pd.DataFrame:
    """The runs the report reads: the sweep asked for (or all), and the leader's sweeps."""
    sweeps = [request.sweep, *request.against] if request.sweep else [None]
    frames = [
        read_runs(
            database,
            sweep=sweep,
            status=None,
            columns=_report_columns(request),
            params=params,
            # How each run was scored (scoring.mixed_scoring), read by the database.
            result_fields=SCORING_FIELDS if request.compare else (),
        )
        for sweep in dict.fromkeys(sweeps)
    ]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _with_chain(report: Report, database: Reader, sweep: str | None, runs: pd.DataFrame) -> Report:
    """The report with its promotions, when the store recorded any for the sweeps shown."""
    sweeps = [sweep] if sweep else database.sweep_names()
    decisions = [d for name in sweeps for d in read_decisions(database, name).values()]
    if not decisions:
        return report
    from jepardy.analysis.chain import chain_table

    compare = report.compare if report.compare is not None else compare_table(tidy_runs(runs))
    return replace(report, chain=chain_table(decisions, compare))


def _with_health(report: Report, database: Reader, request: ReportRequest) -> Report:
    """The report with the health flags of the sweep's runs (of every sweep without
    --sweep), when asked for: every run with a result, done or not."""
    if not request.health:
        return report
    from jepardy.analysis.flags import health_table

    runs = read_runs(database, sweep=request.sweep, status=None, columns=None, params=False)
    return replace(report, health=health_table(runs, only_flagged=True))


def _report_columns(request: ReportRequest) -> list[str]:
    """The runs columns the asked-for parts read, and no more: the compare table's match
    checks (MATCH_COLUMNS) and the metric of curves and horizons. Each column left in SQL is
    time saved on a 100,000-run store (bench/report.py)."""
    # Not under_cap (tidy_runs recomputes it), nor the run ids but in the HTML report (its
    # training curves are read by run) and the compare table (a re-export's source, by id).
    skipped = ("under_cap",) if request.fmt == HTML or request.compare else ("id", "under_cap")
    columns = [name for name in RUN_COLUMNS if name not in skipped]
    if request.compare:
        columns += [name for name in MATCH_COLUMNS if name not in MIRRORED_PARAMS]
    if request.curve or request.horizons:
        columns.append(request.metric)
    if request.against:  # the metric each run scored (other metric: no verdict)
        columns.append("result")
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
