"""A results table without a match column: its runs are matched on the budget and data
params (MATCH_KEYS), as a sweep's are, so each arm meets the control of its own budget and
seed, never a pool of controls of every budget."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jepardy.analysis.compare import compare_table
from jepardy.cli.app import app
from jepardy.ingest.ingest import ingest
from jepardy.ingest.labels import Labels
from jepardy.store.transitions import open_store

TABLE = Path(__file__).parent / "fixtures" / "tables" / "two_budgets.csv"


def seed_differences(budget: str) -> list[float]:
    """Per-seed val_bpb of the arm minus the control's, at one budget, read from the file."""
    rows = list(csv.DictReader(TABLE.open()))
    by = {(r["arm"], r["seed"]): float(r["val_bpb"]) for r in rows if r["wallclock_s"] == budget}
    return [by["jepa", s] - by["control", s] for s in ("1", "2", "3")]


def test_runs_are_matched_on_their_budget_and_keep_their_variant(tmp_path: Path) -> None:
    store = open_store(tmp_path / "results.db")
    report = ingest([TABLE], store, Labels(sweep="grid"))
    runs = store.runs_frame("grid")
    assert set(zip(runs["arm"], runs["variant"], runs["match"], strict=True)) == {
        ("control", "jepa_weight=0.0", "wallclock_s=180.0"),
        ("jepa", "jepa_weight=0.1", "wallclock_s=180.0"),
        ("control", "jepa_weight=0.0", "wallclock_s=600.0"),
        ("jepa", "jepa_weight=0.1", "wallclock_s=600.0"),
    }
    table = compare_table(runs)
    arms = table[table["arm"] == "jepa"].set_index("match")
    assert list(arms["unmatched"]) == ["", ""]  # each budget has its own control
    for budget in ("180", "600"):
        arm = arms.loc[f"wallclock_s={float(budget)!r}"]
        differences = seed_differences(budget)
        assert arm["delta_bpb_std"] == pytest.approx(statistics.stdev(differences))
        assert arm["delta_bpb"] == pytest.approx(statistics.mean(differences))
    assert report.notes == [f"{TABLE}: table 1 (line 1): no match column; matched on wallclock_s"]


def test_a_match_column_is_kept_and_the_cli_says_what_was_matched(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    out = CliRunner().invoke(app, ["ingest", str(TABLE), "--db", str(db), "--sweep", "g"])
    assert out.exit_code == 0, out.output
    assert "no match column; matched on wallclock_s" in " ".join(out.output.split())
    given = tmp_path / "given.csv"
    given.write_text(
        "\n".join(
            f"{line},{'match' if i == 0 else 'budget-' + line.split(',')[3]}"
            for i, line in enumerate(TABLE.read_text().splitlines())
        )
    )
    store = open_store(db)
    report = ingest([given], store, Labels(sweep="given"))
    assert not [n for n in report.notes if "matched on" in n]
    assert set(store.runs_frame("given")["match"]) == {"budget-180", "budget-600"}
