"""Report sections (a titled table of formatted cells) rendered as rich tables or markdown,
and the number formats every report table shares.

Each report part (compare, curves, horizons) turns its DataFrame into `Section`s; this
module knows nothing of statistics. CSV and JSON are written from the DataFrames themselves
(see jepardy.analysis.report), so no number is lost to formatting there.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.text import Text

from jepardy.analysis import fit
from jepardy.trainer.config import ARTIFACT_CAP_BYTES

MISSING = "—"
OVER_CAP = "OVER CAP"


@dataclass(frozen=True)
class Section:
    """One titled table: `rows` of formatted cells under `columns`.

    `flagged[i]` holds the column names of row i to highlight (over the cap, a flip);
    markdown shows the flag through the cell's own text. `notes` are lines printed under the
    table (verdicts, how noise was judged).
    """

    title: str
    columns: list[str]
    rows: list[list[str]]
    right: frozenset[str] = frozenset()
    flagged: list[frozenset[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # In the terminal: columns of packed `k=v,k=v` labels (match, variant), shown as one
    # column per axis; the columns kept first when not all fit (then the others); and
    # columns of long text (labels, flags) folded over lines rather than left out.
    packed: frozenset[str] = frozenset()
    priority: tuple[str, ...] = ()
    folded: frozenset[str] = frozenset()


# A rich Table costs about 2 ms a row to lay out (bench/report.py: over two minutes for
# the 40,000 rows of a 100,000-run report); a report longer than this is printed as
# aligned text instead, with the same columns and flags.
RICH_TABLE_MAX_ROWS = 2_000
# What a report says when the terminal is too narrow for some columns.
HIDDEN_HINT = "a wider terminal or --format markdown shows them"


def to_rich(sections: Sequence[Section], hint: str = HIDDEN_HINT) -> Group:
    """A rich Group of one Table per section, titled `section.title`, notes as its caption,
    each fitted to the console's width (see `FittedSection`; `hint`: how to see the columns
    left out, in the command's own options); when the sections hold more than
    RICH_TABLE_MAX_ROWS rows in all, every one is aligned text. Flagged cells are bold red
    either way."""
    if sum(len(section.rows) for section in sections) <= RICH_TABLE_MAX_ROWS:
        return Group(*(FittedSection(section, hint) for section in sections))
    return Group(*(_aligned_text(s) if s.rows else _empty_text(s) for s in sections))


@dataclass(frozen=True)
class FittedSection:
    """A section rendered as a rich Table that fits the console's width: its packed label
    columns split into one column per axis, then whole columns kept by the section's
    priority while they fit, those left out named under it (`jepardy.analysis.fit`). A
    squeezed table would cut numbers into "…"; a kept column always shows every digit."""

    section: Section
    hint: str = HIDDEN_HINT

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        section = self.section
        if not section.rows:  # a table without rows would print nothing, not even its title
            yield _empty_text(section)
            return
        grid = fit.Grid(section.title, dict(zip(section.columns, _cells(section), strict=True)))
        split = fit.split_labels(grid, list(section.packed))
        axes = [name for name in split.columns if name not in grid.columns]
        grid = fit.Grid(section.title, split.columns, section.right)
        order = [*axes, *section.priority]
        kept, hidden = fit.fit_columns(grid, options.max_width, order, section.folded)
        notes = [*section.notes, fit.hidden_note(hidden, self.hint)]
        hot = dict(enumerate(section.flagged))
        yield fit.rich_table(grid, kept, notes, hot, folded=section.folded)


def _empty_text(section: Section) -> Text:
    """A section without rows: its title (bold), then its notes."""
    text = Text("\n".join([section.title, *section.notes]))
    text.stylize("bold", 0, len(section.title))
    return text


def _cells(section: Section) -> list[list[str]]:
    """The section's cells column by column."""
    if not section.rows:
        return [[] for _ in section.columns]
    return [list(column) for column in zip(*section.rows, strict=True)]


def _aligned_text(section: Section) -> Text:
    """A section as a title line, a header, and one line per row, columns padded to width
    (columns blank in every row left out, as in the table)."""
    keep = _kept_columns(section)
    columns = [section.columns[i] for i in keep]
    rows = [[row[i] for i in keep] for row in section.rows]
    widths = [len(name) for name in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    right = [name in section.right for name in columns]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(cells, widths, right, strict=True)
        )
        return "  ".join(padded).rstrip()

    head = [section.title, line(columns), line(["-" * w for w in widths])]
    body = [line(row) for row in rows]
    text = Text("\n".join([*head, *body, *section.notes]), no_wrap=True, overflow="ignore")
    text.stylize("bold", 0, len(head[0]))
    # Style only the flagged cells: their offsets follow from the fixed column widths.
    starts = list(itertools.accumulate([0, *(w + 2 for w in widths[:-1])]))
    index = {name: i for i, name in enumerate(columns)}
    offset = sum(len(h) + 1 for h in head)
    for i, body_line in enumerate(body):
        for name in section.flagged[i] if i < len(section.flagged) else ():
            start = offset + starts[index[name]]
            end = min(start + widths[index[name]], offset + len(body_line))  # right-stripped
            text.stylize("bold red", start, end)
        offset += len(body_line) + 1
    return text


def _kept_columns(section: Section) -> list[int]:
    """Indices of the columns with a value in some row: terminal output leaves blank ones
    out, so it fits a terminal (markdown and csv keep every column)."""
    return [
        i
        for i in range(len(section.columns))
        if any(row[i] not in fit.BLANK for row in section.rows)
    ]


def to_markdown(sections: Sequence[Section]) -> str:
    """GitHub markdown: per section a `### title` heading, the table, then its notes."""
    return "\n".join(_markdown(section) for section in sections)


def _markdown(section: Section) -> str:
    lines = [f"### {section.title}"]
    if section.rows:  # a section without rows is its heading (and notes) alone
        lines += ["", _md_line(section.columns), _md_line(["---"] * len(section.columns))]
        lines += _md_rows(section.rows, len(section.columns))
    if section.notes:
        lines += ["", *(f"- {note}" for note in section.notes)]
    return "\n".join([*lines, ""])


def _md_rows(rows: Sequence[Sequence[str]], width: int) -> list[str]:
    """`_md_line` of every row, joined as one text and split once: when no cell holds a
    pipe or a line break (counted over the whole text), no cell needs escaping."""
    body = "\n".join(map(" | ".join, rows))
    if body.count("|") != len(rows) * (width - 1) or body.count("\n") != max(len(rows) - 1, 0):
        return [_md_line(row) for row in rows]
    return f"| {body} |".replace("\n", " |\n| ").split("\n") if rows else []


def _md_line(cells: Sequence[str]) -> str:
    line = " | ".join(cells)
    if line.count("|") != len(cells) - 1:  # a cell holds a pipe: escape cell by cell
        line = " | ".join(cell.replace("|", "\\|") for cell in cells)
    return f"| {line} |"


# --- machine-readable: every column, no number lost to formatting ---


def frame_text(frame: pd.DataFrame, fmt: str) -> str:
    """A frame as CSV (list cells as JSON text) or as a JSON list of objects."""
    if fmt == "json":
        return json.dumps(frame_records(frame), indent=2) + "\n"
    lists = [
        name
        for name in frame.columns
        if frame[name].dtype == object and frame[name].map(_is_list).any()
    ]
    flat = frame.assign(**{name: frame[name].map(json.dumps) for name in lists})
    return flat.to_csv(index=False)


def frames_text(frames: Sequence[tuple[str, pd.DataFrame]], fmt: str) -> str:
    """Several named frames: JSON, one object with a key per frame; CSV, each table after a
    `# name` line (one frame alone: its CSV only)."""
    if fmt == "json":
        return json.dumps({name: frame_records(frame) for name, frame in frames}, indent=2) + "\n"
    if len(frames) == 1:
        return frame_text(frames[0][1], "csv")
    return "\n".join(f"# {name}\n{frame_text(frame, 'csv')}" for name, frame in frames)


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Row objects with JSON types: NaN and NA as null, numpy scalars as Python numbers."""
    return json.loads(frame.to_json(orient="records", double_precision=15))


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


# --- number formats shared by every table ---


def format_bpb(mean: float, std: float, n: int) -> str:
    """`1.2345 ± 0.0012 (n=2)`; the ± part is left out when std is undefined (n == 1)."""
    if pd.isna(mean):
        return MISSING
    spread = "" if pd.isna(std) else f" ± {std:.4f}"
    return f"{mean:.4f}{spread} (n={n})"


def format_delta(value: float, std: float = math.nan) -> str:
    """Signed, four decimals: `+0.0012`, `-0.0030 ± 0.0004`; a dash when undefined."""
    if pd.isna(value):
        return MISSING
    # Adding 0.0 turns -0.0 into 0.0, so an exact tie prints +0.0000.
    spread = "" if pd.isna(std) else f" ± {std:.4f}"
    return f"{value + 0.0:+.4f}{spread}"


def format_p(p: float, adjusted: float = math.nan) -> str:
    """`0.0123`, `<0.0001`, with `(Holm 0.0369)` beside when an adjusted value is given."""
    if pd.isna(p):
        return MISSING
    text = _p(p)
    if not pd.isna(adjusted) and adjusted != p:
        text += f" (Holm {_p(adjusted)})"
    return text


def _p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def format_bytes(value: Any, over: int = 0, n: int = 0) -> str:
    """Thousands separators, and `OVER CAP` past ARTIFACT_CAP_BYTES; with `n` > 1 runs the
    flag says how many of them are over (`OVER CAP (1/2)`)."""
    if pd.isna(value):
        return MISSING
    if not over_cap(value):
        return f"{int(value):,}"
    share = f" ({over}/{n})" if n > 1 and over else ""
    return f"{int(value):,} {OVER_CAP}{share}"


def over_cap(value: Any) -> bool:
    """Known to be over the cap (an unknown size is not flagged; under_cap is <NA>)."""
    return not pd.isna(value) and value > ARTIFACT_CAP_BYTES


def format_number(value: Any) -> str:
    """An axis value as written in a spec: `0.15`, `180`, not `0.15000000000000002`."""
    if value is None or value is pd.NA or value != value:
        return MISSING
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def format_seed_values(seeds: Sequence[int], values: Sequence[float]) -> str:
    """Every seed's value, `1: 1.2000, 2: 1.2200`: nothing hides behind a mean."""
    return ", ".join(map("{}: {:.4f}".format, seeds, values))


# --- whole columns at once: reports of 100,000 runs format tens of thousands of rows ---
# Each formatter formats every row with one C-level `%` over the whole column (a Python
# loop with an f-string per cell costs several times more), then patches the few rows that
# need another form (missing values, n = 1, tiny p-values).

Column = Sequence[Any] | np.ndarray


def column(frame: pd.DataFrame, name: str) -> Any:
    """A column for the formatters below: numbers as a float64 array (NaN where missing,
    pd.NA included), anything else as a list of values (None where missing)."""
    values = frame[name]
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    # to_numpy first: iterating a pandas string array element by element is slow.
    return [None if v is pd.NA else v for v in values.to_numpy(dtype=object).tolist()]


def texts(frame: pd.DataFrame, name: str) -> list[str]:
    """A column as strings (str() of each value)."""
    values = frame[name]
    if isinstance(values.dtype, pd.CategoricalDtype) and not values.isna().any():
        # str() of each category once, then taken by code: tens of thousands of rows share
        # a few hundred keys.
        names = np.array([str(v) for v in values.cat.categories.tolist()], dtype=object)
        return names[values.cat.codes.to_numpy()].tolist()
    return [str(v) for v in values.to_numpy(dtype=object).tolist()]


def _bulk(fmt: str, *columns: Column) -> list[str]:
    """`fmt % row` for every row of `columns`, in one formatting call."""
    arrays = [np.asarray(c, dtype=np.float64) for c in columns]
    if not len(arrays[0]):
        return []
    flat = np.column_stack(arrays).ravel().tolist()
    return ((fmt + "\x00") * len(arrays[0]) % tuple(flat)).split("\x00")[:-1]


def _patch(cells: list[str], where: np.ndarray, fmt: str, *columns: Column) -> None:
    """Re-format the rows `where` (a bool mask) with `fmt`, in place."""
    for i in np.flatnonzero(where).tolist():
        cells[i] = fmt % tuple(float(c[i]) for c in columns) if fmt != MISSING else MISSING


def _either(
    where: np.ndarray,
    fmt: str,
    columns: Sequence[Column],
    otherwise: str,
    other_columns: Sequence[Column],
) -> list[str]:
    """`fmt` of `columns` in the rows `where` (a bool mask), `otherwise` of `other_columns`
    elsewhere: one bulk call when every row takes the same form (a column of single-seed
    points has no spread at all), patching row by row only a mixed column."""
    if where.all():
        return _bulk(fmt, *columns)
    cells = _bulk(otherwise, *other_columns)
    _patch(cells, where, fmt, *columns)
    return cells


def bpb_column(means: Column, stds: Column, ns: Column, with_n: bool = True) -> list[str]:
    """format_bpb over columns; without `with_n`, `1.2345 ± 0.0012` only."""
    mean, std, n = (np.asarray(c, dtype=np.float64) for c in (means, stds, ns))
    suffix = " (n=%d)" if with_n else ""
    spread, single = ((mean, std, n), (mean, n)) if with_n else ((mean, std), (mean,))
    cells = _either(np.isnan(std), "%.4f" + suffix, single, "%.4f ± %.4f" + suffix, spread)
    _patch(cells, np.isnan(mean), MISSING)
    return cells


def delta_column(values: Column, stds: Column) -> list[str]:
    """format_delta over columns."""
    # Adding 0.0 turns -0.0 into 0.0, so an exact tie prints +0.0000.
    value, std = np.asarray(values, dtype=np.float64) + 0.0, np.asarray(stds, dtype=np.float64)
    cells = _either(np.isnan(std), "%+.4f", (value,), "%+.4f ± %.4f", (value, std))
    _patch(cells, np.isnan(value), MISSING)
    return cells


def p_column(values: Column, adjusted: Column) -> list[str]:
    """format_p over columns."""
    p, a = np.asarray(values, dtype=np.float64), np.asarray(adjusted, dtype=np.float64)
    cells = _p_texts(p)
    holm = ~np.isnan(p) & ~np.isnan(a) & (a != p)
    if holm.any():
        a_texts = _p_texts(a)
        for i in np.flatnonzero(holm).tolist():
            cells[i] = f"{cells[i]} (Holm {a_texts[i]})"
    return cells


def _p_texts(p: np.ndarray) -> list[str]:
    cells = _bulk("%.4f", p)
    for i in np.flatnonzero(p < 1e-4).tolist():
        cells[i] = "<0.0001"
    _patch(cells, np.isnan(p), MISSING)
    return cells


def bytes_column(sizes: Column, over: Column, ns: Column) -> list[str]:
    """format_bytes over columns."""
    size = np.asarray(sizes, dtype=np.float64)
    cells = [MISSING if v != v else f"{int(v):,}" for v in size.tolist()]
    for i in np.flatnonzero(size > ARTIFACT_CAP_BYTES).tolist():
        cells[i] = format_bytes(size[i], int(over[i]), int(ns[i]))
    return cells


def interval_column(lows: Column, highs: Column) -> list[str]:
    """`[1.2345, 1.2456]` per row; a dash where undefined (n = 1)."""
    low, high = np.asarray(lows, dtype=np.float64), np.asarray(highs, dtype=np.float64)
    cells = _bulk("[%.4f, %.4f]", low, high)
    _patch(cells, np.isnan(low), MISSING)
    return cells


def seed_values_column(seeds: Sequence[Any], values: Sequence[Any]) -> list[str]:
    """format_seed_values over columns: every `seed: value` pair in one formatting call
    (as `_bulk`), then joined per row."""
    flat_seeds = list(itertools.chain.from_iterable(seeds))
    if set(map(type, flat_seeds)) - {int}:  # "%d" would differ from "{}"
        return [format_seed_values(s, v) for s, v in zip(seeds, values, strict=True)]
    flat = list(itertools.chain.from_iterable(values))
    both = tuple(itertools.chain.from_iterable(zip(flat_seeds, flat, strict=True)))
    pairs = ("%d: %.4f\x00" * len(flat) % both).split("\x00")
    bounds = list(itertools.accumulate((len(s) for s in seeds), initial=0))
    return [", ".join(pairs[start:end]) for start, end in itertools.pairwise(bounds)]


def number_column(values: Column) -> list[str]:
    """format_number over a column."""
    return [format_number(value) for value in np.asarray(values, dtype=np.float64).tolist()]


def blocks(keys: Sequence[Any]) -> list[tuple[Any, slice]]:
    """Runs of equal consecutive keys, as (key, slice) in order."""
    out: list[tuple[Any, slice]] = []
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            out.append((keys[start], slice(start, i)))
            start = i
    return out
