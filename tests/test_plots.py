"""PNG pictures of a weight curve and of a horizon comparison are real images."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import runsets

from jepardy.analysis.curves import curve_table
from jepardy.analysis.horizons import horizon_table
from jepardy.analysis.plots import MAX_PANELS, plot_report
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
    path = plot_report(curves, None, tmp_path / "out" / "curve.png")
    assert path == tmp_path / "out" / "curve.png"
    assert_real_image(path, 600, 400)


def test_horizon_png(tmp_path: Path) -> None:
    store = open_store(tmp_path / "plots.db")
    runsets.write(store, runsets.horizon_runs("leader", runsets.LEADER))
    horizons = horizon_table(load_runs(store), "wallclock_s")
    path = plot_report(None, horizons, tmp_path / "horizons.png")
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
        plot_report(curves, None, tmp_path / "many.png")
    assert not (tmp_path / "many.png").exists()
