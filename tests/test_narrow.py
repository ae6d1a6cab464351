"""Tables that fit an 80-column terminal: on a store shaped like `make demo`'s, `runs`,
`status`, `plan` and `report` show every value that differs between runs whole, in lines of
at most 80 characters, and name the columns they leave out; `--columns` and `--format`
give the rest. Each command runs as a real process with COLUMNS=80."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import runsets
from demo_store import write_demo
from runsets import R

from jepardy.analysis.fit import Grid, fit_columns, label_pairs
from jepardy.analysis.quantities import format_value
from jepardy.store.transitions import open_store

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 80


def jepardy(*args: str | Path, cwd: Path, width: int = WIDTH) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(width), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "jepardy.cli.app", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def shown(*args: str | Path, cwd: Path, until: str = "") -> list[str]:
    """The lines a command prints at 80 columns, each checked to fit (up to the first line
    that starts with `until`: one-line messages after a table may be longer)."""
    proc = jepardy(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    table = lines[: next((i for i, x in enumerate(lines) if until and x.startswith(until)), None)]
    assert max(len(line) for line in table) <= WIDTH, proc.stdout
    assert "…" not in proc.stdout, proc.stdout
    return lines


def cells(line: str) -> list[str]:
    """A table line's cells: columns are at least two spaces apart."""
    return [cell for cell in line.strip().split("  ") if cell.strip()]


def row_of(lines: list[str], run_id: str) -> list[str]:
    (line,) = [line for line in lines if line.startswith(run_id)]
    return [cell.strip() for cell in cells(line)]


def varying(frame: pd.DataFrame) -> list[str]:
    return [name for name in frame.columns if frame[name].astype(str).nunique() > 1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    write_demo(folder / "results.db", running=2)
    return folder


# What each quantity looks like, written out here rather than taken from the code.
EXPECTED = {
    "val_bpb": lambda v: f"{v:.4f}",
    "artifact_bytes": lambda v: f"{int(v):,}",
    "train_time_s": lambda v: f"{v:.1f}",
    "seed": lambda v: str(int(v)),
}


def test_runs_shows_every_value_that_differs_whole(demo: Path) -> None:
    frame = pd.DataFrame(json.loads(jepardy("runs", "--format", "json", cwd=demo).stdout))
    assert len(frame) == 8 and "ema" in frame.columns  # the axis, as its own column
    lines = shown("runs", cwd=demo)
    differing = varying(frame)
    assert {"id", "arm", "ema", "seed", "status", "val_bpb", "artifact_bytes"} <= set(differing)
    for record in frame.to_dict("records"):
        row = row_of(lines, record["id"])
        for name in differing:
            value = record[name]
            if value is None or (isinstance(value, float) and pd.isna(value)):
                continue
            if name in ("variant", "match"):
                continue  # packed labels: shown as their axis columns
            text = EXPECTED.get(name, str)(value)
            assert text in row, (name, text, row)
    assert "jepa_we" not in "\n".join(lines)
    hidden = [line for line in lines if "hidden" in line]
    assert hidden and "--columns to choose" in " ".join(lines[lines.index(hidden[0]) :])


def test_runs_of_several_sweeps_name_each_sweep_whole(tmp_path: Path) -> None:
    """Sweeps named after long record folders: one table per sweep, its name in the title,
    every line within 80 columns and every run's val_bpb and seed shown."""
    store = open_store(tmp_path / "results.db")
    long = "ingested:2026-04-11_ImprovedParallelResiduals_CUTLASS_EVT"
    ids = {}
    for sweep, base in ((long, 1.07), ("smoke", 2.45)):
        runs = [R("main", "control", 1, base + 0.001), R("main", "jepa", 2, base + 0.002)]
        ids[sweep] = runsets.write(store, runs, sweep=sweep)
    store.close()
    lines = shown("runs", "--db", "results.db", cwd=tmp_path)
    titles = [line.strip() for line in lines if line.strip().startswith("sweep ")]
    assert titles == [f"sweep {long}: 2 runs", "sweep smoke: 2 runs"], lines
    for sweep, base in ((long, 1.07), ("smoke", 2.45)):
        for run_id, seed in zip(ids[sweep], (1, 2), strict=True):
            row = row_of(lines, run_id)
            assert f"{base + seed / 1000:.4f}" in row and str(seed) in row, row


def test_status_shows_the_running_runs_whole(demo: Path) -> None:
    data = json.loads(jepardy("status", "--format", "json", cwd=demo).stdout)
    running = pd.DataFrame(data["running"])
    assert len(running) == 2 and data["runs per state"][0]["running"] == 2
    lines = shown("status", cwd=demo)
    for record in running.to_dict("records"):
        row = row_of(lines, record["id"])
        for name in varying(running):
            if name in ("elapsed_s", "heartbeat_age_s", "state"):
                continue  # both runs started in the same second; a stale state is a note
            assert str(record[name]) in row, (name, row)
    # The stale advice is whole, under the table (the test process is its orchestrator,
    # but its heartbeat is not refreshed).
    text = " ".join(" ".join(lines).split())
    assert text.count("resume with jepardy sweep") in (0, 2)


def test_plan_of_the_weight_grid_shows_each_weight(tmp_path: Path) -> None:
    spec = ROOT / "experiments" / "weight_grid.toml"
    # The job matrix fits; the lines of text after it stay whole in a pipe.
    lines = shown("plan", spec, "--db", tmp_path / "none.db", cwd=ROOT, until="lanes:")
    weights = [f"{i * 0.05:.2f}".rstrip("0").rstrip(".") for i in range(1, 21)]
    rows = [cells(line) for line in lines if line[:16].isalnum() and len(line) > 16]
    assert len(rows) == 63
    assert "jepa_weight" in " ".join(lines)
    jepa = [row for row in rows if "jepa" in row]
    assert {row[row.index("jepa") + 1].strip() for row in jepa} == {str(float(w)) for w in weights}


def test_report_on_the_demo_fits_with_every_differing_value(demo: Path) -> None:
    report = json.loads(jepardy("report", "--format", "json", cwd=demo).stdout)
    table = pd.DataFrame(report["compare"])
    lines = shown("report", cwd=demo)
    for record in table.to_dict("records"):
        ema = label_pairs(record["match"])["ema"]
        rows = [[c.strip() for c in cells(line)] for line in lines]
        (row,) = [row for row in rows if row[:2] == [ema, record["arm"]]]
        assert f"{record['val_bpb_mean']:.4f} ± {record['val_bpb_std']:.4f}" in row
        assert f"{int(record['artifact_bytes']):,}" in row
        assert record["verdict"] in row
    assert any("columns hidden:" in line for line in lines)


def test_columns_and_formats(demo: Path) -> None:
    lines = shown("runs", "--columns", "id,ema,val_bpb", cwd=demo)
    assert cells(lines[1]) == ["id", "ema", "val_bpb"]
    csv = jepardy("runs", "--format", "csv", cwd=demo)
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert len(frame) == 8 and {"reason", "steps", "train_time_s", "ema"} <= set(frame.columns)
    picked = jepardy("status", "--format", "csv", "--columns", "id,ema", cwd=demo)
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout.split("# running\n")[1].splitlines()[0] == "id,ema"
    for args in (("runs", "--columns", "id,nope"), ("status", "--format", "xml")):
        proc = jepardy(*args, cwd=demo)
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error: --"), proc.stderr


def test_ingest_prints_one_line_per_run(tmp_path: Path) -> None:
    record = ROOT / "tests" / "fixtures" / "records" / "2026-03-20_Fake Record"
    lines = shown("ingest", record, "--db", tmp_path / "r.db", cwd=tmp_path, until="note:")
    runs = [line for line in lines if line[:16].isalnum() and len(line) > 16]
    assert len(runs) == 2 and all("1.200" in line for line in runs)


# --- the parts ---


def test_one_format_per_quantity() -> None:
    assert format_value("artifact_bytes", 16_000_001) == "16,000,001"
    assert format_value("val_bpb", 1.234567) == "1.2346"
    assert format_value("val_loss", 2.0) == "2.0000"
    assert format_value("train_time_s", 31.25) == "31.2"
    assert format_value("tokens_per_s", 19_660.4) == "19,660"
    assert format_value("jepa_weight", 0.15000000000000002) == "0.15000000000000002"
    assert format_value("jepa_weight", 0.1) == "0.1" and format_value("seed", 3) == "3"
    assert format_value("val_bpb", float("nan")) == "" and format_value("reason", None) == ""
    assert format_value("under_cap", True) == "True"


def test_labels_split_into_axes_even_with_commas_in_values() -> None:
    assert label_pairs("ema=true,jepa_weight=0.1") == {"ema": "true", "jepa_weight": "0.1"}
    assert label_pairs("note=a,b,ema=false") == {"note": "a,b", "ema": "false"}
    assert label_pairs("") == {}


def test_columns_kept_by_priority_and_the_rest_named() -> None:
    grid = Grid("t", {"a": ["x" * 30], "b": ["y" * 30], "c": ["z" * 10], "d": [""]})
    assert fit_columns(grid, 80) == (["a", "b", "c"], [])
    assert fit_columns(grid, 62, ["b", "a"]) == (["a", "b"], ["c"])
    assert fit_columns(grid, 61, ["b", "a"]) == (["b", "c"], ["a"])
    # A narrower column later in the order still fills the room a wide one left.
    assert fit_columns(grid, 45, ["a", "b", "c"]) == (["a", "c"], ["b"])
    assert fit_columns(grid, 10) == (["a"], ["b", "c"])  # the first column always shows


def test_status_of_an_empty_store_says_so(tmp_path: Path) -> None:
    open_store(str(tmp_path / "e.db"))
    lines = shown("status", "--db", "e.db", cwd=tmp_path)
    assert lines == ["no runs in e.db; jepardy sweep SPEC records them"]
