"""Pictures of the report: the forest plot, curves with error bars, horizon comparisons.

The forest plot has a row per arm: its delta val_bpb to its matched control with the 95%
Welch interval, the challenge's margin marked, coloured by verdict. Each curve is a panel:
the per-point means with their t-based 95% intervals, the best point (a star), the minima
that stand out of the noise (a triangle above the interval, so the star never hides it),
and the verdict in the title. Each horizon set is a pair of panels: every arm's metric
against the budget (with intervals), and its rank at each budget (a bump chart), flagged
arms drawn red. Panels that compare the same metric share their y-axis; a true/false axis is
drawn as two categories. matplotlib runs headless (Agg).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: reports run on servers and in CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import transforms
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from jepardy.analysis import render
from jepardy.analysis.compare import BEATS_MARGIN, SIGNIFICANT, WORSE
from jepardy.analysis.curves import CURVE_KEYS, Curves
from jepardy.analysis.horizons import ARM, SET_KEYS, Horizons
from jepardy.analysis.reexports import CONTROL_REF
from jepardy.errors import UserError

# More panels than this make an unreadable picture; the user narrows the report instead.
MAX_PANELS = 12
MAX_FOREST_ROWS = 60
PANEL_SIZE = (6.4, 4.2)  # inches
FOREST_ROW_IN = 0.32  # inches per arm of the forest plot
DPI = 110
# matplotlib's tab:green, tab:blue, tab:red and tab:gray, as hex for HTML too.
VERDICT_COLOURS = {BEATS_MARGIN: "#2ca02c", SIGNIFICANT: "#1f77b4", WORSE: "#d62728"}
OTHER_VERDICT = "#7f7f7f"
# No timestamp or version in the PNG, so the same report draws the same bytes.
_PNG_METADATA = {"Software": None}


def plot_report(
    compare: pd.DataFrame | None,
    curves: Curves | None,
    horizons: Horizons | None,
    path: Path,
) -> Path:
    """Draw the forest plot of `compare` (when it has an arm with a control) above every
    curve and horizon set, into one PNG at `path`; returns `path`.

    UserError when there is nothing to draw, more than MAX_PANELS panels, or more than
    MAX_FOREST_ROWS arms.
    """
    where = f"--plot {path}"
    arms = forest_rows(compare) if compare is not None else None
    panels = count_panels(curves, horizons, where)
    has_forest = arms is not None and not arms.empty
    if not (panels or has_forest):
        raise UserError(f"--plot {path}: no arm with a control, curve or horizon set to draw")
    grid = _grid_shape(panels)
    forest_h = _forest_height(arms, where) if has_forest else 0.0
    grid_h = PANEL_SIZE[1] * grid[0] if panels else 0.0
    columns = max(grid[1], 2) if has_forest else grid[1]  # forest labels need the width
    figure = plt.figure(figsize=(PANEL_SIZE[0] * columns, forest_h + grid_h), layout="constrained")
    if has_forest and panels:
        top, bottom = figure.subfigures(2, 1, height_ratios=[forest_h, grid_h])
        draw_forest(top.subplots(), arms)
        draw_panels(bottom, curves, horizons, grid)
    elif has_forest:
        draw_forest(figure.subplots(), arms)
    else:
        draw_panels(figure, curves, horizons, grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(figure))
    return path


def png_bytes(figure: Figure) -> bytes:
    """`figure` as PNG bytes (closed afterwards)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=DPI, format="png", metadata=_PNG_METADATA)
    plt.close(figure)
    return buffer.getvalue()


def count_panels(curves: Curves | None, horizons: Horizons | None, where: str) -> int:
    """Panels of the curves (one each) and horizon sets (two each); UserError past
    MAX_PANELS, saying `where` (the option or report that asked)."""
    n_curves = 0 if curves is None else len(curves.summary)
    n_sets = 0 if horizons is None else horizons.arms.groupby(SET_KEYS, observed=True).ngroups
    panels = n_curves + 2 * n_sets
    if panels > MAX_PANELS:
        raise UserError(
            f"{where}: {n_curves} curves and {n_sets} horizon sets make {panels} panels, "
            f"more than {MAX_PANELS}; narrow the report with --sweep"
        )
    return panels


def _grid_shape(panels: int) -> tuple[int, int]:
    columns = min(panels, 2) or 1
    return math.ceil(panels / columns) or 1, columns


def panels_figure(curves: Curves | None, horizons: Horizons | None, where: str) -> Figure:
    """The curves and horizon panels alone, as a figure (UserError: see `count_panels`)."""
    rows, columns = grid = _grid_shape(count_panels(curves, horizons, where))
    figure = plt.figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows))
    figure.set_layout_engine("constrained")
    draw_panels(figure, curves, horizons, grid)
    return figure


def draw_panels(
    figure: Figure | SubFigure,
    curves: Curves | None,
    horizons: Horizons | None,
    grid: tuple[int, int],
) -> None:
    """Every curve, then every horizon set, into a grid of panels of `figure`."""
    flat = list(figure.subplots(*grid, squeeze=False).flat)
    n_curves = 0 if curves is None else len(curves.summary)
    sets = (
        [] if horizons is None else list(horizons.arms.groupby(SET_KEYS, observed=True, sort=False))
    )
    values = flat[:n_curves] + flat[n_curves : n_curves + 2 * len(sets) : 2]
    ranks = flat[n_curves + 1 : n_curves + 2 * len(sets) : 2]
    for unused in flat[n_curves + 2 * len(sets) :]:
        unused.set_visible(False)
    metrics = {part.metric for part in (curves, horizons) if part is not None}
    if len(metrics) == 1:  # one metric: every value panel on one scale
        share_y(values)
    if curves is not None:
        groups = curves.points.groupby(CURVE_KEYS, sort=False, observed=True)
        records = curves.summary.to_dict("records")
        for ax, summary, (_, points) in zip(values, records, groups, strict=False):
            draw_curve(ax, curves, summary, points)
    if horizons is not None:
        pairs = zip(values[n_curves:], ranks, sets, strict=True)
        for ax_values, ax_ranks, (key, group) in pairs:
            draw_horizon(ax_values, ax_ranks, horizons, key, group)


def share_y(axes: Sequence[Axes]) -> None:
    """One y scale for panels that compare the same quantity (share before drawing)."""
    for ax in axes[1:]:
        ax.sharey(axes[0])


# --- the forest plot ---


def forest_rows(compare: pd.DataFrame) -> pd.DataFrame:
    """The arm rows of a compare table that have a delta to a control, top to bottom (not
    a re-export's, whose delta is to its source run)."""
    arms = compare[(compare["versus"] == CONTROL_REF) & compare["delta_bpb"].notna()]
    return arms.reset_index(drop=True)


def forest_figure(compare: pd.DataFrame, where: str) -> Figure | None:
    """The forest plot of a compare table as a figure; None when no arm has a control;
    UserError past MAX_FOREST_ROWS arms, saying `where`."""
    arms = forest_rows(compare)
    if arms.empty:
        return None
    figure = plt.figure(figsize=(PANEL_SIZE[0] * 2, _forest_height(arms, where)))
    figure.set_layout_engine("constrained")
    draw_forest(figure.subplots(), arms)
    return figure


def _forest_height(arms: pd.DataFrame, where: str) -> float:
    if len(arms) > MAX_FOREST_ROWS:
        raise UserError(
            f"{where}: {len(arms)} arms make an unreadable forest plot (at most "
            f"{MAX_FOREST_ROWS}); narrow the report with --sweep"
        )
    return max(2.4, 1.4 + FOREST_ROW_IN * len(arms))


def draw_forest(ax: Axes, arms: pd.DataFrame) -> None:
    """Each arm's delta val_bpb to its control, with its 95% Welch interval (a dot alone when
    there is none, n = 1), the margin at -margin_bpb as a dotted tick, 0 as a line."""
    y = np.arange(len(arms))[::-1]
    verdicts = arms["verdict"].astype(str).to_numpy()
    colours = [VERDICT_COLOURS.get(v, OTHER_VERDICT) for v in verdicts]
    delta = arms["delta_bpb"].to_numpy(dtype=float)
    low = arms["delta_bpb_ci_low"].to_numpy(dtype=float)
    high = arms["delta_bpb_ci_high"].to_numpy(dtype=float)
    has = ~np.isnan(low)
    ax.hlines(y[has], low[has], high[has], colors=np.array(colours)[has], lw=2.2)
    ax.scatter(delta, y, c=colours, s=45, zorder=3, edgecolors="black", linewidths=0.5)
    margin = arms["margin_bpb"].to_numpy(dtype=float)
    ax.vlines(-margin, y - 0.35, y + 0.35, colors="black", linestyles=":", lw=1.2)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(y, _forest_labels(arms))
    ax.set_ylim(-0.7, len(arms) - 0.3)
    ax.set_xlabel("delta val_bpb vs matched control (95% Welch interval; lower is better)")
    ax.set_title("Each arm against its control; dotted: the challenge's margin", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    seen = dict.fromkeys(verdicts)
    handles = [
        plt.Line2D([], [], marker="o", ls="", color=VERDICT_COLOURS.get(v, OTHER_VERDICT))
        for v in seen
    ]
    ax.legend(handles, list(seen), fontsize=7, loc="best")


def _forest_labels(arms: pd.DataFrame) -> list[str]:
    """`lane / match: arm variant`, with the sweep first when the table holds several."""
    several = arms["sweep"].nunique() > 1
    labels = []
    for row in arms.to_dict("records"):
        place = [str(row["sweep"])] if several else []
        place += [str(row[k]) for k in ("lane", "match") if str(row[k])]
        labels.append(f"{' / '.join(place)}: {row['arm']} {row['variant']}".strip())
    return labels


# --- curves and horizons ---


def draw_curve(ax: Axes, curves: Curves, summary: dict, points: pd.DataFrame) -> None:
    """One curve: means with 95% intervals, the best point, minima and the verdict."""
    raw = points[curves.axis].to_numpy(dtype=float)
    x = np.arange(len(raw), dtype=float) if curves.boolean else raw
    mean = points["mean"].to_numpy(dtype=float)
    half = np.nan_to_num((points["ci_high"] - points["mean"]).to_numpy(dtype=float))
    ax.errorbar(x, mean, yerr=half, fmt="o-", capsize=3, lw=1.2, zorder=2)
    best = points["is_best"].to_numpy(dtype=bool)
    near = points["within_noise"].to_numpy(dtype=bool) & ~best
    if near.any():  # an empty series would still get a legend entry
        ax.scatter(
            x[near],
            mean[near],
            facecolors="none",
            edgecolors="tab:green",
            s=110,
            zorder=3,
            label="within noise of best",
        )
    ax.scatter(x[best], mean[best], marker="*", s=220, color="tab:green", zorder=4, label="best")
    # Minima sit just above their interval, pointing down at it: visible beside the star.
    above = transforms.offset_copy(ax.transData, fig=ax.figure, y=7, units="points")
    minima = (points["turn"] == "min").to_numpy(dtype=bool)
    if minima.any():
        ax.scatter(
            x[minima],
            (mean + half)[minima],
            marker="v",
            s=70,
            color="tab:orange",
            zorder=5,
            transform=above,
            label="minimum",
        )
    over = points["over_cap_runs"].to_numpy() > 0
    if over.any():
        ax.scatter(x[over], mean[over], marker="x", s=120, color="red", zorder=6, label="OVER CAP")
    if curves.boolean:
        ax.set_xticks(x, ["true" if v else "false" for v in raw])
        ax.set_xlim(-0.5, len(x) - 0.5)
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
