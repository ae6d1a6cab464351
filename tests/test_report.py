"""The compare table and its renderings, from runs recorded in a real SQLite store."""

from __future__ import annotations

import hashlib
import io
import json
import math
import struct
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import runsets
import sqlalchemy as sa
from rich.console import Console, Group

from jepardy.analysis.compare import COLUMNS, compare_table
from jepardy.analysis.report import render_compare
from jepardy.analysis.significance import holm
from jepardy.errors import UserError
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import Store, open_store

SWEEP = "golf"
LANE = "isolation"
M180, M600, M1200 = "wallclock_s=180", "wallclock_s=600", "wallclock_s=1200"
JEPA = ("jepa", "jepa_weight=0.1")
EMA = ("ema", "")
CONTROL = ("control", "")


Planned = RunIdentity

# (match, (arm, variant), seed) -> (val_bpb, val_loss, artifact_bytes), in registration order.
# Match 600 is registered before 180 and jepa before control: the table must still put the
# control first in each match and keep matches and arms in order of first appearance.
DONE: dict[tuple[str, tuple[str, str], int], tuple[float, float, int]] = {
    (M600, JEPA, 1): (1.18, 1.80, 15_000_000),
    (M600, JEPA, 2): (1.19, 1.83, 15_000_000),
    (M600, CONTROL, 1): (1.20, 1.85, 14_000_000),
    (M600, CONTROL, 2): (1.22, 1.87, 14_000_000),
    (M600, EMA, 1): (1.21, 1.86, 14_500_000),
    (M600, EMA, 2): (1.25, 1.90, 14_500_000),
    (M180, CONTROL, 1): (1.30, 2.00, 15_000_000),
    (M180, CONTROL, 2): (1.32, 2.04, 15_100_000),
    (M180, JEPA, 1): (1.28, 1.97, 15_200_000),
    (M180, JEPA, 2): (1.29, 1.99, 15_300_000),
    (M180, EMA, 1): (1.31, 2.01, 16_000_000),  # exactly the cap: still under it
    (M180, EMA, 2): (1.33, 2.05, 16_000_001),  # one byte over
    (M1200, JEPA, 1): (1.10, 1.70, 15_000_000),  # no control ran in this match
}
# Runs that are not done must not count.
NOT_DONE = [(M180, CONTROL, 3, "failed"), (M180, JEPA, 3, "timeout"), (M600, EMA, 3, None)]


def _run(match: str, arm: tuple[str, str], seed: int) -> Planned:
    run_id = hashlib.sha256(repr((match, arm, seed)).encode()).hexdigest()[:16]
    params = {"seed": seed, "wallclock_s": float(match.split("=")[1])}
    return RunIdentity(run_id, SWEEP, LANE, arm[0], arm[1], match, seed, params)


def _result(val_bpb: float, val_loss: float, artifact_bytes: int) -> dict[str, Any]:
    return {
        "status": "done",
        "reason": "",
        "val_bpb": val_bpb,
        "val_loss": val_loss,
        "artifact_bytes": artifact_bytes,
        "under_cap": artifact_bytes <= 16_000_000,
    }


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = open_store(tmp_path / "results.db")
    store.upsert_sweep(SWEEP, "golf.toml", "[sweep]\nname = 'golf'\n")
    planned = [_run(*key) for key in DONE] + [_run(m, a, s) for m, a, s, _ in NOT_DONE]
    store.register_runs(planned, git_commit="abc123")
    for key, numbers in DONE.items():
        run_id = _run(*key).run_id
        store.mark_running(run_id, "node1", 1, f"runs/{run_id}", ["torchrun"])
        store.record_result(run_id, RunOutcome(status="done", result=_result(*numbers), metrics=[]))
    for match, arm, seed, status in NOT_DONE:
        if status is not None:
            bogus = _result(9.9, 9.9, 1)
            store.record_result(
                _run(match, arm, seed).run_id, RunOutcome(status=status, result=bogus, metrics=[])
            )
    return store


def _row(table: pd.DataFrame, match: str, arm: tuple[str, str]) -> pd.Series:
    hits = table[(table["match"] == match) & (table["arm"] == arm[0])]
    hits = hits[hits["variant"] == arm[1]]
    assert len(hits) == 1
    return hits.iloc[0]


def test_rows_and_order(store: Store) -> None:
    table = compare_table(store.runs_frame(SWEEP))
    assert list(table.columns) == COLUMNS
    assert list(zip(table["match"], table["arm"], strict=True)) == [
        (M600, "control"),
        (M600, "jepa"),
        (M600, "ema"),
        (M180, "control"),
        (M180, "jepa"),
        (M180, "ema"),
        (M1200, "jepa"),
    ]
    assert set(table["sweep"]) == {SWEEP} and set(table["lane"]) == {LANE}


def test_statistics_are_exact(store: Store) -> None:
    table = compare_table(store.runs_frame())
    s2 = math.sqrt(2)  # std (ddof=1) of two values d apart is d / sqrt(2)
    expected = {
        (M600, CONTROL): (1.21, 0.02 / s2, 1.86, 0.0, 0.0, 14_000_000),
        (M600, JEPA): (1.185, 0.01 / s2, 1.815, -0.025, -0.045, 15_000_000),
        (M600, EMA): (1.23, 0.04 / s2, 1.88, 0.02, 0.02, 14_500_000),
        (M180, CONTROL): (1.31, 0.02 / s2, 2.02, 0.0, 0.0, 15_100_000),
        (M180, JEPA): (1.285, 0.01 / s2, 1.98, -0.025, -0.04, 15_300_000),
        (M180, EMA): (1.32, 0.02 / s2, 2.03, 0.01, 0.01, 16_000_001),
    }
    for (match, arm), (bpb, std, loss, d_bpb, d_loss, size) in expected.items():
        row = _row(table, match, arm)
        assert row["n"] == 2
        assert row["val_bpb_mean"] == pytest.approx(bpb)
        assert row["val_bpb_std"] == pytest.approx(std)
        assert row["val_loss_mean"] == pytest.approx(loss)
        assert row["delta_bpb"] == pytest.approx(d_bpb, abs=1e-12)
        assert row["delta_loss_nats"] == pytest.approx(d_loss, abs=1e-12)
        assert row["artifact_bytes"] == size
        assert row["seeds"] == [1, 2]
        assert row["matched_seeds"]
        # Seed 3 of these groups was registered but failed, timed out or is pending.
        missing = (match, arm) in {(M180, CONTROL), (M180, JEPA), (M600, EMA)}
        assert row["missing_seeds"] == ([3] if missing else [])
        assert row["note"] == ("seeds not done: 3" if missing else "")


def test_cap_flag(store: Store) -> None:
    table = compare_table(store.runs_frame())
    assert not _row(table, M180, EMA)["under_cap"]
    assert table[table["arm"] != "ema"]["under_cap"].all()
    assert _row(table, M600, EMA)["under_cap"]


def test_arm_without_control(store: Store) -> None:
    row = _row(compare_table(store.runs_frame()), M1200, JEPA)
    assert row["n"] == 1
    assert row["val_bpb_mean"] == pytest.approx(1.10)
    assert math.isnan(row["val_bpb_std"])
    assert math.isnan(row["delta_bpb"]) and math.isnan(row["delta_loss_nats"])
    assert row["note"] == "no matched control"
    assert not row["matched_seeds"]


def test_unmatched_seeds_are_flagged(store: Store) -> None:
    extra = _run(M600, ("wide", ""), 7)
    store.register_runs([extra], git_commit=None)
    store.record_result(
        extra.run_id, RunOutcome(status="done", result=_result(1.0, 1.5, 1), metrics=[])
    )
    row = _row(compare_table(store.runs_frame()), M600, ("wide", ""))
    assert row["delta_bpb"] == pytest.approx(1.0 - 1.21)
    assert not row["matched_seeds"]
    assert row["note"] == "seeds differ from control"


def test_plain_read_sql_gives_the_same_table(store: Store, tmp_path: Path) -> None:
    plain = pd.read_sql("runs", sa.create_engine(f"sqlite:///{tmp_path / 'results.db'}"))
    pd.testing.assert_frame_equal(compare_table(plain), compare_table(store.runs_frame()))


def test_no_done_runs_gives_empty_table(tmp_path: Path) -> None:
    empty = open_store(tmp_path / "empty.db")
    table = compare_table(empty.runs_frame())
    assert table.empty and list(table.columns) == COLUMNS
    assert render_compare(table, "markdown") == ""


def test_markdown(store: Store) -> None:
    text = render_compare(compare_table(store.runs_frame()), "markdown")
    assert isinstance(text, str)
    assert text.startswith(f"### {SWEEP} / {LANE}\n")
    header = (
        "| match | arm | variant | n | val_bpb | delta_bpb | delta_loss_nats | p_welch "
        "| p_paired | p_margin | verdict | bytes | per seed | note |"
    )
    assert header in text
    expected_lines = [
        f"| {M180} | control |  | 2 | 1.3100 ± 0.0141 | +0.0000 | +0.0000 | — | — | — "
        "| control | 15,100,000 | 1: 1.3000, 2: 1.3200 | seeds not done: 3 |",
        f"| {M180} | jepa | jepa_weight=0.1 | 2 | 1.2850 ± 0.0071 | -0.0250 ± 0.0071 "
        "| -0.0400 ± 0.0141 | 0.0994 (Holm 0.1987) | 0.0628 | 0.1174 (Holm 0.2347) "
        "| not significant | 15,300,000 | 1: 1.2800, 2: 1.2900 | seeds not done: 3 |",
        f"| {M180} | ema |  | 2 | 1.3200 ± 0.0141 | +0.0100 ± 0.0000 | +0.0100 ± 0.0000 "
        "| 0.7236 | 1.0000 | 0.7761 | not significant | 16,000,001 OVER CAP (1/2) "
        "| 1: 1.3100, 2: 1.3300 |  |",
        f"| {M1200} | jepa | jepa_weight=0.1 | 1 | 1.1000 | — | — | — | — | — "
        "| no matched control | 15,000,000 | 1: 1.1000 | no matched control |",
    ]
    for line in expected_lines:
        assert line in text.splitlines()


def test_rich_tables_one_per_lane(store: Store) -> None:
    other = _run(M180, CONTROL, 1)
    lane2 = RunIdentity("f" * 16, SWEEP, "budget", "control", "", M180, 1, other.params)
    store.register_runs([lane2], git_commit=None)
    store.record_result(
        lane2.run_id, RunOutcome(status="done", result=_result(1.0, 1.5, 1), metrics=[])
    )

    rendered = render_compare(compare_table(store.runs_frame()), "table")
    assert isinstance(rendered, Group)
    sections = [fitted.section for fitted in rendered.renderables]
    assert [section.title for section in sections] == [f"{SWEEP} / {LANE}", f"{SWEEP} / budget"]
    assert len(sections[0].rows) == 7
    console = Console(file=io.StringIO(), width=400)
    console.print(rendered)
    printed = console.file.getvalue()
    rules = [line for line in printed.splitlines() if set(line.strip()) == {"─"}]
    assert len(rules) == 2 and "OVER CAP" in printed  # two tables: they fit
    assert "hidden" not in printed


def test_csv_round_trips(store: Store) -> None:
    table = compare_table(store.runs_frame())
    text = render_compare(table, "csv")
    assert isinstance(text, str)
    back = pd.read_csv(io.StringIO(text))
    assert list(back.columns) == COLUMNS
    assert back["val_bpb_mean"].tolist() == pytest.approx(table["val_bpb_mean"].tolist())
    assert json.loads(back.loc[0, "seeds"]) == [1, 2]


def test_unknown_format_lists_allowed(store: Store) -> None:
    with pytest.raises(
        UserError, match=r"^unknown report format 'html'; allowed: table, markdown, csv, json$"
    ):
        render_compare(compare_table(store.runs_frame()), "html")


def test_unknown_artifact_size_is_not_under_cap(store: Store) -> None:
    extra = _run(M1200, CONTROL, 1)
    store.register_runs([extra], git_commit=None)
    store.record_result(
        extra.run_id, RunOutcome(status="done", result={"val_bpb": 1.0}, metrics=[])
    )
    table = compare_table(store.runs_frame())
    row = _row(table, M1200, CONTROL)
    assert pd.isna(row["artifact_bytes"]) and pd.isna(row["under_cap"])  # unknown, not False
    line = (
        "| wallclock_s=1200 | control |  | 1 | 1.0000 | +0.0000 | +0.0000 | — | — | — "
        "| control | — | 1: 1.0000 |  |"
    )
    assert line in render_compare(table, "markdown").splitlines()
    Console(file=io.StringIO()).print(render_compare(table, "table"))


# --- significance: scipy's tests against closed-form textbook values ---
# Student's t CDF has closed forms for small df (e.g. Wikipedia, "Student's t-distribution"):
# df=1: 1/2 + arctan(t)/pi; df=2: 1/2 + t / (2 sqrt(2 + t^2));
# df=4: 1/2 + 3/8 * u * (1 - t^2 / (12 (1 + t^2/4))), u = t / sqrt(1 + t^2/4).


def t_cdf_df1(t: float) -> float:
    return 0.5 + math.atan(t) / math.pi


def t_cdf_df2(t: float) -> float:
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


def t_cdf_df4(t: float) -> float:
    u = t / math.sqrt(1 + t * t / 4)
    return 0.5 + 3 / 8 * u * (1 - t * t / (12 * (1 + t * t / 4)))


def test_existing_fixture_welch_and_paired_by_hand(store: Store) -> None:
    """arm [1.18, 1.19] vs control [1.20, 1.22]: Welch t = -0.025 / sqrt(0.00005/2 +
    0.0002/2) = -sqrt(5), df = 0.000125^2 / (0.000025^2 + 0.0001^2) = 25/17; the paired
    differences [-0.02, -0.03] give t = -0.025 / (0.00707 / sqrt 2) = -5 with df 1."""
    row = _row(compare_table(store.runs_frame()), M600, JEPA)
    assert row["t_welch"] == pytest.approx(-math.sqrt(5))
    assert row["df_welch"] == pytest.approx(25 / 17)
    assert row["t_paired"] == pytest.approx(-5.0)
    assert row["p_paired"] == pytest.approx(t_cdf_df1(-5.0))  # 0.062833
    assert row["p_paired"] == pytest.approx(0.0628329, abs=1e-7)
    # Two arms (jepa, ema) share this control: Holm doubles the smaller p.
    assert row["p_welch_holm"] == pytest.approx(2 * row["p_welch"])


def _compare(tmp_path: Path, runs: list) -> pd.DataFrame:
    store = open_store(tmp_path / "sig.db")
    runsets.write(store, runs)
    return compare_table(store.runs_frame())


def _arm(table: pd.DataFrame, arm: str = "jepa") -> pd.Series:
    hits = table[table["arm"] == arm]
    assert len(hits) == 1
    return hits.iloc[0]


def _pair(arm: list[float], control: list[float], **kw: Any) -> list:
    R = runsets.R
    runs = [R("iso", "control", seed, v, **kw) for seed, v in enumerate(control, 1)]
    runs += [R("iso", "jepa", seed, v, {"jepa_weight": 0.1}, **kw) for seed, v in enumerate(arm, 1)]
    return runs


def test_welch_df4_and_paired_df2_match_closed_forms(tmp_path: Path) -> None:
    """Equal variances and n = 3 + 3: Welch df = 4 exactly. arm 1.21, 1.22, 1.23 vs control
    1.23, 1.25, 1.24 (by seed): t = -0.02 / sqrt(2e-4/3) = -sqrt(6); paired differences
    -0.02, -0.03, -0.01 give t = -0.02 / (0.01 / sqrt 3) = -2 sqrt(3), df 2."""
    table = _compare(tmp_path, _pair([1.21, 1.22, 1.23], [1.23, 1.25, 1.24]))
    row = _arm(table)
    assert row["t_welch"] == pytest.approx(-math.sqrt(6))
    assert row["df_welch"] == pytest.approx(4.0)
    assert row["p_welch"] == pytest.approx(t_cdf_df4(-math.sqrt(6)))  # 0.035242
    assert row["p_welch"] == pytest.approx(0.0352419, abs=1e-6)
    assert row["t_paired"] == pytest.approx(-2 * math.sqrt(3))
    assert row["p_paired"] == pytest.approx(t_cdf_df2(-2 * math.sqrt(3)))  # 0.037090
    assert row["delta_bpb"] == pytest.approx(-0.02)
    assert row["delta_bpb_std"] == pytest.approx(0.01)
    # The two-sided 95% Welch interval: -0.02 -+ t_{0.975,4} * sqrt(2e-4/3), t = 2.776445.
    half = 2.7764451051977987 * math.sqrt(2e-4 / 3)
    assert row["delta_bpb_ci_low"] == pytest.approx(-0.02 - half)
    assert row["delta_bpb_ci_high"] == pytest.approx(-0.02 + half)
    # val_loss = val_bpb * ln 2 (byte-level data): deltas in nats are ln 2 times the bpb ones.
    assert row["delta_loss_nats"] == pytest.approx(-0.02 * math.log(2))
    # 0.02 bpb is 0.0139 nats: more than the margin, but p = 0.035 is not < 0.01.
    assert row["verdict"] == "not significant"
    assert not row["beats_margin"]


def test_welch_unequal_variances_df_by_hand(tmp_path: Path) -> None:
    """Variances 1e-4 and 4e-4, n = 3 each: t = -0.03 / sqrt(5e-4/3) = -3 / sqrt(5/3),
    df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 50/17."""
    table = _compare(tmp_path, _pair([1.19, 1.20, 1.21], [1.21, 1.23, 1.25]))
    row = _arm(table)
    assert row["t_welch"] == pytest.approx(-3 / math.sqrt(5 / 3))
    assert row["df_welch"] == pytest.approx(50 / 17)


def test_margin_is_welch_on_the_shifted_arm(tmp_path: Path) -> None:
    """Byte-level runs: val_bpb / val_loss = 1 / ln 2, so 0.005 nats = 0.005 / ln 2 bpb.
    Shifting the arm by it leaves Welch with equal variances, df 4, closed form."""
    table = _compare(tmp_path, _pair([1.21, 1.22, 1.23], [1.23, 1.25, 1.24]))
    row = _arm(table)
    margin = 0.005 / math.log(2)
    assert row["margin_bpb"] == pytest.approx(margin)
    t = (-0.02 + margin) / math.sqrt(2e-4 / 3)
    assert row["p_margin"] == pytest.approx(t_cdf_df4(t))


def test_clear_win_beats_the_margin(tmp_path: Path) -> None:
    runs = _pair([1.200, 1.201, 1.199], [1.2500, 1.2505, 1.2495])
    row = _arm(_compare(tmp_path, runs))
    assert row["p_margin"] < 0.01 and row["beats_margin"]
    assert row["verdict"] == "beats margin"


def test_significant_but_under_the_margin(tmp_path: Path) -> None:
    """-0.004 bpb is about -0.0028 nats: clearly better, but not by 0.005 nats."""
    runs = _pair([1.2460, 1.2461, 1.2459], [1.2500, 1.2501, 1.2499])
    row = _arm(_compare(tmp_path, runs))
    assert row["p_welch"] < 0.01 and row["p_margin"] > 0.5
    assert row["verdict"] == "significant, under margin"
    assert not row["beats_margin"]


def test_unmatched_seeds_are_never_called_significant(tmp_path: Path) -> None:
    R = runsets.R
    runs = [R("iso", "control", s, v) for s, v in [(1, 1.2500), (2, 1.2505), (3, 1.2495)]]
    runs += [R("iso", "jepa", s, v, {"jepa_weight": 0.1}) for s, v in [(4, 1.200), (5, 1.201)]]
    row = _arm(_compare(tmp_path, runs))
    assert row["p_margin"] < 0.01  # Welch is computed ...
    assert math.isnan(row["p_paired"]) and math.isnan(row["delta_bpb_std"])
    assert not row["beats_margin"]  # ... but no claim is made
    assert row["verdict"] == "seeds differ: no verdict"
    assert row["note"] == "seeds differ from control"


def test_single_seed_says_no_test(tmp_path: Path) -> None:
    table = _compare(tmp_path, _pair([1.20], [1.25]))
    row = _arm(table)
    assert row["verdict"] == "n=1: no test"
    for name in ("t_welch", "p_welch", "p_paired", "p_margin", "p_welch_holm"):
        assert math.isnan(row[name]), name
    text = render_compare(table, "markdown")
    assert "| -0.0500 | -0.0347 | n=1: no test | — | — | n=1: no test |" in text


def test_holm_step_down_textbook_example() -> None:
    """p = 0.01, 0.04, 0.03, 0.005 (m = 4): sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1
    = 0.02, 0.03, 0.06, 0.04, made monotone: 0.02, 0.03, 0.06, 0.06. A second family and a
    NaN (no test) are left alone."""
    p = pd.Series([0.01, 0.04, 0.03, 0.005, 0.2, math.nan, 0.6])
    family = pd.Series([1, 1, 1, 1, 2, 2, 2])
    adjusted = holm(p, family)
    assert adjusted.iloc[:4].tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjusted.iloc[4] == pytest.approx(0.4) and adjusted.iloc[6] == pytest.approx(0.6)
    assert math.isnan(adjusted.iloc[5])


def test_holm_over_many_arms_of_one_control(tmp_path: Path) -> None:
    R = runsets.R
    control = [1.2500, 1.2520, 1.2480]
    runs = [R("iso", "control", s, v) for s, v in enumerate(control, 1)]
    for w, shift in [(0.1, -0.004), (0.2, -0.002), (0.3, 0.0)]:
        values = [c + shift + d for c, d in zip(control, [0.001, -0.001, 0.0], strict=True)]
        runs += [R("iso", "jepa", s, v, {"jepa_weight": w}) for s, v in enumerate(values, 1)]
    table = _compare(tmp_path, runs)
    arms = table[table["arm"] == "jepa"]
    expected = holm(arms["p_welch"].reset_index(drop=True), pd.Series([0, 0, 0]))
    assert arms["p_welch_holm"].tolist() == pytest.approx(expected.tolist())
    ordered = arms.sort_values("p_welch")
    p = ordered["p_welch"].tolist()
    assert ordered["p_welch_holm"].iloc[0] == pytest.approx(3 * p[0])
    assert ordered["p_welch_holm"].iloc[1] == pytest.approx(max(3 * p[0], 2 * p[1]))


def test_json_format_has_every_column(store: Store) -> None:
    rows = json.loads(render_compare(compare_table(store.runs_frame()), "json"))
    assert list(rows[0]) == COLUMNS
    assert rows[0]["seeds"] == [1, 2] and rows[0]["p_welch"] is None


# --- the command line: `jepardy report` ---


def _study_db(tmp_path: Path) -> Path:
    store = open_store(tmp_path / "study.db")
    means = [1.30, 1.26, 1.30, 1.25, 1.30, 1.24, 1.30]
    runsets.write(store, runsets.curve("grid", [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], means, 0.002))
    runsets.write(store, runsets.horizon_runs("leader", runsets.LEADER))
    return tmp_path / "study.db"


def _invoke(*args: str) -> Any:
    from typer.testing import CliRunner

    from jepardy.cli.app import app

    # A wide terminal, so rich never wraps a line the tests read.
    return CliRunner().invoke(app, ["report", *args], env={"COLUMNS": "300"})


def test_cli_report_everything_as_json(tmp_path: Path) -> None:
    db = _study_db(tmp_path)
    result = _invoke(
        "--db", str(db), "--curve", "jepa_weight", "--horizons", "wallclock_s", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    keys = ["compare", "curves", "curve_points", "horizons", "horizon_taus", "horizon_flips"]
    assert list(data) == keys
    grid = next(c for c in data["curves"] if c["lane"] == "grid")
    assert grid["verdict"] == "non-monotonic" and grid["minima"] == [0.1, 0.3, 0.5]
    flagged = [a for a in data["horizons"] if a["flag"]]
    assert {a["variant"] for a in flagged} == {"jepa_weight=0.15"}


def test_cli_report_plot_and_markdown(tmp_path: Path) -> None:
    db = _study_db(tmp_path)
    png = tmp_path / "figs" / "report.png"
    result = _invoke(
        "--db",
        str(db),
        "--no-compare",
        "--horizons",
        "wallclock_s",
        "--format",
        "markdown",
        "--plot",
        str(png),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("### study / leader: val_bpb by wallclock_s\n")
    assert f"plot: {png}" in result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_report_plot_draws_the_forest_plot_of_the_compare_table(tmp_path: Path) -> None:
    png = tmp_path / "forest.png"
    result = _invoke("--db", str(_study_db(tmp_path)), "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert f"plot: {png}" in result.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    # Twelve arms, a row each, and no empty panel under them (no --curve, no --horizons).
    assert width > 1000 and 300 < height < 700, (width, height)


def test_html_report_finds_the_curves_and_horizons_the_sweep_has(tmp_path: Path) -> None:
    """Without --curve or --horizons the page still shows the weight curve (an arm axis with
    several values) and the horizons (a budget in the matches), beside the compare table."""
    page = tmp_path / "report.html"
    result = _invoke("--db", str(_study_db(tmp_path)), "--format", "html", "--out", str(page))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"report: {page}" in result.stderr
    text = page.read_text()
    for title in (
        "Each arm against its matched control",
        "Curves over jepa_weight and horizons over wallclock_s",
        "study / grid — jepa",  # a curve's table
        "study / leader: val_bpb by wallclock_s",  # a horizon set's table
        "What each arm changed",
    ):
        assert title in text, title
    # Images: the forest plot and the curves and horizons; these runs logged no metrics.
    assert text.count('<img src="data:image/png;base64,') == 2
    assert "No training metrics recorded" in text


def test_html_report_with_too_many_panels_says_so_and_keeps_the_tables(tmp_path: Path) -> None:
    store = open_store(tmp_path / "many.db")
    for lane in range(13):
        runsets.write(store, runsets.curve(f"lane{lane}", [0, 0.1, 0.2], [1.3, 1.2, 1.25], 0.002))
    page = tmp_path / "many.html"
    result = _invoke("--db", str(tmp_path / "many.db"), "--format", "html", "--out", str(page))
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "No plot: the HTML report: 13 curves and 0 horizon sets make 13 panels" in text
    assert "study / lane12 — jepa" in text  # the last curve's table is still there


def test_cli_report_terminal_tables(tmp_path: Path) -> None:
    result = _invoke("--db", str(_study_db(tmp_path)), "--curve", "jepa_weight")
    assert result.exit_code == 0, result.output
    assert "study / grid" in result.stdout and "beats margin" in result.stdout
    assert "verdict: non-monotonic: 3 minima at 0.1, 0.3, 0.5" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--no-compare"],
            "report: --no-compare and no --curve, --horizons or --health: nothing to report",
        ),
        (
            ["--curve", "jepa_weight", "--plot", "x.svg"],
            "report: --plot x.svg: the plot is written",
        ),
        (["--metric", "bpb"], "report: --metric 'bpb'; allowed: val_bpb, val_loss"),
        (["--format", "html"], "report --format html writes one file: add --out"),
        (["--format", "pdf"], "unknown report format 'pdf'; allowed: table, markdown"),
        (
            ["--curve", "jepa_weight", "--noise", "0"],
            "report: --noise 0.0; a noise floor must be > 0",
        ),
    ],
)
def test_cli_report_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    result = _invoke("--db", str(tmp_path / "none.db"), *args)
    assert isinstance(result.exception, UserError)
    assert str(result.exception).startswith(message)
    assert not (tmp_path / "none.db").exists()  # refused before any database was opened


def test_cli_report_missing_database(tmp_path: Path) -> None:
    result = _invoke("--db", str(tmp_path / "none.db"))
    assert str(result.exception) == (
        f"report: database {tmp_path / 'none.db'} does not exist; run a sweep first or pass --db"
    )
    assert not (tmp_path / "none.db").exists()


def test_long_reports_print_as_aligned_text_with_flags() -> None:
    """Past RICH_TABLE_MAX_ROWS rows a rich Table would take minutes to lay out; the same
    columns are printed as aligned text, over-cap cells still bold red."""
    from rich.text import Text

    from jepardy.analysis.render import RICH_TABLE_MAX_ROWS, Section, to_rich

    rows = [[f"arm{i}", f"{i:,}"] for i in range(RICH_TABLE_MAX_ROWS + 1)]
    rows[3][1] = "16,000,001 OVER CAP"
    flagged = [frozenset({"bytes"}) if i == 3 else frozenset() for i in range(len(rows))]
    section = Section(
        "big / lane", ["arm", "bytes"], rows, frozenset({"bytes"}), flagged, ["a note"]
    )
    (text,) = to_rich([section]).renderables
    assert isinstance(text, Text)
    lines = text.plain.splitlines()
    width = len("16,000,001 OVER CAP")
    assert lines[:3] == [
        "big / lane",
        "arm      " + "bytes".rjust(width),
        "-------  " + "-" * width,
    ]
    assert lines[6] == "arm3     16,000,001 OVER CAP" and lines[-1] == "a note"
    red = [text.plain[span.start : span.end] for span in text.spans if span.style == "bold red"]
    assert red == ["16,000,001 OVER CAP"]


def test_a_table_too_wide_for_the_terminal_keeps_whole_columns_and_names_the_rest() -> None:
    """Rich would squeeze a wide table into a narrow console and cut its numbers into "…";
    a section keeps whole columns, by priority, while they fit, and names those it left out;
    where everything fits, nothing is hidden."""
    from rich.console import Console

    from jepardy.analysis.render import Section, to_rich

    columns = [f"column_{i}" for i in range(10)]
    rows = [[f"{i}.{j:04d} ± 0.0{j:03d}" for j in range(10)] for i in range(3)]
    rows[1][9] = "16,000,001 OVER CAP"
    flagged = [frozenset(), frozenset({"column_9"}), frozenset()]
    priority = ("column_9", "column_0")
    section = Section(
        "wide / lane", columns, rows, frozenset(), flagged, ["a note"], priority=priority
    )
    narrow = Console(width=80, record=True, color_system=None)
    narrow.print(to_rich([section]))
    text = narrow.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "16,000,001 OVER CAP  0.0000 ± 0.0000" not in text  # table order is kept
    assert "0.0000 ± 0.0000  0.0001 ± 0.0001  0.0002 ± 0.0002" in text
    assert "16,000,001 OVER CAP" in text
    hidden = " ".join(text.split("a note")[1].split())
    assert hidden == (
        "6 columns hidden: column_3, column_4, column_5, column_6, column_7, column_8; "
        "a wider terminal or --format markdown shows them"
    )
    wide = Console(width=400, record=True, color_system=None)
    wide.print(to_rich([section]))
    table = wide.export_text()
    assert "  ".join(rows[2]) in table and "hidden" not in table


def test_csv_of_several_parts_names_each_table(tmp_path: Path) -> None:
    from jepardy.analysis.report import ReportRequest, build_report, render_report
    from jepardy.store.frames import load_runs

    report = build_report(
        load_runs(_study_db(tmp_path), status=None), ReportRequest(curve="jepa_weight")
    )
    text = render_report(report, "csv")
    assert isinstance(text, str)
    blocks = text.split("\n# ")
    assert [block.splitlines()[0].lstrip("# ") for block in blocks] == [
        "compare",
        "curves",
        "curve_points",
    ]
    points = pd.read_csv(io.StringIO(blocks[2].split("\n", 1)[1]))
    assert json.loads(points.loc[0, "values"]) == pytest.approx([1.298, 1.3, 1.302])
