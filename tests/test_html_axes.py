"""The curves and horizons the HTML report finds by itself (analysis/found_axes.py), from
runs recorded in a real SQLite store: an axis it guessed never fails the report; what the
tables refuse is left out with a note that says why, and an axis the user named keeps its
error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import runsets
from runsets import R

from jepardy.errors import UserError
from jepardy.store.transitions import open_store


def _invoke(*args: str) -> Any:
    from typer.testing import CliRunner

    from jepardy.cli.app import app

    return CliRunner().invoke(app, ["report", *args], env={"COLUMNS": "300"})


def _page(db: Path, *args: str) -> str:
    """The HTML report of `db` as text (tags removed, spaces collapsed); the report must
    succeed."""
    page = db.with_suffix(".html")
    result = _invoke("--db", str(db), "--format", "html", "--out", str(page), *args)
    assert result.exit_code == 0, result.output
    assert f"report: {page}" in result.stderr
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text()))


def _db(tmp_path: Path, runs: list[R]) -> Path:
    db = tmp_path / "store.db"
    runsets.write(open_store(db), runs)
    return db


def _confounded(lane: str, other: str) -> list[R]:
    """A control and a JEPA arm, 2 seeds each, at wallclock_s 180 and 600; `other`, another
    key of the match, changes with the budget (its value is the budget / 60)."""
    runs = []
    for budget in (180.0, 600.0):
        match = {"wallclock_s": budget, other: int(budget // 60)}
        for arm, variant, mean in (("control", {}, 1.30), ("jepa", {"jepa_weight": 0.1}, 1.28)):
            values = runsets.seeds_around(mean - budget / 6000, 0.002, (1, 2))
            runs += [
                R(lane, arm, s, v, variant, match) for s, v in zip((1, 2), values, strict=True)
            ]
    return runs


@pytest.mark.parametrize("other", ["seq_len", "iterations"])
def test_a_budget_that_changes_with_another_match_key_leaves_a_note(
    tmp_path: Path, other: str
) -> None:
    text = _page(_db(tmp_path, _confounded("mixed", other)))
    assert "Each arm against its matched control" in text  # the rest of the report is there
    assert "Curves and horizons" in text
    note = (
        "No horizons over wallclock_s: no lane ran two or more of its values with the rest "
        f"of its match the same ({other} changed with it)."
    )
    assert note in text
    assert "by wallclock_s" not in text  # no horizon table
    if other == "iterations":  # the other budget param was tried too, and refused alike
        assert "No horizons over iterations: no lane ran two or more" in text
        assert "(wallclock_s changed with it)." in text


def test_the_horizons_a_store_has_are_shown_beside_a_lane_that_has_none(tmp_path: Path) -> None:
    runs = runsets.horizon_runs("leader", runsets.LEADER) + _confounded("mixed", "seq_len")
    text = _page(_db(tmp_path, runs))
    assert "Curves over jepa_weight and horizons over wallclock_s" in text
    assert "study / leader: val_bpb by wallclock_s" in text
    assert "study / mixed: val_bpb by wallclock_s" not in text
    # The mixed lane's two matches each ran one budget: counted and said.
    assert "2 sets ran at a single wallclock_s and are left out" in text
    assert "No horizons" not in text


def test_horizons_asked_for_keep_their_error(tmp_path: Path) -> None:
    db = _db(tmp_path, _confounded("mixed", "seq_len"))
    page = tmp_path / "asked.html"
    args = ("--db", str(db), "--format", "html", "--out", str(page), "--horizons", "wallclock_s")
    result = _invoke(*args)
    assert isinstance(result.exception, UserError)
    assert str(result.exception).startswith(
        "--horizons wallclock_s: no arm ran two or more of its values (180, 600)"
    )
    assert not page.exists()


def _arm(lane: str, arm: str, variants: list[dict[str, Any]], means: list[float]) -> list[R]:
    runs = []
    for variant, mean in zip(variants, means, strict=True):
        values = runsets.seeds_around(mean, 0.002, (1, 2))
        runs += [R(lane, arm, s, v, variant) for s, v in zip((1, 2), values, strict=True)]
    return runs


def test_a_curve_axis_that_changes_with_another_key_is_skipped_for_one_that_holds(
    tmp_path: Path,
) -> None:
    # Arm "opt" changes beta and warmup together: no curve over either. Arm "jepa" runs
    # three weights: the page shows its curve, and says why beta gave none.
    opt = [{"beta": 0.9, "warmup": 1}, {"beta": 0.95, "warmup": 2}]
    weights = [{"jepa_weight": w} for w in (0.1, 0.2, 0.3)]
    runs = _arm("grid", "control", [{}], [1.30]) + _arm("grid", "opt", opt, [1.29, 1.28])
    runs += _arm("grid", "jepa", weights, [1.27, 1.25, 1.26])
    text = _page(_db(tmp_path, runs))
    assert "Curves over jepa_weight" in text
    assert "study / grid — jepa: val_bpb over jepa_weight" in text
    assert (
        "No curves over beta: no arm ran two or more of its values with the rest of its match "
        "and variant the same (warmup changed with it)."
    ) in text


def test_no_curve_when_every_candidate_is_refused(tmp_path: Path) -> None:
    opt = [{"lr": 0.01, "warmup": 1}, {"lr": 0.02, "warmup": 2}]
    runs = _arm("joint", "control", [{}], [1.30]) + _arm("joint", "opt", opt, [1.29, 1.28])
    text = _page(_db(tmp_path, runs))
    assert "Curves and horizons" in text and "val_bpb over" not in text
    assert "No curves over lr:" in text and "(warmup changed with it)." in text
    assert "No curves over warmup:" in text and "(lr changed with it)." in text


def test_a_single_seed_curve_without_noise_says_to_give_one(tmp_path: Path) -> None:
    runs = runsets.curve("grid", [0, 0.1, 0.2], [1.30, 1.27, 1.29], 0.0, seeds=(1,))
    db = _db(tmp_path, runs)
    text = _page(db)
    assert "No curves over jepa_weight: curve study / grid" in text
    assert "give a floor with --noise" in text
    # With the floor the curve is there.
    text = _page(db, "--noise", "0.001")
    assert "study / grid — jepa: val_bpb over jepa_weight" in text
    assert "No curves" not in text
