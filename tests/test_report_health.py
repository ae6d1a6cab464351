"""`jepardy report --health`: the flagged runs are a part of the report in every format, so
machine output stays one document (json: the `health` key; csv: the `# health` table), the
flags stay in sight in a narrow terminal, and a store without flags says so."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
import runsets
from runsets import R
from typer.testing import CliRunner

from jepardy.cli.app import app
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import open_store

LANE = "main"
COLLAPSE = "collapse: jepa_pred_std 0.1 < target 0.5"


def _store(path: Path, flagged: bool) -> Path:
    """Control and jepa, two seeds each; with `flagged`, jepa seed 1 recorded a JEPA
    prediction spread below its target (as the reviewer's health.db)."""
    runs = [R(LANE, "control", s, 1.30 + s / 100, match={"ema": False}) for s in (1, 2)]
    runs += [R(LANE, "jepa", s, 1.29 + s / 100, match={"ema": False}) for s in (1, 2)]
    if flagged:
        runs[2] = R(LANE, "jepa", 1, 1.30, match={"ema": False}, status="pending")
    store = open_store(path)
    ids = runsets.write(store, runs)
    if flagged:
        result = {**runsets.result(runs[2]), "status": "done"}  # type: ignore[dict-item]
        result.update(jepa_pred_std=0.1, jepa_std_target=0.5)
        store.record_result(ids[2], RunOutcome(status="done", result=result, metrics=[]))
    return path


def _report(db: Path, *args: str, columns: int = 80) -> str:
    out = CliRunner().invoke(
        app, ["report", "--db", str(db), "--health", *args], env={"COLUMNS": str(columns)}
    )
    assert out.exit_code == 0, out.output
    return out.stdout


@pytest.fixture
def flagged(tmp_path: Path) -> Path:
    return _store(tmp_path / "health.db", flagged=True)


def test_json_with_health_is_one_document(flagged: Path) -> None:
    data = json.loads(_report(flagged, "--format", "json"))
    assert list(data) == ["health", "compare"]
    (row,) = data["health"]
    assert row["arm"] == "jepa" and row["seed"] == 1 and row["flags"] == COLLAPSE
    assert {r["arm"] for r in data["compare"]} == {"control", "jepa"}


def test_csv_with_health_names_its_table_first(flagged: Path) -> None:
    text = _report(flagged, "--format", "csv")
    assert text.startswith("# health\n")
    health = pd.read_csv(io.StringIO(text.split("\n# compare\n")[0].removeprefix("# health\n")))
    assert health["flags"].tolist() == [COLLAPSE]


def test_the_flags_stay_in_a_narrow_terminal(flagged: Path) -> None:
    text = _report(flagged)
    assert "health: 1 run flagged" in text
    assert COLLAPSE in " ".join(text.split())  # whole, or folded over lines
    assert "hidden: flags" not in text and "flags;" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_no_flags_is_said(tmp_path: Path) -> None:
    db = _store(tmp_path / "healthy.db", flagged=False)
    lines = _report(db).splitlines()
    assert lines[0] == "health: no flags"
    assert json.loads(_report(db, "--format", "json"))["health"] == []
    assert "### health: no flags" in _report(db, "--format", "markdown")


def test_health_alone_is_a_report(flagged: Path) -> None:
    """`--no-compare --health` reports the flags alone instead of "nothing to report"."""
    data = json.loads(_report(flagged, "--no-compare", "--format", "json"))
    assert list(data) == ["health"] and data["health"][0]["flags"] == COLLAPSE
    assert "health: 1 run flagged" in _report(flagged, "--no-compare")
