"""Results tables from CSV files and markdown READMEs, read into typed fields by column name.

A table copied from a paper, a PR or a record README becomes rows of typed values:
`read_tables` finds the tables (a CSV or TSV file is one table; a markdown file holds any
number, fenced code blocks excepted) and `TableMapping` decides what each column is:

- a result field (`val_bpb`, `val_loss`, `artifact_bytes`, ... see `RESULT_FIELDS`), by its
  name or a common alias (`bpb`, `bytes_total`, `artifact (bytes)`);
- a label of the run (`seed`, `arm`, `variant`, `match`, `lane`);
- a param, by its jepardy name (`jepa_weight`, `wallclock_s`) or its challenge variable
  (`JEPA_LOSS_WEIGHT`, `max_wallclock_seconds`), typed as the challenge table says;
- anything else is kept as text, unmapped, until `--map COLUMN=FIELD` says what it is
  (`--map "Post-TTT BPB=val_bpb"`, `--map Notes=-` to drop it).

Only a table with a val_bpb or val_loss column holds results; others are reported and left.
Headers are matched case-insensitively with markdown emphasis, backticks and `\\_` removed.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jepardy.errors import UserError
from jepardy.ingest.logline import typed_value
from jepardy.spec import challenge_env
from jepardy.trainer.config import schema

Scalar = bool | int | float | str

RESULT_FIELDS: dict[str, str] = {
    "val_bpb": "float",
    "val_loss": "float",
    "prequant_val_bpb": "float",
    "prequant_val_loss": "float",
    "artifact_bytes": "int",
    "model_bytes": "int",
    "code_bytes": "int",
    "steps": "int",
    "train_time_s": "float",
    "eval_time_s": "float",
    "tokens_per_s": "float",
    "step_avg_ms": "float",
}
LABEL_FIELDS: dict[str, str] = {
    "seed": "int",
    "arm": "str",
    "variant": "str",
    "match": "str",
    "lane": "str",
}
IGNORE = "-"
METRIC_FIELDS = ("val_bpb", "val_loss")
# Normalised header -> field, besides every field's own name.
ALIASES = {
    "bpb": "val_bpb",
    "val_bpb_(bits/byte)": "val_bpb",
    "loss": "val_loss",
    "val_loss_(nats)": "val_loss",
    "bytes": "artifact_bytes",
    "bytes_total": "artifact_bytes",
    "total_bytes": "artifact_bytes",
    "artifact": "artifact_bytes",
    "artifact_(bytes)": "artifact_bytes",
    "artifact_size_bytes": "artifact_bytes",
    "submission_bytes": "artifact_bytes",
    "bytes_code": "code_bytes",
    "bytes_model": "model_bytes",
    "pre_quant_val_bpb": "prequant_val_bpb",
    "pre_quant_val_loss": "prequant_val_loss",
    "step_avg": "step_avg_ms",
    "ms/step": "step_avg_ms",
    "train_steps": "steps",
}
SUMMARY_WORDS = frozenset({"mean", "average", "avg", "std", "stdev", "median", "best", "total"})
MISSING = frozenset({"", "-", "—", "–", "n/a", "na", "none", "null", "?"})
_MARKUP = re.compile(r"\*\*|__|`")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:[,_]\d{3})+(?:\.\d+)?")
_DELIMITER_CELL = re.compile(r":?-{1,}:?")
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass(frozen=True)
class TextTable:
    """A table as text: `line` is the 1-based line of its header, each row has its line."""

    source: str
    index: int
    line: int
    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]

    def where(self) -> str:
        return f"{self.source}: table {self.index + 1} (line {self.line})"


@dataclass(frozen=True)
class Column:
    """What one column is: kind "result" | "label" | "param" | "ignored" | "unmapped"."""

    index: int
    header: str
    kind: str
    field: str
    type: str  # "int" | "float" | "bool" | "str" | "any"


@dataclass(frozen=True)
class TypedRow:
    """One data row, typed. `provenance` maps each field to its column header; `unmapped`
    keeps the cells of unmapped columns as text."""

    line: int
    cells: tuple[str, ...]
    results: dict[str, Any]
    labels: dict[str, Any]
    params: dict[str, Any]
    unmapped: dict[str, str]
    provenance: dict[str, str]


def read_tables(path: Path, shown: str) -> list[TextTable]:
    """The tables of a .csv, .tsv or .md file; `shown` is how messages name the file."""
    text = _read_text(path, shown)
    if path.suffix.lower() == ".md":
        return markdown_tables(text, shown)
    return [delimited_table(text, shown, "\t" if path.suffix.lower() == ".tsv" else ",")]


def markdown_tables(text: str, source: str) -> list[TextTable]:
    """Every pipe table outside fenced code blocks: a header row, a delimiter row of dashes,
    then the rows up to the first line that does not start with `|`."""
    lines = text.replace("\r\n", "\n").split("\n")
    tables: list[TextTable] = []
    fence: str | None = None
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith(("```", "~~~")):
            mark = stripped[:3]
            fence = None if fence == mark else (fence or mark)
            i += 1
            continue
        if fence is None and _is_row(stripped) and i + 1 < len(lines):
            header = _cells(stripped)
            delimiter = _cells(lines[i + 1].strip())
            if _is_row(lines[i + 1].strip()) and all(
                _DELIMITER_CELL.fullmatch(c.replace(" ", "")) for c in delimiter
            ):
                rows = []
                j = i + 2
                while j < len(lines) and _is_row(lines[j].strip()):
                    rows.append((j + 1, _fit(_cells(lines[j].strip()), len(header))))
                    j += 1
                tables.append(TextTable(source, len(tables), i + 1, header, tuple(rows)))
                i = j
                continue
        i += 1
    return tables


def delimited_table(text: str, source: str, delimiter: str) -> TextTable:
    """A CSV (or TSV) text as one table; the first row is the header."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, tuple[str, ...]]] = []
    header: tuple[str, ...] | None = None
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = tuple(c.strip() for c in cells)
            continue
        rows.append((reader.line_num, _fit(tuple(c.strip() for c in cells), len(header))))
    if header is None:
        raise UserError(f"{source}: no header row; a table file starts with its column names")
    return TextTable(source, 0, 1, header, tuple(rows))


def normalize(header: str) -> str:
    """`**Post-TTT BPB**` -> `post_ttt_bpb`: no markup, lower case, runs of spaces and
    hyphens as one `_`."""
    text = _MARKUP.sub("", header).replace("\\_", "_").strip().lower()
    return re.sub(r"[\s\-]+", "_", text)


class TableMapping:
    """Column -> field rules for one ingest: the built-in names and the `--map` overrides.

    `maps` keys are column headers as written or normalised; values are a field name, a
    param name, an upper-case challenge variable, or "-" to drop the column.
    """

    def __init__(self, maps: dict[str, str]) -> None:
        self.maps = {normalize(k): v for k, v in maps.items()}
        self.used: set[str] = set()
        self._schema = {name: spec["type"] for name, spec in schema().items()}
        for column, target in maps.items():
            self._target(target, f"--map {column}={target}")

    def columns(self, table: TextTable) -> list[Column]:
        return [self._column(i, header) for i, header in enumerate(table.header)]

    def unused_maps(self) -> list[str]:
        """`--map` keys that named no column of any table read so far."""
        return [key for key in self.maps if key not in self.used]

    def _column(self, index: int, header: str) -> Column:
        key = normalize(header)
        if key in self.maps:
            self.used.add(key)
            kind, field, type_name = self._target(self.maps[key], f"--map {header}")
            return Column(index, header, kind, field, type_name)
        found = self._known(key)
        if found is None:
            return Column(index, header, "unmapped", header, "str")
        return Column(index, header, *found)

    def _known(self, name: str) -> tuple[str, str, str] | None:
        name = ALIASES.get(name, name)
        if name in RESULT_FIELDS:
            return "result", name, RESULT_FIELDS[name]
        if name in LABEL_FIELDS:
            return "label", name, LABEL_FIELDS[name]
        param = challenge_env.jepardy_name(name)
        if param is not None:
            return "param", param, challenge_env.BY_NAME[param].type
        if name in self._schema:
            return "param", name, self._schema[name]
        return None

    def _target(self, target: str, where: str) -> tuple[str, str, str]:
        if target == IGNORE:
            return "ignored", "", "str"
        found = self._known(target)
        if found is not None:
            return found
        if _ENV_NAME.fullmatch(target):
            return "param", target, "any"
        allowed = ", ".join([*RESULT_FIELDS, *LABEL_FIELDS])
        raise UserError(
            f"{where}: unknown field {target!r}; allowed: {allowed}, a jepardy param, "
            "an upper-case challenge variable, or - to drop the column"
        )


def is_results(columns: list[Column]) -> bool:
    """Whether a table holds results: it has a val_bpb or val_loss column."""
    return any(c.kind == "result" and c.field in METRIC_FIELDS for c in columns)


def summary_row(columns: list[Column], cells: tuple[str, ...]) -> str | None:
    """The word that makes a row a summary ("Mean", "Std", ...), or None for a data row: its
    first cell is such a word, or its seed cell is not an integer."""
    first = _MARKUP.sub("", cells[0]).strip() if cells else ""
    if first.lower().rstrip(":") in SUMMARY_WORDS:
        return first
    for column in columns:
        if column.field == "seed" and column.kind == "label":
            seed = _MARKUP.sub("", cells[column.index]).strip()
            if seed and not re.fullmatch(r"\d+", seed):
                return seed
    return None


def typed_row(
    table: TextTable, columns: list[Column], line: int, cells: tuple[str, ...]
) -> TypedRow:
    """One row's cells as typed fields; a cell that is not of its field's type is a
    UserError naming the file, table, line, column and value."""
    results: dict[str, Any] = {}
    labels: dict[str, Any] = {}
    params: dict[str, Any] = {}
    unmapped: dict[str, str] = {}
    provenance: dict[str, str] = {}
    buckets = {"result": results, "label": labels, "param": params}
    for column in columns:
        text = cells[column.index]
        if column.kind == "ignored":
            continue
        if column.kind == "unmapped":
            unmapped[column.header] = text
            continue
        try:
            value = parse_cell(text, column.type)
        except ValueError:
            raise UserError(
                f"{table.source}: line {line}: column {column.header!r}: {text!r} is not "
                f"a {column.type} for {column.field}; use --map '{column.header}=FIELD' "
                f"for another field or --map '{column.header}=-' to drop it"
            ) from None
        if value is not None:
            buckets[column.kind][column.field] = value
            provenance[column.field] = column.header
    return TypedRow(line, cells, results, labels, params, unmapped, provenance)


def parse_cell(text: str, type_name: str) -> Scalar | None:
    """A cell as `type_name` ("any" infers int, float, bool or text); None when empty or a
    dash. Markdown emphasis and thousands separators (15,989,499) are dropped first.
    Raises ValueError for a cell that is not of the type."""
    value = _MARKUP.sub("", text).strip()
    if value.lower() in MISSING:
        return None
    if _THOUSANDS.fullmatch(value):
        value = value.replace(",", "").replace("_", "")
    if type_name == "str":
        return value
    if type_name == "any":
        return typed_value(value)
    if type_name == "bool":
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if value.lower() not in words:
            raise ValueError(value)
        return words[value.lower()]
    if type_name == "int":
        number = float(value)
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    return float(value)


def _read_text(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{shown}: byte {err.start} is not UTF-8; tables are read as UTF-8"
        ) from None
    except OSError as err:
        raise UserError(f"{shown}: cannot read ({err.strerror})") from None


def _is_row(line: str) -> bool:
    return line.startswith("|")


def _cells(line: str) -> tuple[str, ...]:
    """A pipe row's cells; `\\|` is a literal pipe inside a cell."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    parts = re.split(r"(?<!\\)\|", body)
    return tuple(p.strip().replace("\\|", "|") for p in parts)


def _fit(cells: tuple[str, ...], width: int) -> tuple[str, ...]:
    """Pad a short row with empty cells and drop cells beyond the header."""
    return (cells + ("",) * width)[:width]
