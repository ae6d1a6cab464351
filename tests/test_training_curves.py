"""Training curves and params per arm, from runs and metric points recorded in a real
SQLite store, against answers worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import runsets

from jepardy.analysis.paramdiff import param_differences
from jepardy.analysis.training import CLOCK, CURVE_METRICS, training_figures, training_points
from jepardy.store.frames import load_runs, read_metrics
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import open_store

# (arm, seed) -> train_loss at steps 5 and 10, val_bpb at 10, clock (ms) at 5 and 10.
LOGS = {
    ("control", 1): ([4.0, 3.0], 2.0, [1000.0, 3000.0]),
    ("control", 2): ([4.2, 3.4], 2.2, [1200.0, 3400.0]),
    ("jepa", 1): ([4.1, 2.9], 1.9, [1100.0, math.nan]),
    ("jepa", 2): ([4.3, 3.1], 2.1, [1300.0, 3300.0]),
}


def metrics(arm: str, seed: int) -> list[dict]:
    losses, val, clock = LOGS[(arm, seed)]
    points = [
        {"step": s, "name": "train_loss", "value": v} for s, v in zip((5, 10), losses, strict=True)
    ]
    points += [{"step": s, "name": CLOCK, "value": v} for s, v in zip((5, 10), clock, strict=True)]
    points.append({"step": 8, "name": "val_bpb", "value": val})  # between two log steps
    points.append({"step": 10, "name": "lr_mult", "value": 1.0})  # not a curve's metric
    return points


@pytest.fixture
def db(tmp_path: Path) -> Path:
    store = open_store(tmp_path / "curves.db")
    runs = [
        runsets.R("main", arm, seed, 2.0, variant={"jepa_weight": 0.1} if arm == "jepa" else {})
        for arm, seed in LOGS
    ]
    runs.append(runsets.R("main", "jepa", 3, None, {"jepa_weight": 0.1}, status="pending"))
    store.upsert_sweep(runsets.SWEEP, "s.toml", "[sweep]\n")
    plans = [runsets.planned(run) for run in runs]
    store.register_runs(plans, git_commit="abc")
    for run, plan in zip(runs[:4], plans, strict=False):
        outcome = RunOutcome("done", result=runsets.result(run), metrics=metrics(run.arm, run.seed))
        store.record_result(plan.run_id, outcome)
    return tmp_path / "curves.db"


def test_points_are_the_mean_and_range_over_seeds(db: Path) -> None:
    runs = load_runs(db)
    recorded = read_metrics(db, runs["id"].tolist(), [*CURVE_METRICS, CLOCK])
    assert set(recorded["name"]) == {"train_loss", "val_bpb", CLOCK}
    points = training_points(runs, recorded).set_index(["arm", "metric", "step"])
    control = points.loc[("control", "train_loss", 10)]
    assert control["mean"] == pytest.approx(3.2)
    assert (control["low"], control["high"], control["n"]) == (3.0, 3.4, 2)
    assert control["time_s"] == pytest.approx(3.2)  # (3.0 + 3.4) / 2
    # val_bpb at step 8: the clock interpolated between steps 5 and 10 of each run.
    val = points.loc[("control", "val_bpb", 8)]
    assert val["mean"] == pytest.approx(2.1)
    assert val["time_s"] == pytest.approx((1.0 + 0.6 * 2.0 + 1.2 + 0.6 * 2.2) / 2)
    # A non-finite clock point is left out: seed 1 of jepa has a clock at step 5 only, so
    # its step-8 point has no time and the mean time is seed 2's alone.
    jepa_val = points.loc[("jepa", "val_bpb", 8)]
    assert jepa_val["n"] == 2
    assert jepa_val["time_s"] == pytest.approx(1.3 + 0.6 * 2.0)
    assert list(pd.unique(points.reset_index()["arm"])) == ["control", "jepa"]


def test_one_figure_per_lane_with_a_row_per_match(db: Path) -> None:
    runs = load_runs(db)
    points = training_points(runs, read_metrics(db, runs["id"].tolist(), CURVE_METRICS))
    [(title, figure, left_out)] = training_figures(points)
    assert (title, left_out) == ("study / main", 0)
    axes = figure.axes
    assert len(axes) == 4
    # No clock recorded here: the time panels say so instead of drawing nothing.
    assert [t.get_text() for t in axes[2].texts] == ["no train_loss points"]
    assert axes[0].get_legend() is not None and axes[1].get_legend() is None


def test_params_that_differ_from_the_control(tmp_path: Path) -> None:
    store = open_store(tmp_path / "params.db")
    shared = {"n_layers": 2, "lr": 0.003}
    runs = [
        runsets.R("main", "control", 1, 1.3, extra=shared),
        runsets.R("main", "control", 2, 1.3, extra=shared),
        runsets.R("main", "jepa", 1, 1.2, {"jepa_weight": 0.1}, extra={**shared, "ema": True}),
        runsets.R("main", "wide", 1, 1.2, extra={"n_layers": 4, "lr": 0.003, "mlp_mult": 3}),
        runsets.R("orphan", "jepa", 1, 1.2, {"jepa_weight": 0.1}),  # no control in its lane
    ]
    runsets.write(store, runs)
    table = param_differences(load_runs(store))
    got = [tuple(row) for row in table[["arm", "param", "control", "value"]].to_numpy()]
    assert got == [
        ("jepa", "ema", "false", "true"),
        ("jepa", "jepa_weight", "0", "0.1"),  # the store's default where the spec is silent
        ("wide", "mlp_mult", "—", "3"),  # unset in the control
        ("wide", "n_layers", "2", "4"),
    ]
