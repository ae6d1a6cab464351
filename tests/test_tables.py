"""Results tables: a CSV and a record README (two markdown tables, one of them results),
read into typed rows by column name and `--map`."""

from __future__ import annotations

from pathlib import Path

import pytest

from jepardy.errors import UserError
from jepardy.ingest.tables import (
    TableMapping,
    is_results,
    markdown_tables,
    normalize,
    parse_cell,
    read_tables,
    summary_row,
    typed_row,
)

FIXTURES = Path(__file__).parent / "fixtures"
CSV = FIXTURES / "tables" / "jepa_weight_grid.csv"
README = FIXTURES / "records" / "2026-03-20_Fake Record" / "README.md"


def rows_of(path: Path, maps: dict[str, str] | None = None) -> list[list]:
    """[(columns, typed rows)] of each table of `path`, summary rows left out."""
    mapping = TableMapping(maps or {})
    out = []
    for table in read_tables(path, path.name):
        columns = mapping.columns(table)
        rows = [
            typed_row(table, columns, line, cells)
            for line, cells in table.rows
            if summary_row(columns, cells) is None
        ]
        out.append([columns, rows])
    return out


def test_csv_columns_map_by_name_with_their_types() -> None:
    ((columns, rows),) = rows_of(CSV)
    kinds = {c.header: (c.kind, c.field, c.type) for c in columns}
    assert kinds == {
        "jepa_weight": ("param", "jepa_weight", "float"),
        "seed": ("label", "seed", "int"),
        "wallclock_s": ("param", "wallclock_s", "float"),
        "val_bpb": ("result", "val_bpb", "float"),
        "val_loss": ("result", "val_loss", "float"),
        "bytes": ("result", "artifact_bytes", "int"),
        "JEPA_PATCH_SIZE": ("param", "jepa_patch_size", "int"),
        "notes": ("unmapped", "notes", "str"),
    }
    assert len(rows) == 5
    first = rows[0]
    assert first.line == 2
    assert first.params == {"jepa_weight": 0.0, "wallclock_s": 180.0, "jepa_patch_size": 8}
    assert first.labels == {"seed": 1}
    assert first.results == {"val_bpb": 1.3012, "val_loss": 2.197, "artifact_bytes": 15_100_000}
    assert first.unmapped == {"notes": "control"}
    assert first.provenance["artifact_bytes"] == "bytes"
    for row in rows:
        assert type(row.params["jepa_weight"]) is float
        assert type(row.params["wallclock_s"]) is float  # 180 in the file
        assert type(row.labels["seed"]) is int
        assert type(row.results["artifact_bytes"]) is int  # "15,100,000" in the file
    assert rows[2].params["jepa_weight"] == 0.1 and rows[3].labels["seed"] == 2
    assert rows[4].results == {"artifact_bytes": 15_100_900}  # empty cells are missing
    assert is_results(columns)


def test_readme_with_two_tables_one_of_them_results() -> None:
    tables = markdown_tables(README.read_text(), "README.md")
    assert len(tables) == 2  # the pipe rows inside the fenced code block are no table
    (settings_columns, settings_rows), (columns, rows) = rows_of(README)
    assert not is_results(settings_columns)
    assert [c.header for c in settings_columns] == ["Parameter", "Value"]
    assert len(settings_rows) == 2
    assert is_results(columns)
    assert [(c.header, c.kind, c.field) for c in columns] == [
        ("Seed", "label", "seed"),
        ("Steps", "result", "steps"),
        ("val_loss (nats)", "result", "val_loss"),
        ("**val_bpb**", "result", "val_bpb"),
        ("Artifact (bytes)", "result", "artifact_bytes"),
        ("TTT gain", "unmapped", "TTT gain"),
        ("Notes", "unmapped", "Notes"),
    ]
    assert len(rows) == 2  # the Mean row is a summary, not a run
    one, two = rows
    assert one.labels == {"seed": 1} and two.labels == {"seed": 2}
    assert one.results == {
        "steps": 13780,
        "val_loss": 2.02611111,
        "val_bpb": 1.20011111,
        "artifact_bytes": 15_863_489,
    }
    assert type(one.results["steps"]) is int and type(one.results["val_bpb"]) is float
    assert one.unmapped == {"TTT gain": "-0.0021", "Notes": "first | best"}  # \| in a cell
    assert two.results["val_bpb"] == 1.20033333 and two.unmapped["TTT gain"] == "—"
    assert one.line == tables[1].line + 2


def test_map_names_columns_and_drops_them() -> None:
    maps = {"TTT gain": "-", "Notes": "variant", "Steps": "-"}
    (_, _), (columns, rows) = rows_of(README, maps)
    assert [c.kind for c in columns] == [
        "label", "ignored", "result", "result", "result", "ignored", "label"
    ]  # fmt: skip
    assert rows[0].labels == {"seed": 1, "variant": "first | best"}
    assert "steps" not in rows[0].results and rows[0].unmapped == {}
    ((columns, rows),) = rows_of(CSV, {"notes": "QK_GAIN_INIT", "bytes": "model_bytes"})
    assert rows[0].params["QK_GAIN_INIT"] == "control"  # an upper-case variable: any type
    assert rows[0].results["model_bytes"] == 15_100_000


def test_bad_cells_and_targets_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"--map x=val_bpp: unknown field 'val_bpp'; allowed: "):
        TableMapping({"x": "val_bpp"})
    bad = tmp_path / "bad.csv"
    bad.write_text("seed,val_bpb\n1,1.21 ± 0.01\n")
    with pytest.raises(UserError) as err:
        rows_of(bad)
    assert str(err.value) == (
        "bad.csv: line 2: column 'val_bpb': '1.21 ± 0.01' is not a float for val_bpb; "
        "use --map 'val_bpb=FIELD' for another field or --map 'val_bpb=-' to drop it"
    )
    assert "\n" not in str(err.value)


def test_cells_and_headers() -> None:
    assert normalize("**Post-TTT  BPB**") == "post_ttt_bpb"
    assert normalize("val\\_bpb") == "val_bpb"
    assert parse_cell("**1.0580**", "float") == 1.058
    assert parse_cell("15,989,499", "int") == 15_989_499
    assert parse_cell("—", "float") is None and parse_cell(" n/a ", "int") is None
    assert parse_cell("yes", "bool") is True and parse_cell("7", "any") == 7
    with pytest.raises(ValueError):
        parse_cell("13780.5", "int")
