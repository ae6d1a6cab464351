"""Tables that fit a terminal: packed labels split into one column per axis, and columns
kept by priority with the rest named in a note (numbers come formatted, by
`jepardy.analysis.quantities.format_value`).

A rich table squeezed into a narrow console cuts every cell into "…"; here a table keeps
whole columns, most important first, until the next one would not fit, and says which it
left out. Widths are counted from the cells (no rich layout), so a table of thousands of
rows is fitted at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

# Two spaces between columns: the table style of `rich_table` (no outer edge, no rule
# between columns), and the aligned-text one.
GAP = 2
BLANK = frozenset({"", "—"})
# The width a folded column is counted at when it does not fit whole: a word or two a line.
FOLD_WIDTH = 10

_LABEL_SPLIT = re.compile(r",(?=[A-Za-z_][\w.]*=)")


def label_pairs(label: str) -> dict[str, str]:
    """A packed `variant` or `match` label (`ema=true,jepa_weight=0.1`) as {key: value}."""
    if not label:
        return {}
    pairs = (part.partition("=") for part in _LABEL_SPLIT.split(label))
    return {key: value for key, _, value in pairs}


def splits(labels: Sequence[str]) -> bool:
    """Whether every label is `key=value` pairs: a label that is not (an old re-export's
    `export:int8+zstd19`, an ingested `attempt:2`) keeps its packed column whole, where a
    split would make the text a key with blank values, a column that is never shown."""
    return all("=" in part for label in set(labels) if label for part in _LABEL_SPLIT.split(label))


def axis_columns(labels: Sequence[str]) -> dict[str, list[str]]:
    """One column per key of the packed labels, keys in order of first appearance; blank
    where a row's label lacks the key (a control has no arm axes)."""
    parsed = [label_pairs(label) for label in labels]
    keys = list(dict.fromkeys(key for pairs in parsed for key in pairs))
    return {key: [pairs.get(key, "") for pairs in parsed] for key in keys}


@dataclass(frozen=True)
class Grid:
    """A table as formatted text: `columns[name]` holds its cells, one per row."""

    title: str
    columns: dict[str, list[str]]
    right: frozenset[str] = frozenset()

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()), []))


def split_labels(grid: Grid, packed: Sequence[str]) -> Grid:
    """`grid` with each packed label column replaced, in place, by its axis columns (a key
    that is already a column of its own is left to that column); a column whose labels are
    not all `key=value` pairs (`splits`) is kept as it is."""
    columns: dict[str, list[str]] = {}
    for name, cells in grid.columns.items():
        if name not in packed or not splits(cells):
            columns[name] = cells
            continue
        for key, values in axis_columns(cells).items():
            if key not in grid.columns:
                columns[key] = values
    return Grid(grid.title, columns, grid.right)


def varying_first(grid: Grid, priority: Sequence[str]) -> list[str]:
    """`priority` (then the grid's other columns in order) with the columns whose cells
    differ between rows before those that hold one value: what tells runs apart is shown
    first, what they share is dropped first."""
    names = [*(n for n in priority if n in grid.columns), *grid.columns]
    ordered = list(dict.fromkeys(names))
    varies = {name: len(set(grid.columns[name])) > 1 for name in ordered}
    return [n for n in ordered if varies[n]] + [n for n in ordered if not varies[n]]


def column_width(name: str, cells: Sequence[str]) -> int:
    return max([cell_len(name), *(cell_len(cell) for cell in cells)])


def fit_columns(
    grid: Grid, width: int, priority: Sequence[str] = (), folded: frozenset[str] = frozenset()
) -> tuple[list[str], list[str]]:
    """(kept, hidden): the columns shown at `width` and those left out, each in table order.

    Blank columns are left out and never named. The others are kept in `priority` order
    (the rest of the columns after it, in table order) while they fit; the first column
    of that order is kept even when it alone is too wide. A `folded` column (long labels,
    flags) that does not fit whole counts FOLD_WIDTH wide (or its header's width):
    `rich_table` folds its cells over lines rather than leave it out."""
    filled = [n for n, cells in grid.columns.items() if any(c not in BLANK for c in cells)]
    order = list(dict.fromkeys([*(n for n in priority if n in filled), *filled]))
    widths = {name: column_width(name, grid.columns[name]) for name in order}
    chosen: set[str] = set()
    used = -GAP
    for name in order:
        need = widths[name]
        if name in folded and used + GAP + need > width:
            need = min(need, max(FOLD_WIDTH, cell_len(name)))
        if chosen and used + GAP + need > width:
            continue  # a narrower column later in the order may still fit
        chosen.add(name)
        used += GAP + need
    kept = [n for n in filled if n in chosen]
    return kept, [n for n in filled if n not in chosen]


def hidden_note(hidden: Sequence[str], hint: str) -> str:
    """`3 columns hidden: a, b, c; HINT`, or "" when nothing is hidden."""
    if not hidden:
        return ""
    count = f"{len(hidden)} column{'s' if len(hidden) > 1 else ''}"
    return f"{count} hidden: {', '.join(hidden)}; {hint}"


def rich_table(
    grid: Grid,
    kept: Sequence[str],
    notes: Sequence[str] = (),
    hot: Mapping[int, frozenset[str]] | None = None,
    wrap: bool = False,
    folded: frozenset[str] = frozenset(),
) -> Table:
    """The `kept` columns of `grid` as a rich table that never cuts a cell (nor wraps one,
    unless `wrap`, or the column is `folded`: then a cell too long for its share of the
    width goes on over lines); the cells of row i named in `hot[i]` bold red; `notes` as
    the caption."""
    caption = "\n".join(note for note in notes if note) or None
    table = Table(
        title=grid.title,
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        show_edge=False,
        pad_edge=False,
    )
    for name in kept:
        justify = "right" if name in grid.right else "left"
        no_wrap = not (wrap or name in folded)
        table.add_column(name, justify=justify, no_wrap=no_wrap, overflow="fold")
    flagged = hot or {}
    for i in range(grid.rows):
        marked = flagged.get(i, frozenset())
        table.add_row(
            *(
                Text(grid.columns[n][i], style="bold red") if n in marked else grid.columns[n][i]
                for n in kept
            )
        )
    return table


def choose_columns(grid: Grid, wanted: Sequence[str]) -> list[str]:
    """`--columns`: the named columns in the given order; a name the table lacks is a
    UserError listing the ones it has."""
    from jepardy.errors import UserError

    unknown = [name for name in wanted if name not in grid.columns]
    if unknown:
        raise UserError(
            f"--columns {','.join(wanted)}: no column {unknown[0]!r} in {grid.title}; "
            f"columns: {', '.join(grid.columns)}"
        )
    return list(dict.fromkeys(wanted))
