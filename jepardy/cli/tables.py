"""Tables of runs in the terminal (`runs`, `status`, `plan`, `report --health`), or as CSV
or JSON with every column.

In the terminal: numbers in their quantity's one format, the packed `variant` and `match`
labels as one column per axis, short headers for long column names, and whole columns kept
by priority (those whose values differ between rows first) while they fit the terminal,
the rest named under the table. `--columns` picks and orders them instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jepardy.analysis import fit
from jepardy.analysis.quantities import format_value, is_missing
from jepardy.cli.output import console
from jepardy.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

# A table as cells by column (jepardy.store.views), or a DataFrame.
Cells = dict[str, list[Any]]

FORMATS = ("table", "csv", "json")
FormatOption = Annotated[
    str, typer.Option("--format", help="table | csv | json (csv, json: every column).")
]
ColumnsOption = Annotated[
    str | None,
    typer.Option(help="Columns to show, in order, e.g. id,arm,val_bpb (names as in csv)."),
]
PACKED = ("variant", "match")
# Headers in the terminal for columns whose names are much wider than their values.
SHORT = {
    "artifact_bytes": "bytes",
    "train_time_s": "train_s",
    "heartbeat_age_s": "beat_age_s",
    "executor": "exec",
}
HINT = "--columns to choose"


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown format; allowed: {', '.join(FORMATS)}")


def wanted_columns(columns: str | None) -> list[str]:
    """`--columns a,b,c` as names; none given: an empty list (every column, by priority)."""
    return [name.strip() for name in (columns or "").split(",") if name.strip()]


def print_frames(
    frames: Sequence[tuple[str, pd.DataFrame | Cells]],
    fmt: str = "table",
    columns: Sequence[str] = (),
    priority: Sequence[str] = (),
) -> None:
    """Each (title, frame): a fitted table, or all of them as CSV or JSON (`--columns`
    selects there too, from the frame's own columns and the axis columns)."""
    check_format(fmt)
    if fmt == "table":
        for title, frame in frames:
            console.print(fitted(title, frame, columns, priority))
        return

    from jepardy.analysis.render import frame_text, frames_text

    chosen = [
        (title, select_columns(title, with_axes(cells_frame(frame)), columns))
        for title, frame in frames
    ]
    # One table: a plain CSV, or a JSON list of rows; several: one block or key per table.
    text = frame_text(chosen[0][1], fmt) if len(chosen) == 1 else frames_text(chosen, fmt)
    console.file.write(text)


def with_axes(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with one text column per axis of its packed labels after them (a key that is
    a column already is left to it; labels that are not all `key=value` pairs add none)."""
    out = frame.copy()
    for name in PACKED:
        labels = frame[name].astype(str).tolist() if name in frame.columns else []
        if not labels or not fit.splits(labels):
            continue
        for key, values in fit.axis_columns(labels).items():
            if key not in out.columns:
                out[key] = values
    return out


def select_columns(title: str, frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`--columns` of a frame for CSV or JSON (every column when none are named)."""
    if not columns:
        return frame
    grid = fit.Grid(title, {str(name): [] for name in frame.columns})
    return frame[fit.choose_columns(grid, columns)]


def frame_grid(title: str, frame: pd.DataFrame | Cells, split: bool = True) -> fit.Grid:
    """`frame` as formatted text, packed labels split into axis columns (unless not
    `split`), long headers short; a column of numbers (bools aside) is right-aligned."""
    values = frame if isinstance(frame, dict) else _cells(frame)
    cells = {name: [format_value(name, v) for v in column] for name, column in values.items()}
    numeric = {name for name, column in values.items() if _numeric(column)}
    grid = fit.Grid(title, cells, frozenset(numeric))
    return rename(fit.split_labels(grid, PACKED) if split else grid, SHORT)


def cells_frame(table: pd.DataFrame | Cells) -> pd.DataFrame:
    """`table` as a DataFrame; a column of whole numbers with gaps (a pending run's bytes)
    stays whole (Int64), as CSV and JSON show it, not float64."""
    import pandas as pd

    if not isinstance(table, dict):
        return table
    return pd.DataFrame({name: _column(values) for name, values in table.items()})


def _column(values: list[Any]) -> Any:
    import pandas as pd

    present = [v for v in values if not is_missing(v)]
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in present)
    return pd.array(values, dtype="Int64") if present and whole else values


def _cells(frame: pd.DataFrame) -> Cells:
    return {str(name): frame[name].to_numpy(dtype=object).tolist() for name in frame.columns}


def _numeric(values: list[Any]) -> bool:
    present = [v for v in values if not is_missing(v)]
    return bool(present) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in present
    )


def rename(grid: fit.Grid, names: dict[str, str]) -> fit.Grid:
    columns = {names.get(n, n): cells for n, cells in grid.columns.items()}
    right = frozenset(names.get(n, n) for n in grid.right)
    return fit.Grid(grid.title, columns, right)


def fitted(
    title: str,
    frame: pd.DataFrame | Cells,
    columns: Sequence[str] = (),
    priority: Sequence[str] = (),
    notes: Sequence[str] = (),
    hint: str = HINT,
) -> object:
    """The rich table of `frame` at the console's width: the `columns` asked for, else
    every column by `priority` with the varying ones first."""
    grid = frame_grid(title, frame)
    if columns:
        # The names of csv and json: the packed labels too, beside their axis columns.
        whole = frame_grid(title, frame, split=False).columns
        grid = fit.Grid(title, {**whole, **grid.columns}, grid.right)
        names = fit.choose_columns(grid, [SHORT.get(name, name) for name in columns])
        return fit.rich_table(grid, names, notes)
    order = fit.varying_first(grid, [SHORT.get(name, name) for name in priority])
    kept, hidden = fit.fit_columns(grid, console.width, order)
    return fit.rich_table(grid, kept, [*notes, fit.hidden_note(hidden, hint)])
