"""The compare table and its renderings, from runs recorded in a real SQLite store."""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from rich.console import Console, Group
from rich.table import Table

from jepardy.errors import UserError
from jepardy.report import COLUMNS, compare_table, render_compare
from jepardy.store import Store, open_store

SWEEP = "golf"
LANE = "isolation"
M180, M600, M1200 = "wallclock_s=180", "wallclock_s=600", "wallclock_s=1200"
JEPA = ("jepa", "jepa_weight=0.1")
EMA = ("ema", "")
CONTROL = ("control", "")


@dataclass(frozen=True)
class Planned:
    """A stand-in for jepardy.spec.PlannedRun with the attributes the store reads."""

    run_id: str
    sweep: str
    lane: str
    arm: str
    variant: str
    match: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    nproc: int = 1
    kind: str = "jepardy"


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
    return Planned(run_id, SWEEP, LANE, arm[0], arm[1], match, seed, params)


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
        store.record_result(run_id, status="done", result=_result(*numbers), metrics=[])
    for match, arm, seed, status in NOT_DONE:
        if status is not None:
            bogus = _result(9.9, 9.9, 1)
            store.record_result(
                _run(match, arm, seed).run_id, status=status, result=bogus, metrics=[]
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
        assert row["note"] == ""


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
    store.record_result(extra.run_id, status="done", result=_result(1.0, 1.5, 1), metrics=[])
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
    header = "| match | arm | variant | val_bpb | delta_bpb | delta_loss_nats | artifact_bytes"
    assert header in text
    expected_lines = [
        f"| {M180} | control |  | 1.3100 ± 0.0141 (n=2) | +0.0000 | +0.0000 "
        "| 15,100,000 | 1, 2 |  |",
        f"| {M180} | jepa | jepa_weight=0.1 | 1.2850 ± 0.0071 (n=2) | -0.0250 | -0.0400 "
        "| 15,300,000 | 1, 2 |  |",
        f"| {M180} | ema |  | 1.3200 ± 0.0141 (n=2) | +0.0100 | +0.0100 "
        "| 16,000,001 OVER CAP | 1, 2 |  |",
        f"| {M1200} | jepa | jepa_weight=0.1 | 1.1000 (n=1) | — | — "
        "| 15,000,000 | 1 | no matched control |",
    ]
    for line in expected_lines:
        assert line in text.splitlines()


def test_rich_tables_one_per_lane(store: Store) -> None:
    other = _run(M180, CONTROL, 1)
    lane2 = Planned("f" * 16, SWEEP, "budget", "control", "", M180, 1, other.params)
    store.register_runs([lane2], git_commit=None)
    store.record_result(lane2.run_id, status="done", result=_result(1.0, 1.5, 1), metrics=[])

    rendered = render_compare(compare_table(store.runs_frame()), "table")
    assert isinstance(rendered, Group)
    tables = list(rendered.renderables)
    assert all(isinstance(table, Table) for table in tables)
    assert [table.title for table in tables] == [f"{SWEEP} / {LANE}", f"{SWEEP} / budget"]
    assert tables[0].row_count == 7
    console = Console(file=io.StringIO(), width=200)
    console.print(rendered)
    assert "OVER CAP" in console.file.getvalue()


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
        UserError, match=r"^unknown report format 'html'; allowed: table, markdown, csv$"
    ):
        render_compare(compare_table(store.runs_frame()), "html")


def test_unknown_artifact_size_is_not_under_cap(store: Store) -> None:
    extra = _run(M1200, CONTROL, 1)
    store.register_runs([extra], git_commit=None)
    store.record_result(extra.run_id, status="done", result={"val_bpb": 1.0}, metrics=[])
    table = compare_table(store.runs_frame())
    row = _row(table, M1200, CONTROL)
    assert pd.isna(row["artifact_bytes"]) and not row["under_cap"]
    assert "| wallclock_s=1200 | control |  | 1.0000 (n=1) | +0.0000 | +0.0000 | — | 1 |  |" in (
        render_compare(table, "markdown")
    )
    Console(file=io.StringIO()).print(render_compare(table, "table"))
