"""The pandas API: load_runs gives a tidy frame, summarize the per-arm statistics."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import runsets
from runsets import R

from jepardy.analysis.compare import compare_table
from jepardy.analysis.summary import summarize
from jepardy.errors import UserError
from jepardy.store.frames import load_runs, tidy_runs
from jepardy.store.transitions import Store, open_store

# t_{0.975, 3} = 3.182 in printed tables.
T975_3 = 3.182446305284263


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = open_store(tmp_path / "results.db")
    runs = [R("iso", "control", s, v, match={"ema": False}) for s, v in enumerate([1.30, 1.32], 1)]
    runs += [
        R("iso", "jepa", s, v, {"jepa_weight": 0.1}, {"ema": False}, extra={"jepa_target": "ema"})
        for s, v in enumerate([1.21, 1.22, 1.23, 1.24], 1)
    ]
    runs.append(R("iso", "jepa", 5, 9.9, {"jepa_weight": 0.1}, {"ema": False}, status="failed"))
    runs.append(R("iso", "jepa", 6, None, {"jepa_weight": 0.1}, {"ema": False}, status="pending"))
    runs.append(R("big", "control", 1, 1.1, artifact_bytes=16_000_001))
    runsets.write(store, runs)
    runsets.write(store, [R("iso", "control", 1, 1.0)], sweep="other")
    return store


def test_load_runs_is_tidy(store: Store) -> None:
    runs = load_runs(store)
    assert len(runs) == 8  # done runs only, both sweeps
    assert runs["id"].is_unique
    assert runs["status"].eq("done").all()
    # Params are columns: from the JSON where set, from the typed column where not.
    jepa = runs[runs["arm"] == "jepa"]
    assert jepa["jepa_weight"].tolist() == [0.1] * 4
    assert jepa["jepa_target"].tolist() == ["ema"] * 4
    assert runs[runs["arm"] == "control"]["jepa_weight"].eq(0.0).all()  # store default
    assert runs.loc[runs["lane"] == "iso", "ema"].eq(False).all()
    assert "params" not in runs.columns and "log_tail" not in runs.columns
    assert runs["seq"].is_monotonic_increasing
    assert runs["val_bpb"].dtype == "float64" and runs["artifact_bytes"].dtype == "Int64"
    assert runs.loc[runs["lane"] == "big", "under_cap"].tolist() == [False]


def test_load_runs_filters(store: Store, tmp_path: Path) -> None:
    assert len(load_runs(tmp_path / "results.db", sweep="other")) == 1
    assert len(load_runs(store, status=None)) == 10
    assert load_runs(store, status="failed")["seed"].tolist() == [5]
    with pytest.raises(UserError, match=r"^unknown run status 'finished'; allowed: pending, "):
        load_runs(store, status="finished")


def test_tidy_runs_of_a_plain_read_sql_matches_load_runs(store: Store, tmp_path: Path) -> None:
    import sqlalchemy as sa

    plain = pd.read_sql("runs", sa.create_engine(f"sqlite:///{tmp_path / 'results.db'}"))
    tidy = tidy_runs(plain)
    loaded = load_runs(store, status=None)
    for name in ("id", "jepa_weight", "ema", "val_bpb", "seed", "under_cap", "artifact_bytes"):
        pd.testing.assert_series_equal(tidy[name], loaded[name], obj=name)


def test_a_param_named_params_survives_a_second_tidy_pass(tmp_path: Path) -> None:
    """An older ingest stored a log's `params:65536` line as a param named "params": it
    becomes `param_params`, so tidying the frame again (the HTML report does) does not read
    it as the params JSON."""
    store = open_store(tmp_path / "results.db")
    runsets.write(store, [R("iso", "control", 1, 1.3, {"params": 65536, "lr": 0.02})])
    once = load_runs(store)
    assert once["param_params"].tolist() == [65536] and once["lr"].tolist() == [0.02]
    pd.testing.assert_frame_equal(tidy_runs(once), once)


def test_summarize_textbook_values(store: Store) -> None:
    """Values 1.21, 1.22, 1.23, 1.24: mean 1.225, sd = 0.01 * sqrt(5/3) = 0.0129099,
    sem = sd / 2, and the 95% t-interval mean -+ t_{0.975,3} * sem."""
    table = summarize(load_runs(store), by=["lane", "arm"])
    jepa = table[(table["lane"] == "iso") & (table["arm"] == "jepa")].iloc[0]
    sd = 0.01 * math.sqrt(5 / 3)
    assert jepa["n"] == 4
    assert jepa["mean"] == pytest.approx(1.225)
    assert jepa["std"] == pytest.approx(sd)
    assert jepa["sem"] == pytest.approx(sd / 2)
    assert jepa["ci_low"] == pytest.approx(1.225 - T975_3 * sd / 2)
    assert jepa["ci_high"] == pytest.approx(1.225 + T975_3 * sd / 2)
    assert jepa["seeds"] == [1, 2, 3, 4]
    assert jepa["values"] == pytest.approx([1.21, 1.22, 1.23, 1.24])
    big = table[table["lane"] == "big"].iloc[0]
    assert big["n"] == 1 and math.isnan(big["std"]) and math.isnan(big["ci_low"])
    assert big["artifact_bytes"] == 16_000_001 and big["over_cap_runs"] == 1


def test_summarize_by_a_param_column(store: Store) -> None:
    table = summarize(load_runs(store, sweep="study"), by="jepa_weight")
    assert table["jepa_weight"].tolist() == [0.0, 0.1]
    assert table["n"].tolist() == [3, 4]


def test_compare_uses_the_same_numbers_as_summarize(store: Store) -> None:
    runs = load_runs(store, sweep="study", status=None)
    compare = compare_table(runs)
    summary = summarize(runs[runs["status"] == "done"])
    merged = compare.merge(summary, on=["sweep", "lane", "match", "arm", "variant"])
    assert len(merged) == len(compare) == 3
    assert merged["val_bpb_mean"].tolist() == merged["mean"].tolist()
    assert merged["val_bpb_ci_low"].tolist() == pytest.approx(
        merged["ci_low"].tolist(), nan_ok=True
    )


def test_unknown_metric(store: Store) -> None:
    with pytest.raises(UserError, match=r"^no column 'bpb' in the runs"):
        summarize(load_runs(store), metric="bpb")


def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^database .*nope.db does not exist$"):
        load_runs(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()
