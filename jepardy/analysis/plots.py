"""Pictures of the report: curves with error bars, and horizon comparisons, as one PNG.

Each curve is a panel: the per-point means with their t-based 95% intervals, the best point,
the minima that stand out of the noise, and the verdict in the title. Each horizon set is a
pair of panels: every arm's metric against the budget (with intervals), and its rank at
each budget (a bump chart), flagged arms drawn red. matplotlib runs headless (Agg).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: reports run on servers and in CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from jepardy.analysis import render
from jepardy.analysis.curves import CURVE_KEYS, Curves
from jepardy.analysis.horizons import ARM, SET_KEYS, Horizons
from jepardy.errors import UserError

# More panels than this make an unreadable picture; the user narrows the report instead.
MAX_PANELS = 12
PANEL_SIZE = (6.4, 4.2)  # inches
DPI = 110


def plot_report(curves: Curves | None, horizons: Horizons | None, path: Path) -> Path:
    """Draw every curve and horizon set into one PNG at `path`; returns `path`.

    UserError when there is nothing to draw or more than MAX_PANELS panels.
    """
    n_curves = 0 if curves is None else len(curves.summary)
    n_sets = 0 if horizons is None else horizons.arms.groupby(SET_KEYS, observed=True).ngroups
    panels = n_curves + 2 * n_sets
    if panels == 0:
        raise UserError(f"--plot {path}: no curve or horizon set to draw")
    if panels > MAX_PANELS:
        raise UserError(
            f"--plot {path}: {n_curves} curves and {n_sets} horizon sets make {panels} panels, "
            f"more than {MAX_PANELS}; narrow the report with --sweep"
        )
    columns = min(panels, 2)
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows),
        squeeze=False,
    )
    flat = list(axes.flat)
    if curves is not None:
        for summary, (_, points) in zip(
            curves.summary.to_dict("records"),
            curves.points.groupby(CURVE_KEYS, sort=False, observed=True),
            strict=True,
        ):
            draw_curve(flat.pop(0), curves, summary, points)
    if horizons is not None:
        for key, group in horizons.arms.groupby(SET_KEYS, sort=False, observed=True):
            draw_horizon(flat.pop(0), flat.pop(0), horizons, key, group)
    for unused in flat:
        unused.set_visible(False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    plt.close(figure)
    return path


def draw_curve(ax: Axes, curves: Curves, summary: dict, points: pd.DataFrame) -> None:
    """One curve: means with 95% intervals, the best point, minima and the verdict."""
    x = points[curves.axis].to_numpy(dtype=float)
    mean = points["mean"].to_numpy(dtype=float)
    half = (points["ci_high"] - points["mean"]).to_numpy(dtype=float)
    ax.errorbar(x, mean, yerr=np.where(np.isnan(half), 0.0, half), fmt="o-", capsize=3, lw=1.2)
    minima = points["turn"] == "min"
    ax.scatter(x[minima], mean[minima], marker="v", s=90, color="tab:orange", label="minimum")
    best = points["is_best"].to_numpy(dtype=bool)
    ax.scatter(x[best], mean[best], marker="*", s=220, color="tab:green", zorder=5, label="best")
    near = points["within_noise"].to_numpy(dtype=bool) & ~best
    ax.scatter(
        x[near],
        mean[near],
        facecolors="none",
        edgecolors="tab:green",
        s=110,
        label="within noise of best",
    )
    over = points["over_cap_runs"].to_numpy() > 0
    if over.any():
        ax.scatter(x[over], mean[over], marker="x", s=120, color="red", label="OVER CAP")
    place = " / ".join(str(summary[k]) for k in ("sweep", "lane", "match") if summary[k] != "")
    arm = f"{summary['arm']} {summary['variant']}".strip()
    ax.set_title(f"{place} — {arm}\n{summary['verdict_text']}", fontsize=9)
    ax.set_xlabel(curves.axis)
    ax.set_ylabel(f"{curves.metric} (mean, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def draw_horizon(
    values: Axes, ranks: Axes, horizons: Horizons, key: tuple, group: pd.DataFrame
) -> None:
    """One horizon set: metric against budget per arm, and the rank bump chart."""
    axis = horizons.axis
    budgets = sorted(group[axis].unique())
    for (arm, variant), cells in group.groupby(ARM, sort=False, observed=True):
        cells = cells.sort_values(axis)
        flagged = bool(cells["flag"].iloc[0])
        label = f"{arm} {variant}".strip() + (" (flagged)" if flagged else "")
        style = {"color": "red", "lw": 2.2} if flagged else {"lw": 1.2}
        half = (cells["ci_high"] - cells["mean"]).fillna(0.0)
        values.errorbar(
            cells[axis], cells["mean"], yerr=half, fmt="o-", capsize=3, label=label, **style
        )
        ranks.plot(cells[axis], cells["rank"], "o-", label=label, **style)
    place = " / ".join(str(part) for part in key if part != "")
    values.set_title(f"{place}: {horizons.metric} by {axis}", fontsize=9)
    values.set_xlabel(axis)
    values.set_ylabel(f"{horizons.metric} (mean, 95% CI)")
    values.set_xticks(budgets, [render.format_number(b) for b in budgets])
    values.grid(alpha=0.3)
    values.legend(fontsize=7)
    ranks.set_title(f"{place}: rank by {axis} (1 = best){_tau_text(horizons, key)}", fontsize=9)
    ranks.set_xlabel(axis)
    ranks.set_ylabel("rank")
    ranks.set_xticks(budgets, [render.format_number(b) for b in budgets])
    ranks.invert_yaxis()  # rank 1 on top
    ranks.yaxis.get_major_locator().set_params(integer=True)
    ranks.grid(alpha=0.3)
    ranks.legend(fontsize=7)


def _tau_text(horizons: Horizons, key: tuple) -> str:
    """`; Kendall's tau 180 vs 600: +0.33` for the set's shortest vs longest budget."""
    taus = horizons.taus
    mine = taus[(taus[SET_KEYS].astype(str) == [str(part) for part in key]).all(axis=1)]
    if mine.empty:
        return ""
    row = mine.loc[(mine["budget_b"] - mine["budget_a"]).idxmax()]
    if pd.isna(row["tau"]):
        return ""
    a, b = render.format_number(row["budget_a"]), render.format_number(row["budget_b"])
    return f"\nKendall's tau {a} vs {b}: {row['tau']:+.2f}"
