"""The report as one self-contained HTML file, to open offline or send to a colleague.

A jinja2 template (templates/report.html.j2, inline CSS) lays out the report's tables,
rendered by great_tables from the same Sections as the terminal and markdown tables, and
its pictures as base64 PNG: the forest plot of every arm against its control, the curves
and horizons when asked for, each lane's training curves, and per arm the params it
changed against its control. Nothing is fetched from the network when the file is opened.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jinja2
import pandas as pd
from great_tables import GT, loc, style
from markupsafe import Markup

from jepardy.analysis import plots, render
from jepardy.analysis.compare_render import compare_sections
from jepardy.analysis.curves import curve_sections
from jepardy.analysis.flags import health_sections
from jepardy.analysis.horizons import horizon_sections
from jepardy.analysis.paramdiff import param_differences
from jepardy.analysis.render import Section
from jepardy.analysis.training import MAX_ROWS, training_figures, training_points
from jepardy.errors import UserError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from jepardy.analysis.report import Report

TEMPLATE = "report.html.j2"
WHERE = "the HTML report"  # what a plot's refusal names
# Training curves of more lanes than this make a page nobody scrolls; the rest are named.
MAX_LANES = 12
FLAG_COLOUR = "#c62828"
_BLANK = ("", render.MISSING)
_WRAPPED = {"per seed", "note", "flag", "flags", "flips"}


@dataclass(frozen=True)
class Picture:
    """One embedded PNG, with what it shows."""

    title: str
    png_base64: str
    alt: str
    note: str = ""


@dataclass(frozen=True)
class Part:
    """One part of the page: a heading, pictures, tables (HTML from great_tables) and
    lines of text."""

    anchor: str
    title: str
    pictures: list[Picture]
    tables: list[Markup]
    notes: list[str]


def html_report(
    report: Report,
    runs: pd.DataFrame,
    metrics: pd.DataFrame,
    source: str,
) -> str:
    """The whole page for `report` of the tidy `runs` (every
    param a column), with `metrics`, the runs' metric points (store.frames.read_metrics).
    `source` names the database in the page's header."""
    ids = _TableIds()
    parts = [] if report.health is None else [_health_part(report.health, ids)]
    if report.compare is not None:
        parts.append(_compare_part(report.compare, ids))
    if report.curves is not None or report.horizons is not None or report.notes:
        parts.append(_axes_part(report, ids))
    done = runs[runs["status"].astype(str) == "done"]
    parts.append(_training_part(done, metrics))
    parts.append(_params_part(done, ids))
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("jepardy.analysis", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    sweeps = ", ".join(sorted(done["sweep"].astype(str).unique()))
    return environment.get_template(TEMPLATE).render(
        title=f"jepardy report: {sweeps}",
        source=source,
        done_runs=len(done),
        sweeps=sweeps,
        parts=parts,
    )


class _TableIds:
    """Fixed ids for great_tables (its CSS is scoped by id; a random one would make every
    rendering of the same report differ)."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return f"jepardy-table-{self.count}"


def _health_part(flagged: pd.DataFrame, ids: _TableIds) -> Part:
    (section,) = health_sections(flagged)
    tables = [table_html(section, ids.next())] if section.rows else []
    return Part("health", section.title, [], tables, [])


def _compare_part(compare: pd.DataFrame, ids: _TableIds) -> Part:
    pictures, notes = [], []
    try:
        forest = plots.forest_figure(compare, WHERE)
    except UserError as too_many:  # the tables still say everything
        forest, notes = None, [f"No forest plot: {too_many}"]
    if forest is not None:
        alt = "delta val_bpb of each arm against its matched control, with 95% intervals"
        pictures.append(_picture("Forest plot", forest, alt))
    elif not notes:
        notes = ["No arm has a matched control: no forest plot."]
    tables = [table_html(section, ids.next()) for section in compare_sections(compare)]
    return Part("compare", "Each arm against its matched control", pictures, tables, notes)


def _axes_part(report: Report, ids: _TableIds) -> Part:
    curves, horizons, notes = report.curves, report.horizons, list(report.notes)
    if curves is None and horizons is None:  # only why the runs gave none
        return Part("axes", "Curves and horizons", [], [], notes)
    sections: list[Section] = []
    if curves is not None:
        sections += curve_sections(curves)
    if horizons is not None:
        sections += horizon_sections(horizons)
    axes = " and ".join(
        f"{name} {part.axis}"
        for name, part in (("curves over", curves), ("horizons over", horizons))
        if part is not None
    )
    tables = [table_html(section, ids.next()) for section in sections]
    try:
        figure = plots.panels_figure(curves, horizons, WHERE)
    except UserError as too_many:
        return Part("axes", axes.capitalize(), [], tables, [*notes, f"No plot: {too_many}"])
    picture = _picture(axes.capitalize(), figure, f"{axes}, means with 95% intervals")
    return Part("axes", axes.capitalize(), [picture], tables, notes)


def _training_part(done: pd.DataFrame, metrics: pd.DataFrame) -> Part:
    points = training_points(done, metrics)
    lanes = points[["sweep", "lane"]].astype(str).drop_duplicates()
    shown = lanes.head(MAX_LANES).merge(points.astype({"sweep": str, "lane": str}))
    pictures = []
    for title, figure, left_out in training_figures(shown):
        note = f"{left_out} more matches of this lane not drawn (at most {MAX_ROWS})"
        alt = f"training curves of {title}: train loss and val_bpb over steps and time"
        pictures.append(_picture(title, figure, alt, note if left_out else ""))
    notes = [
        "Each line is an arm's mean over its seeds, the band its lowest to highest seed; "
        "time is the training clock (evaluations excluded)."
    ]
    if len(lanes) > MAX_LANES:
        notes.append(f"The first {MAX_LANES} lanes of {len(lanes)}; narrow with --sweep.")
    if not pictures:
        notes = ["No training metrics recorded for these runs (metrics.jsonl was empty)."]
    return Part("training", "Training curves", pictures, [], notes)


def _params_part(done: pd.DataFrame, ids: _TableIds) -> Part:
    differences = param_differences(done)
    if differences.empty:
        return Part("params", "What each arm changed", [], [], ["No arm differs from a control."])
    labels = [
        f"{row['sweep']} / {row['lane']} / {row['match']}: {row['arm']} {row['variant']}".strip()
        for row in differences.to_dict("records")
    ]
    frame = differences[["param", "control", "value"]].assign(arm=labels)
    table = GT(frame, groupname_col="arm", id=ids.next(), auto_align=False)
    table = _sized(table.tab_header(title="Params that differ from the matched control"))
    table = table.cols_align("left")  # values as a spec writes them: text, not numbers
    return Part("params", "What each arm changed", [], [Markup(table.as_raw_html())], [])


def table_html(section: Section, table_id: str) -> Markup:
    """A Section as a great_tables table: its title, columns blank in every row left out,
    numbers right-aligned, flagged cells bold red, notes under it."""
    frame = pd.DataFrame(section.rows, columns=section.columns, dtype=str)
    frame = frame.loc[:, ~frame.isin(_BLANK).all()]
    table = _sized(GT(frame, id=table_id, auto_align=False).tab_header(title=section.title))
    right = [name for name in frame.columns if name in section.right]
    table = table.cols_align("left", columns=[n for n in frame.columns if n not in right])
    if right:
        table = table.cols_align("right", columns=right)
    # A number broken over lines reads as two; long text columns may wrap.
    whole = [name for name in frame.columns if name not in _WRAPPED]
    table = table.tab_style(style.css("white-space: nowrap"), loc.body(columns=whole))
    for row, names in enumerate(section.flagged):
        shown = [name for name in names if name in frame.columns]
        if shown:
            table = table.tab_style(
                style.text(color=FLAG_COLOUR, weight="bold"), loc.body(columns=shown, rows=[row])
            )
    table = _verdict_colours(table, frame)
    for note in section.notes:
        table = table.tab_source_note(note)
    return Markup(table.as_raw_html())


def _sized(table: GT) -> GT:
    """Every table of the page in one size, smaller than great_tables' default."""
    return table.tab_options(table_font_size="13px", heading_title_font_size="16px")


def _verdict_colours(table: GT, frame: pd.DataFrame) -> GT:
    """Verdict cells in the forest plot's colours."""
    if "verdict" not in frame.columns:
        return table
    for verdict, colour in plots.VERDICT_COLOURS.items():
        rows = frame.index[frame["verdict"] == verdict].tolist()
        if rows:
            table = table.tab_style(
                style.text(color=colour, weight="bold"), loc.body(columns="verdict", rows=rows)
            )
    return table


def _picture(title: str, figure: Figure, alt: str, note: str = "") -> Picture:
    png = plots.png_bytes(figure)
    return Picture(title, base64.b64encode(png).decode("ascii"), alt, note)
