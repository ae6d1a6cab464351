"""Curves over a param, from result sets with known shapes written into a real SQLite store."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import runsets
from runsets import R

from jepardy.analysis.curves import Curves, curve_table
from jepardy.analysis.report import ReportRequest, build_report, render_report
from jepardy.analysis.turns import verdict_of, zigzag
from jepardy.errors import UserError
from jepardy.store.frames import load_runs
from jepardy.store.transitions import open_store

X6 = [0, 0.1, 0.2, 0.3, 0.4, 0.5]
X7 = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
SD = 0.002
# Student's t quantiles t_{0.975, df} (printed tables give 4.303, 2.179, 2.145).
T975 = {2: 4.302652729911275, 12: 2.1788128296634177, 14: 2.1447866879169273}


def curves_of(tmp_path: Path, runs: list[R], **kw: object) -> Curves:
    store = open_store(tmp_path / "curves.db")
    runsets.write(store, runs)
    return curve_table(load_runs(store), "jepa_weight", **kw)  # type: ignore[arg-type]


def only(curves: Curves) -> dict:
    assert len(curves.summary) == 1
    return curves.summary.iloc[0].to_dict()


def test_monotonic_curve(tmp_path: Path) -> None:
    means = [1.30, 1.29, 1.28, 1.27, 1.26, 1.25]
    curves = curves_of(tmp_path, runsets.curve("iso", X6, means, SD))
    row = only(curves)
    assert row["verdict"] == "monotonic"
    assert row["verdict_text"] == "monotonic: lowest at 0.5"
    assert row["minima"] == [0.5] and row["maxima"] == []
    assert row["direction_changes"] == 0
    assert row["best_x"] == 0.5 and row["best_mean"] == pytest.approx(1.25)
    assert row["within_noise_of_best"] == [0.5]
    # Pooled seed sd of six points of three seeds: 0.002 over 6 * 2 = 12 df.
    assert row["pooled_sd"] == pytest.approx(SD) and row["noise_df"] == 12
    assert row["noise_source"] == (
        "seeds: pooled sd 0.0020 (df 12), 95% least significant difference"
    )
    points = curves.points
    assert points["jepa_weight"].tolist() == X6
    assert points["source"].tolist() == ["control"] + ["jepa"] * 5  # control joins at 0
    assert points["mean"].tolist() == pytest.approx(means)
    assert points["n"].tolist() == [3] * 6
    half = T975[2] * SD / math.sqrt(3)  # t-interval of three seeds
    assert points["ci_low"].tolist() == pytest.approx([m - half for m in means])
    assert points["values"].iloc[1] == pytest.approx([1.288, 1.29, 1.292])


def test_u_shaped_curve(tmp_path: Path) -> None:
    means = [1.30, 1.27, 1.25, 1.24, 1.25, 1.27, 1.30]
    curves = curves_of(tmp_path, runsets.curve("iso", X7, means, SD))
    row = only(curves)
    assert row["verdict"] == "single-minimum"
    assert row["verdict_text"] == "single-minimum: minimum at 0.3"
    assert row["minima"] == [0.3] and row["maxima"] == []
    assert row["direction_changes"] == 1
    assert curves.points["turn"].tolist() == ["", "", "", "min", "", "", ""]
    assert curves.points["is_best"].tolist() == [False, False, False, True, False, False, False]


def test_three_minima_above_the_noise(tmp_path: Path) -> None:
    means = [1.30, 1.26, 1.30, 1.25, 1.30, 1.24, 1.30]
    curves = curves_of(tmp_path, runsets.curve("iso", X7, means, SD), resamples=199)
    row = only(curves)
    assert row["verdict"] == "non-monotonic"
    assert row["verdict_text"] == "non-monotonic: 3 minima at 0.1, 0.3, 0.5"
    assert row["minima"] == [0.1, 0.3, 0.5] and row["maxima"] == [0.2, 0.4]
    assert row["direction_changes"] == 5
    assert row["best_x"] == 0.5
    assert row["noise_df"] == 14
    # No monotone fit comes near: every resample is below the observed SSE, p = 1 / 200.
    assert row["p_monotone"] == pytest.approx(1 / 200)
    assert row["argmin_stability"] == 1.0


def test_wiggles_inside_the_noise_are_not_turns(tmp_path: Path) -> None:
    """The raw means turn up twice (0.1 -> 0.2, 0.3 -> 0.4, by 0.002), but the seed sd is
    0.004: the least significant difference t_{0.975,12} * 0.004 * sqrt(2/3) = 0.0071."""
    means = [1.300, 1.290, 1.292, 1.280, 1.282, 1.270]
    assert int(np.sum(np.diff(np.sign(np.diff(means))) != 0)) == 4  # naive direction changes
    curves = curves_of(tmp_path, runsets.curve("iso", X6, means, 0.004), resamples=199)
    row = only(curves)
    assert row["verdict"] == "monotonic"
    assert row["minima"] == [0.5] and row["direction_changes"] == 0
    assert row["pooled_sd"] == pytest.approx(0.004)
    assert row["within_noise_of_best"] == [0.5]
    assert row["p_monotone"] > 0.05


def test_flat_within_the_noise(tmp_path: Path) -> None:
    means = [1.300, 1.302, 1.299, 1.301, 1.300, 1.302]
    row = only(curves_of(tmp_path, runsets.curve("iso", X6, means, 0.004)))
    assert row["verdict"] == "monotonic"
    assert row["verdict_text"] == "monotonic: flat within the noise"
    assert row["minima"] == [] and row["direction_changes"] == 0
    assert row["best_x"] == 0.2
    assert row["within_noise_of_best"] == X6


def test_single_seed_uses_the_noise_floor_and_says_so(tmp_path: Path) -> None:
    means = [1.300, 1.290, 1.292, 1.280, 1.282, 1.270]
    runs = runsets.curve("iso", X6, means, 0.0, seeds=(1,))
    coarse = only(curves_of(tmp_path, runs, noise=0.005))
    assert coarse["verdict"] == "monotonic" and coarse["minima"] == [0.5]
    assert coarse["noise_source"] == "--noise 0.005: one seed per point"
    assert coarse["noise_floor"] == 0.005 and math.isnan(coarse["pooled_sd"])
    fine = curve_table(load_runs(tmp_path / "curves.db"), "jepa_weight", noise=0.001)
    row = only(fine)
    assert row["verdict"] == "non-monotonic"
    assert row["minima"] == [0.1, 0.3, 0.5] and row["maxima"] == [0.2, 0.4]
    assert row["direction_changes"] == 4
    assert math.isnan(row["p_monotone"])  # no seeds: nothing to resample


def test_single_seed_without_a_noise_floor_is_refused(tmp_path: Path) -> None:
    runs = runsets.curve("iso", X6, [1.3, 1.29, 1.28, 1.27, 1.26, 1.25], 0.0, seeds=(1,))
    with pytest.raises(UserError, match=r"^curve study / iso / jepa: every point has one seed"):
        curves_of(tmp_path, runs)


def test_seeds_win_over_the_noise_floor(tmp_path: Path) -> None:
    runs = runsets.curve("iso", X6, [1.30, 1.29, 1.28, 1.27, 1.26, 1.25], SD)
    row = only(curves_of(tmp_path, runs, noise=0.5))
    assert row["noise_source"].endswith("; --noise 0.5 not used")


def test_one_curve_per_match_and_over_cap_points(tmp_path: Path) -> None:
    runs = runsets.curve("iso", X6, [1.30, 1.29, 1.28, 1.27, 1.26, 1.25], SD, match={"ema": False})
    runs += runsets.curve(
        "iso", X7, [1.30, 1.26, 1.30, 1.25, 1.30, 1.24, 1.30], SD, match={"ema": True}
    )
    big = R("iso", "jepa", 4, 1.31, {"jepa_weight": 0.2}, {"ema": True}, artifact_bytes=16_000_001)
    curves = curves_of(tmp_path, [*runs, big])
    summary = curves.summary
    assert summary["match"].tolist() == ["ema=False", "ema=True"]
    assert summary["verdict"].tolist() == ["monotonic", "non-monotonic"]
    assert summary["over_cap_runs"].tolist() == [0, 1]
    point = curves.points[
        (curves.points["match"] == "ema=True") & (curves.points["jepa_weight"] == 0.2)
    ]
    assert point["n"].item() == 4 and point["over_cap_runs"].item() == 1
    text = render_report(build_report(load_runs(tmp_path / "curves.db"), _request()), "markdown")
    assert "16,000,001 OVER CAP (1/4)" in text
    assert "- 1 runs OVER CAP (16,000,000 bytes)" in text


def _request(**kw: object) -> ReportRequest:
    return ReportRequest(compare=False, curve="jepa_weight", **kw)  # type: ignore[arg-type]


def test_markdown_names_verdict_best_and_noise(tmp_path: Path) -> None:
    means = [1.300, 1.290, 1.292, 1.280, 1.282, 1.270]
    store = open_store(tmp_path / "curves.db")
    runsets.write(store, runsets.curve("iso", X6, means, 0.004))
    text = render_report(build_report(load_runs(store), _request()), "markdown")
    lines = text.splitlines()
    assert lines[0] == "### study / iso — jepa: val_bpb over jepa_weight"
    assert (
        "| jepa_weight | source | n | mean ± std | 95% CI | vs best | turn | per seed | bytes |"
        in lines
    )
    assert "- verdict: monotonic: lowest at 0.5" in lines
    assert "- best: 0.5 (1.2700); within noise of it: 0.5" in lines
    row = next(line for line in lines if line.startswith("| 0.5 |"))
    assert "| best | min |" in row


def test_a_param_that_no_run_has(tmp_path: Path) -> None:
    runs = runsets.curve("iso", X6, [1.30, 1.29, 1.28, 1.27, 1.26, 1.25], SD)
    store = open_store(tmp_path / "curves.db")
    runsets.write(store, runs)
    with pytest.raises(
        UserError, match=r"^no run has param 'lr'; numeric params found: .*jepa_weight"
    ):
        curve_table(load_runs(store), "lr")


def test_series_with_one_value_are_not_curves(tmp_path: Path) -> None:
    runs = runsets.curve("iso", X6, [1.30, 1.29, 1.28, 1.27, 1.26, 1.25], SD)
    runs += [R("iso", "ema", s, 1.2, extra={"ema": True}) for s in (1, 2, 3)]
    curves = curves_of(tmp_path, runs)
    assert len(curves.summary) == 1 and curves.skipped == 1
    assert isinstance(curves.points, pd.DataFrame)


def test_zigzag_turns_and_ties() -> None:
    """Unit check of the turn finder with a constant threshold of 0.01."""
    flat = np.full((5, 5), 0.01)
    assert zigzag(np.array([1.0, 1.005, 0.998, 1.004, 1.0]), flat) == []  # all inside noise
    assert zigzag(np.array([1.0, 0.98, 0.96, 0.94, 0.92]), flat) == [0, 4]
    # A tie at the bottom: the first of the equal points is the turn, as argmin picks it.
    assert zigzag(np.array([1.0, 0.9, 0.9, 1.0, 1.0]), flat) == [0, 1, 3]
    means = np.array([1.0, 0.9, 0.9, 1.0, 1.0])
    assert verdict_of(means, [0, 1, 3]) == ("single-minimum", [1], [])
    # Up then down: two minima (the ends), a non-monotonic curve.
    assert verdict_of(np.array([0.9, 1.0, 0.9]), [0, 1, 2]) == ("non-monotonic", [0, 2], [1])


def test_a_misspelt_param_lists_every_param_a_curve_takes(tmp_path: Path) -> None:
    """The report reads only the params it needs; a param no run has is named with every
    numeric param of the runs (lr and d_model too), and not the text ones (data_dir)."""
    from jepardy.analysis.report import run_report

    extra = {"lr": 0.003, "d_model": 64, "data_dir": "data/x"}
    runs = [R("iso", "control", s, 1.3, extra={**extra, "jepa_weight": 0.0}) for s in (1, 2)]
    runs += [R("iso", "jepa", s, 1.3, {"jepa_weight": 0.1}, extra=extra) for s in (1, 2)]
    runsets.write(open_store(tmp_path / "typo.db"), runs)
    with pytest.raises(UserError) as raised:
        run_report(tmp_path / "typo.db", ReportRequest(curve="jepa_wieght"))
    assert str(raised.value) == (
        "no run has param 'jepa_wieght'; numeric params found: d_model, ema, jepa_weight, lr, seed"
    )
