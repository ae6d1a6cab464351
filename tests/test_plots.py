"""PNG pictures of a weight curve, a horizon comparison and the forest plot are real images;
panels that compare share a scale, true/false axes are categories, no marker hides another."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import runsets

from jepardy.analysis.compare import compare_table
from jepardy.analysis.curves import curve_table
from jepardy.analysis.horizons import horizon_table
from jepardy.analysis.plots import MAX_PANELS, forest_figure, panels_figure, plot_report
from jepardy.errors import UserError
from jepardy.store.frames import load_runs
from jepardy.store.transitions import open_store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
X = [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
MEANS = [1.300, 1.262, 1.270, 1.255, 1.268, 1.250, 1.266, 1.259, 1.275]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG spec puts first."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_real_image(path: Path, min_width: int, min_height: int) -> None:
    width, height = png_size(path)
    assert width >= min_width and height >= min_height, (width, height)
    assert width <= 4000 and height <= 4000
    assert path.stat().st_size > 20_000
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    # Something was drawn: many distinct colours, not a blank canvas.
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50


def test_weight_curve_png(tmp_path: Path) -> None:
    store = open_store(tmp_path / "plots.db")
    runsets.write(store, runsets.curve("isolation", X, MEANS, 0.003))
    curves = curve_table(load_runs(store), "jepa_weight")
    path = plot_report(None, curves, None, tmp_path / "out" / "curve.png")
    assert path == tmp_path / "out" / "curve.png"
    assert_real_image(path, 600, 400)


def test_horizon_png(tmp_path: Path) -> None:
    store = open_store(tmp_path / "plots.db")
    runsets.write(store, runsets.horizon_runs("leader", runsets.LEADER))
    horizons = horizon_table(load_runs(store), "wallclock_s")
    path = plot_report(None, None, horizons, tmp_path / "horizons.png")
    width, height = png_size(path)
    assert width > height  # two panels side by side: values and ranks
    assert_real_image(path, 1200, 400)


def test_too_many_panels_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path / "plots.db")
    runs = []
    for lane in range(MAX_PANELS + 1):
        runs += runsets.curve(f"lane{lane}", X[:3], MEANS[:3], 0.003)
    runsets.write(store, runs)
    curves = curve_table(load_runs(store), "jepa_weight")
    with pytest.raises(UserError, match=r"13 curves and 0 horizon sets make 13 panels"):
        plot_report(None, curves, None, tmp_path / "many.png")
    assert not (tmp_path / "many.png").exists()


def test_forest_plot_png_has_a_row_per_arm(tmp_path: Path) -> None:
    store = open_store(tmp_path / "plots.db")
    runsets.write(store, runsets.horizon_runs("leader", runsets.LEADER))
    compare = compare_table(load_runs(store))
    path = plot_report(compare, None, None, tmp_path / "forest.png")
    assert_real_image(path, 1000, 300)
    figure = forest_figure(compare, "test")
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    # Three arms in each of two budgets, top to bottom in the table's order.
    assert labels[:3] == [
        "leader / wallclock_s=180.0: jepa jepa_weight=0.05",
        "leader / wallclock_s=180.0: jepa jepa_weight=0.1",
        "leader / wallclock_s=180.0: jepa jepa_weight=0.15",
    ]
    assert len(labels) == 6


def test_curve_panels_share_their_y_axis(tmp_path: Path) -> None:
    store = open_store(tmp_path / "plots.db")
    low = [m - 0.2 for m in MEANS]
    runsets.write(
        store, runsets.curve("high", X, MEANS, 0.003) + runsets.curve("low", X, low, 0.003)
    )
    figure = panels_figure(curve_table(load_runs(store), "jepa_weight"), None, "test")
    shown = [ax for ax in figure.axes if ax.get_visible()]
    assert len(shown) == 2
    figure.canvas.draw()
    assert shown[0].get_ylim() == shown[1].get_ylim()
    bottom, top = shown[0].get_ylim()
    assert bottom < min(low) and top > max(MEANS)  # both curves inside the one scale


def test_a_true_false_axis_is_drawn_as_two_categories(tmp_path: Path) -> None:
    store = open_store(tmp_path / "plots.db")
    runs = runsets.curve("ema", [False, True], [1.30, 1.28], 0.003, axis="ema")
    runsets.write(store, runs)
    curves = curve_table(load_runs(store), "ema")
    figure = panels_figure(curves, None, "test")
    ax = figure.axes[0]
    figure.canvas.draw()
    assert [label.get_text() for label in ax.get_xticklabels()] == ["false", "true"]
    assert list(ax.get_xticks()) == [0.0, 1.0]


def test_a_minimum_at_the_best_point_stays_visible(tmp_path: Path) -> None:
    store = open_store(tmp_path / "plots.db")
    runsets.write(store, runsets.curve("isolation", X, MEANS, 0.003))
    curves = curve_table(load_runs(store), "jepa_weight")
    best = curves.points[curves.points["is_best"]]
    assert (best["turn"] == "min").all()  # the best point is also a minimum
    figure = panels_figure(curves, None, "test")
    ax = figure.axes[0]
    figure.canvas.draw()
    markers = {c.get_label(): c for c in ax.collections if c.get_label() in ("best", "minimum")}
    star = markers["best"].get_offset_transform().transform(markers["best"].get_offsets())
    mins = markers["minimum"]
    drawn = mins.get_offset_transform().transform(mins.get_offsets())
    x_best = float(best[curves.axis].iloc[0])
    top = ax.transData.transform([(x_best, float(best["ci_high"].iloc[0]))])[0]
    above = [point for point in drawn if abs(point[0] - star[0][0]) < 0.5]
    assert len(above) == 1
    # In pixels: the triangle sits over the interval's top, clear of the star (radius ~7 px).
    assert above[0][1] > top[1] + 5 and above[0][1] > star[0][1] + 10
