"""Training curves per arm: train loss and val_bpb over steps and over training time, the
mean over seeds with a band from the lowest to the highest seed.

Input is the done runs (a tidy runs frame) and their metric points (each run's
metrics.jsonl as the store recorded it, `jepardy.store.frames.read_metrics`). A point's time
is the run's training clock (`train_time_ms`, logged with every train loss; evaluations
excluded): val points between two log steps take it by interpolation over the steps.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display: reports run on servers and in CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from jepardy.store.frames import ARM_KEYS

CURVE_METRICS = ("train_loss", "val_bpb")
CLOCK = "train_time_ms"
# The columns of `training_points`, after ARM_KEYS and `metric`.
POINT_COLUMNS = ["step", "time_s", "mean", "low", "high", "n"]


def training_points(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm group, metric, step) over the runs' seeds: ARM_KEYS, metric, step,
    time_s (mean over the seeds; NaN where no run logged its clock), mean, low and high
    (the lowest and highest seed) and n (seeds with a value at that step). Non-finite
    values are left out. Rows in the runs' order of groups, then metric, then step."""
    keyed = runs[["id", *ARM_KEYS]].rename(columns={"id": "run_id"})
    values = metrics[metrics["name"].isin(CURVE_METRICS) & np.isfinite(metrics["value"])]
    values = values.assign(time_s=_clock_s(metrics, values))
    joined = values.merge(keyed, on="run_id").rename(columns={"name": "metric"})
    if joined.empty:
        return pd.DataFrame(columns=[*ARM_KEYS, "metric", *POINT_COLUMNS])
    order = {key: i for i, key in enumerate(_group_keys(keyed))}
    joined["_order"] = [order[key] for key in _group_keys(joined)]
    points = (
        joined.groupby(["_order", *ARM_KEYS, "metric", "step"], observed=True, sort=True)
        .agg(
            time_s=("time_s", "mean"),
            mean=("value", "mean"),
            low=("value", "min"),
            high=("value", "max"),
            n=("value", "count"),
        )
        .reset_index()
    )
    return points.drop(columns="_order")


def _group_keys(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    return list(zip(*(frame[key].astype(str) for key in ARM_KEYS), strict=True))


def _clock_s(metrics: pd.DataFrame, values: pd.DataFrame) -> np.ndarray:
    """Each of `values`' points' training time in seconds, from its run's clock points;
    NaN outside the clock's steps and for runs without a clock."""
    clock = metrics[(metrics["name"] == CLOCK) & np.isfinite(metrics["value"])]
    by_run = {run_id: group for run_id, group in clock.groupby("run_id", sort=False)}
    times = np.full(len(values), np.nan)
    run_ids = values["run_id"].to_numpy()
    steps = values["step"].to_numpy(dtype=float)
    for run_id in pd.unique(run_ids):
        ticks = by_run.get(run_id)
        if ticks is None:
            continue
        mine = run_ids == run_id
        times[mine] = np.interp(
            steps[mine],
            ticks["step"].to_numpy(dtype=float),
            ticks["value"].to_numpy(dtype=float) / 1000,
            left=np.nan,
            right=np.nan,
        )
    return times


# --- drawing: one figure per (sweep, lane), a row per match ---

# A lane with more matches than this draws the first ones and says how many it left out.
MAX_ROWS = 8
ROW_HEIGHT_IN = 2.9
WIDTH_IN = 15.0
_PANELS = [(metric, x) for x in ("step", "time_s") for metric in CURVE_METRICS]
_X_LABELS = {"step": "step", "time_s": "training time (s)"}


def training_figures(points: pd.DataFrame) -> list[tuple[str, Figure, int]]:
    """Per (sweep, lane) of `training_points`: its title, a figure with a row per match (the
    first MAX_ROWS) of four panels (train loss and val_bpb over steps, then over time), each
    arm a line (its mean over seeds) with a band (lowest to highest seed), and the number
    of matches left out. Panels of one metric share their y-axis, so arms and matches
    compare at a glance."""
    figures = []
    for (sweep, lane), lane_points in points.groupby(["sweep", "lane"], observed=True, sort=False):
        matches = list(pd.unique(lane_points["match"].astype(str)))
        shown = matches[:MAX_ROWS]
        figure = plt.figure(figsize=(WIDTH_IN, 0.6 + ROW_HEIGHT_IN * len(shown)))
        figure.set_layout_engine("constrained")
        axes = figure.subplots(len(shown), len(_PANELS), squeeze=False)
        for column, (metric, _) in enumerate(_PANELS):
            first = axes[0][CURVE_METRICS.index(metric)]
            for ax in axes[:, column]:
                if ax is not first:
                    ax.sharey(first)
        arms = list(dict.fromkeys(_arm_label(r) for r in lane_points.to_dict("records")))
        colours = {arm: f"C{i % 10}" for i, arm in enumerate(arms)}
        for row, match in zip(axes, shown, strict=True):
            mine = lane_points[lane_points["match"].astype(str) == match]
            for ax, (metric, x) in zip(row, _PANELS, strict=True):
                _draw_panel(ax, mine[mine["metric"] == metric], metric, x, colours)
                ax.set_title(f"{match or lane}: {metric} over {_X_LABELS[x]}", fontsize=8)
            if row[0].get_legend_handles_labels()[0]:  # one legend a row: the arms' colours
                row[0].legend(fontsize=7, title="mean; band: seeds' range", title_fontsize=7)
        figures.append((f"{sweep} / {lane}", figure, len(matches) - len(shown)))
    return figures


def _draw_panel(
    ax: Axes, points: pd.DataFrame, metric: str, x: str, colours: dict[str, str]
) -> None:
    """Each arm's mean line and seed band of one metric, over steps or time."""
    for (arm, variant), line in points.groupby(["arm", "variant"], observed=True, sort=False):
        line = line.dropna(subset=[x]).sort_values(x)
        label = _arm_label({"arm": arm, "variant": variant})
        colour = colours[label]
        ax.plot(line[x], line["mean"], "-", color=colour, lw=1.4, label=label, marker=".")
        ax.fill_between(line[x], line["low"], line["high"], color=colour, alpha=0.2, lw=0)
    if points.empty or points[x].isna().all():
        ax.text(0.5, 0.5, f"no {metric} points", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(_X_LABELS[x], fontsize=8)
    ax.set_ylabel(metric, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _arm_label(row: dict) -> str:
    return f"{row['arm']} {row['variant']}".strip()
