"""Verdicts that do not mislead: a re-export is never a control or another seed of its
source's arm, and a significant loss is named as one, in every output format."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import runsets
from runsets import R

from jepardy.analysis.compare import NOT_SIGNIFICANT, WORSE, compare_table
from jepardy.analysis.report import ReportRequest, rendered_text, run_report
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import Store, open_store

LANE = "isolation"
VARIANT = {"jepa_weight": 0.1}
EXPORT_VARIANT = "export=int8+zstd19"


def _export(store: Store, source: R, val_bpb: float) -> str:
    """Record a re-export of `source` as `jepardy export` does: same sweep, lane, arm, match
    and seed, kind "export", parent_run set, the export's variant after the source's."""
    parent = runsets.planned(source)
    variant = ",".join(part for part in (parent.variant, EXPORT_VARIANT) if part)
    run = dataclasses.replace(
        parent,
        run_id=parent.run_id[::-1],
        variant=variant,
        params={**parent.params, "quant_bits": 8, "zstd_level": 19},
        kind="export",
        parent_run=parent.run_id,
    )
    store.register_runs([run], git_commit="abc123")
    result = runsets.result(dataclasses.replace(source, val_bpb=val_bpb))
    store.record_result(run.run_id, RunOutcome(status="done", result=result, metrics=[]))
    return run.run_id


def _seeds(arm: str, values: tuple[float, ...], variant: dict | None = None) -> list[R]:
    """One run of `arm` per value, seeds 1, 2, ..."""
    return [R(LANE, arm, seed, v, variant or {}) for seed, v in enumerate(values, start=1)]


def _row(table: pd.DataFrame, arm: str, variant: str) -> pd.Series:
    hits = table[(table["arm"] == arm) & (table["variant"] == variant)]
    assert len(hits) == 1
    return hits.iloc[0]


@pytest.fixture
def paired(tmp_path: Path) -> tuple[Store, list[R]]:
    """A control and a JEPA arm over three seeds, per-seed differences that vary."""
    control = _seeds("control", (1.300, 1.310, 1.305))
    jepa = _seeds("jepa", (1.290, 1.306, 1.299), VARIANT)
    store = open_store(tmp_path / "results.db")
    runsets.write(store, [*control, *jepa])
    return store, control


def test_export_of_control_changes_no_arm(paired: tuple[Store, list[R]]) -> None:
    store, control = paired
    before = _row(compare_table(store.runs_frame()), "jepa", "jepa_weight=0.1")
    _export(store, control[0], 1.420)
    table = compare_table(store.runs_frame())
    after = _row(table, "jepa", "jepa_weight=0.1")
    columns = ["n", "delta_bpb", "delta_bpb_std", "delta_loss_std", "p_welch", "p_paired"]
    assert after[columns].tolist() == pytest.approx(before[columns].tolist())
    # The only control row is the real control, with its three seeds.
    controls = table[table["verdict"] == "control"]
    assert controls["variant"].tolist() == [""] and controls["n"].tolist() == [3]
    export = _row(table, "control", EXPORT_VARIANT)
    # Against its own source run (seed 1, 1.300), not the control's mean (1.305).
    assert export["n"] == 1 and export["delta_bpb"] == pytest.approx(1.420 - 1.300)
    assert (export["versus"], export["verdict"]) == ("source", "vs source: n=1")
    assert export["unmatched"] == ""  # its kind and nproc are the export's, not a mismatch


def test_export_of_arm_is_its_own_row(paired: tuple[Store, list[R]]) -> None:
    store, _ = paired
    source = R(LANE, "jepa", 1, 1.290, VARIANT)
    _export(store, source, 1.295)
    table = compare_table(store.runs_frame())
    assert _row(table, "jepa", "jepa_weight=0.1")["n"] == 3
    export = _row(table, "jepa", f"jepa_weight=0.1,{EXPORT_VARIANT}")
    assert export["n"] == 1 and export["verdict"] == "vs source: n=1"
    assert export["delta_bpb"] == pytest.approx(1.295 - 1.290)
    # Listed right after its source's row.
    rows = list(zip(table["arm"], table["variant"], strict=True))
    assert rows.index(("jepa", f"jepa_weight=0.1,{EXPORT_VARIANT}")) == 2


@pytest.fixture
def worse(tmp_path: Path) -> Path:
    """An arm about 0.18 bpb worse than its control over three seeds."""
    control = _seeds("control", (1.20, 1.25, 1.22))
    bad = _seeds("bad", (1.39, 1.45, 1.42), VARIANT)
    same = _seeds("same", (1.21, 1.24, 1.23), {"ema": 1})
    runsets.write(open_store(tmp_path / "results.db"), [*control, *bad, *same])
    return tmp_path / "results.db"


def test_significant_loss_is_named(worse: Path) -> None:
    table = compare_table(open_store(worse).runs_frame())
    bad = _row(table, "bad", "jepa_weight=0.1")
    assert bad["p_welch"] > 0.99 and bad["p_worse"] == pytest.approx(1 - bad["p_welch"])
    assert bad["p_worse_holm"] < 0.01 and bad["verdict"] == WORSE
    assert _row(table, "same", "ema=1")["verdict"] == NOT_SIGNIFICANT


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
def test_significant_loss_in_every_format(worse: Path, fmt: str) -> None:
    text = rendered_text(run_report(worse, ReportRequest(fmt=fmt)).rendered)
    assert WORSE in text
    if fmt == "json":
        verdicts = {row["arm"]: row["verdict"] for row in json.loads(text)["compare"]}
        assert verdicts["bad"] == WORSE
