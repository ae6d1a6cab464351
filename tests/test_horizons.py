"""Rankings across budgets, from a result set whose short-screen winner loses at 600 s."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import runsets
from runsets import R

from jepardy.analysis.horizons import Horizons, horizon_table
from jepardy.analysis.report import ReportRequest, build_report, render_report
from jepardy.errors import UserError
from jepardy.store.frames import load_runs
from jepardy.store.transitions import open_store

SD = runsets.HORIZON_SD
T975_4 = 2.7764451051977987  # t_{0.975, 4}: Welch df of two groups of 3 with equal sd


@pytest.fixture
def db(tmp_path: Path) -> Path:
    store = open_store(tmp_path / "horizons.db")
    runsets.write(
        store,
        runsets.horizon_runs("leader", runsets.LEADER)
        + runsets.horizon_runs("screen", runsets.SCREEN),
    )
    return tmp_path / "horizons.db"


@pytest.fixture
def horizons(db: Path) -> Horizons:
    return horizon_table(load_runs(db), "wallclock_s")


def arm_rows(horizons: Horizons, lane: str, budget: float) -> dict[str, dict]:
    rows = horizons.arms[(horizons.arms["lane"] == lane) & (horizons.arms["wallclock_s"] == budget)]
    return {f"{r['arm']} {r['variant']}".strip(): r for r in rows.to_dict("records")}


def test_rankings_side_by_side(horizons: Horizons) -> None:
    short, long = arm_rows(horizons, "leader", 180.0), arm_rows(horizons, "leader", 600.0)
    assert {k: v["rank"] for k, v in short.items()} == {
        "control": 4,
        "jepa jepa_weight=0.05": 3,
        "jepa jepa_weight=0.1": 2,
        "jepa jepa_weight=0.15": 1,
    }
    assert {k: v["rank"] for k, v in long.items()} == {
        "control": 4,
        "jepa jepa_weight=0.05": 2,
        "jepa jepa_weight=0.1": 1,
        "jepa jepa_weight=0.15": 3,
    }
    assert long["jepa jepa_weight=0.15"]["mean"] == pytest.approx(1.195)
    assert long["jepa jepa_weight=0.15"]["std"] == pytest.approx(SD)
    assert set(horizons.arms["match"]) == {""}  # the budget left the match


def test_the_short_screen_winner_that_loses_is_flagged(horizons: Horizons) -> None:
    flags = {k: v["flag"] for k, v in arm_rows(horizons, "leader", 600.0).items()}
    assert flags == {
        "control": "",
        "jepa jepa_weight=0.05": "",
        "jepa jepa_weight=0.1": "",  # 2nd at the screen, but won at 600
        "jepa jepa_weight=0.15": "won the 180 screen, 3rd of 4 at 600",
    }
    screen = arm_rows(horizons, "screen", 600.0)
    assert screen["jepa jepa_weight=0.1"]["flag"] == "won the 180 screen, 2nd of 2 at 600"


def test_kendall_tau_textbook_values(horizons: Horizons) -> None:
    """Leader: 4 concordant and 2 discordant pairs of 6, tau = (4 - 2) / 6 = 1/3; its exact
    two-sided p for n = 4 counts permutations with <= 2 inversions (1 + 3 + 5 of 24), doubled:
    0.75. Screen: two arms in reverse order, tau = -1, p = 1."""
    taus = horizons.taus.set_index("lane")
    assert taus.loc["leader", "tau"] == pytest.approx(1 / 3)
    assert taus.loc["leader", "p_tau"] == pytest.approx(0.75)
    assert taus.loc["leader", "n_arms"] == 4
    assert (taus.loc["leader", "budget_a"], taus.loc["leader", "budget_b"]) == (180.0, 600.0)
    assert taus.loc["screen", "tau"] == pytest.approx(-1.0)
    assert taus.loc["screen", "p_tau"] == pytest.approx(1.0)


def test_confirmed_and_unresolved_flips(horizons: Horizons) -> None:
    flips = horizons.flips
    leader = flips[flips["lane"] == "leader"]
    pairs = list(zip(leader["variant_a"], leader["variant_b"], strict=True))
    assert pairs == [
        ("jepa_weight=0.05", "jepa_weight=0.15"),
        ("jepa_weight=0.1", "jepa_weight=0.15"),
    ]
    first = leader.iloc[0]
    # 0.05 - 0.15: +0.04 at 180, -0.005 at 600; the Welch interval's half-width is
    # t_{0.975,4} * sqrt(2 sd^2 / 3).
    half = T975_4 * math.sqrt(2 * SD**2 / 3)
    assert first["diff_short"] == pytest.approx(0.04)
    assert first["diff_long"] == pytest.approx(-0.005)
    assert first["diff_long_ci_low"] == pytest.approx(-0.005 - half)
    assert first["diff_long_ci_high"] == pytest.approx(-0.005 + half)
    assert leader["status"].tolist() == ["confirmed flip", "confirmed flip"]
    screen = flips[flips["lane"] == "screen"]
    assert screen["status"].tolist() == ["unresolved"]  # 0.001 apart with sd 0.002


def test_single_seed_flips_are_unresolved(tmp_path: Path) -> None:
    store = open_store(tmp_path / "one.db")
    runsets.write(store, runsets.horizon_runs("leader", runsets.LEADER, seeds=(1,)))
    flips = horizon_table(load_runs(store), "wallclock_s").flips
    assert flips["status"].tolist() == ["unresolved", "unresolved"]
    assert flips["diff_long_ci_low"].isna().all()


def test_rendered_side_by_side_with_notes(db: Path) -> None:
    report = build_report(load_runs(db), ReportRequest(compare=False, horizons="wallclock_s"))
    text = render_report(report, "markdown")
    lines = text.splitlines()
    assert lines[0] == "### study / leader: val_bpb by wallclock_s"
    assert "| arm | variant | wallclock_s=180 | wallclock_s=600 | flag |" in lines
    assert (
        "| jepa | jepa_weight=0.15 | 1. 1.2500 ± 0.0020 (n=3) | 3. 1.1950 ± 0.0020 (n=3) "
        "| won the 180 screen, 3rd of 4 at 600 |"
    ) in lines
    assert "- Kendall's tau 180 vs 600: +0.33 (p 0.750, 4 arms)" in lines
    assert any(
        line.startswith(
            "- confirmed flip: jepa jepa_weight=0.05 - jepa jepa_weight=0.15 is +0.0400"
        )
        for line in lines
    )
    assert any(line.startswith("- unresolved: control - jepa jepa_weight=0.1") for line in lines)


def test_over_cap_cells_are_flagged(tmp_path: Path) -> None:
    store = open_store(tmp_path / "cap.db")
    runs = runsets.horizon_runs("leader", runsets.LEADER)
    runs.append(
        R("leader", "control", 4, 1.20, {}, {"wallclock_s": 600.0}, artifact_bytes=16_500_000)
    )
    runsets.write(store, runs)
    report = build_report(load_runs(store), ReportRequest(compare=False, horizons="wallclock_s"))
    text = render_report(report, "markdown")
    assert "| control |  | 4. 1.3000 ± 0.0020 (n=3) | 4. 1.2000 ± 0.0016 (n=4) OVER CAP |" in text


def test_budget_param_must_exist(db: Path) -> None:
    with pytest.raises(UserError, match=r"^no run has param 'iterations'"):
        horizon_table(load_runs(db), "iterations")


def test_a_budget_no_run_has_names_the_sweep(tmp_path: Path) -> None:
    """wallclock_s is a column of every store; runs that never set it say where they were."""
    store = open_store(tmp_path / "nobudget.db")
    runsets.write(store, [R("main", arm, s, 1.3) for arm in ("control", "jepa") for s in (1, 2)])
    with pytest.raises(UserError) as raised:
        horizon_table(load_runs(store), "wallclock_s")
    assert str(raised.value) == (
        "--horizons wallclock_s: no done run in sweep study has a value of it"
    )
