"""Curves: a metric against a numeric param (e.g. val_bpb over jepa_weight), with the best
point, the minima and direction changes that stand out of the noise, and a verdict.

The study's 21-point weight grid had several local minima, and a report must say which
differences are inside the seed noise (study.md, method 3). So a turn of the curve counts
only when the curve moves away from it by more than the noise, in both directions:

- With seeds, the noise of a difference between points i and j is Fisher's least
  significant difference: t_{(1+level)/2, df} * s_p * sqrt(1/n_i + 1/n_j), with s_p the
  pooled within-point seed sd of the whole curve and df its degrees of freedom.
- Without seeds (every point n = 1) it is the explicit `noise` floor, and the report says so.

Turns are found as a zigzag with that threshold, and make the verdict: "monotonic",
"single-minimum" or "non-monotonic" (turns.py). Optionally (`resamples` > 0) the monotone
fit is tested against the free per-point means: weighted isotonic regression (scipy), its
weighted SSE as the statistic, its p-value by parametric bootstrap around the monotone fit,
and how often the argmin stays put when the means are resampled (design/orchestrator.md,
"Statistics").
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jepardy.analysis import render, ttests
from jepardy.analysis.render import Section
from jepardy.analysis.summary import (
    CONTROL_ARM,
    axis_values,
    drop_key,
    group_codes,
    is_control,
    map_unique,
    require_metric,
    split_pairs,
    summarize,
    too_few_values,
)
from jepardy.analysis.summary import SUMMARY_COLUMNS as SUMMARY_STATS
from jepardy.analysis.turns import verdict_of, verdict_text, zigzag
from jepardy.errors import UserError
from jepardy.store.states import RunStatus

CURVE_KEYS = ["sweep", "lane", "match", "arm", "variant"]
# Names a curve's axis may not take: they are columns of the points table.
_RESERVED = {*CURVE_KEYS, "source", "n", "mean", "std", "sem", "ci_low", "ci_high", "seeds"}
_RESERVED |= {"values", "artifact_bytes", "over_cap_runs", "turn", "is_best", "within_noise"}
SUMMARY_COLUMNS = [
    *CURVE_KEYS,
    "points",
    "best_x",
    "best_mean",
    "within_noise_of_best",
    "minima",
    "maxima",
    "direction_changes",
    "verdict",
    "verdict_text",
    "noise_source",
    "pooled_sd",
    "noise_df",
    "noise_floor",
    "p_monotone",
    "argmin_stability",
    "over_cap_runs",
]


@dataclass(frozen=True)
class Curves:
    """Curves of `metric` over param `axis`.

    `points`: one row per (curve, axis value), x ascending within a curve; columns
    CURVE_KEYS (match and variant without the axis), the axis (named after it), source (the
    arm that ran the point: "control" for the control runs joined to an arm's curve), the
    results.summarize columns, turn ("min", "max" or ""), is_best and within_noise (of the
    best point). `summary`: one row per curve (SUMMARY_COLUMNS). `skipped`: series with a
    single axis value, which are not curves. `boolean`: a true/false axis (points at 0, 1).
    """

    axis: str
    metric: str
    points: pd.DataFrame
    summary: pd.DataFrame
    skipped: int
    boolean: bool = False


def curve_table(
    runs: pd.DataFrame,
    axis: str,
    *,
    metric: str = "val_bpb",
    noise: float | None = None,
    level: float = 0.95,
    resamples: int = 0,
    seed: int = 0,
) -> Curves:
    """The curves of `metric` over `axis` in tidy done runs (`results.load_runs`).

    A curve is one (sweep, lane, match, arm, variant) with the axis removed from match and
    variant; when the axis is something the arm changes (an axis of its variant, or a value
    the control did not run, as an arm that sets jepa_weight 0.1 has), the lane's control
    runs of the same match join the arm's curve at their own axis value (jepa_weight 0).
    `noise` is the floor for curves whose points all have one seed; a curve with seeds uses
    its pooled seed sd and ignores it. UserError when the axis is missing or not numeric,
    or a single-seed curve has no `noise`.
    """
    require_metric(runs, metric)
    if axis in _RESERVED:
        raise UserError(f"--curve {axis!r}: that name is a column of the curve table")
    points = _points(_curve_rows(runs, axis, metric), axis, metric, level)
    sizes = points.groupby(CURVE_KEYS, sort=False, observed=True)[axis].transform("size")
    skipped = int(points[sizes < 2].groupby(CURVE_KEYS, sort=False, observed=True).ngroups)
    if not (sizes >= 2).any():
        # The arms' values say what is missing (the control's own value joins their curves).
        arms = points[points["arm"].astype(str) != CONTROL_ARM]
        named = arms if len(arms) else points
        needs = "a curve needs two or more"
        raise too_few_values(f"--curve {axis}", named[axis], named["sweep"], needs)
    points = points[sizes >= 2].reset_index(drop=True)
    curve_id = points.groupby(CURVE_KEYS, sort=False, observed=True).ngroup().to_numpy()
    # Points are sorted by curve, so each curve is one contiguous slice [start, end).
    starts = np.flatnonzero(np.r_[True, np.diff(curve_id) != 0])
    ends = np.r_[starts[1:], len(points)]
    arrays = {name: points[name].to_numpy(dtype=float) for name in (axis, "mean", "n", "std")}
    keys = points[CURVE_KEYS].to_numpy()
    over = points["over_cap_runs"].to_numpy()
    rng = np.random.default_rng(seed)
    summaries: list[dict[str, object]] = []
    turn = np.full(len(points), "", dtype=object)
    is_best = np.zeros(len(points), dtype=bool)
    near = np.zeros(len(points), dtype=bool)
    for start, end in zip(starts, ends, strict=True):
        part = slice(start, end)
        data = _CurveData(
            tuple(keys[start]), *(arrays[name][part] for name in (axis, "mean", "n", "std"))
        )
        judged = _judge(data, noise, level, resamples, rng)
        judged.row["over_cap_runs"] = int(over[part].sum())
        summaries.append(judged.row)
        turn[part], is_best[part], near[part] = judged.turn, judged.is_best, judged.near
    points = points.assign(turn=turn, is_best=is_best, within_noise=near)
    summary = pd.DataFrame(summaries, columns=SUMMARY_COLUMNS)
    return Curves(axis, metric, points, summary, skipped, pd.api.types.is_bool_dtype(runs[axis]))


def _curve_rows(runs: pd.DataFrame, axis: str, metric: str) -> pd.DataFrame:
    """Done runs with a finite metric and axis value, keyed by curve (`_curve`, numbered in
    registration order), the control runs joined to the curves of their lane and match
    (source = the arm that ran)."""
    if "status" in runs.columns:
        runs = runs[runs["status"].astype(str) == RunStatus.DONE]
    x = axis_values(runs, axis)
    keep = x.notna() & runs[metric].notna()
    columns = [*CURVE_KEYS, "seed", metric]
    columns += [name for name in ("artifact_bytes", "seq", "kind") if name in runs.columns]
    rows = runs.loc[keep, columns].assign(_x=x[keep], source=runs.loc[keep, "arm"])
    rows["_in_variant"] = map_unique(rows["variant"], lambda v: axis in split_pairs(v))
    rows["match"] = map_unique(rows["match"], lambda m: drop_key(m, axis))
    rows["variant"] = map_unique(rows["variant"], lambda v: drop_key(v, axis))
    rows["_place"] = group_codes(rows, ["sweep", "lane", "match"])
    rows["_curve"] = group_codes(rows, ["_place", "arm", "variant"])
    control = is_control(rows)
    controls, arms = rows[control], rows[~control]
    changed = arms["_in_variant"] | arms["_curve"].isin(_off_control(arms, controls))
    curves = arms.loc[changed, ["_curve", "_place", "arm", "variant"]]
    curves = curves.drop_duplicates("_curve")
    joined = curves.merge(controls.drop(columns=["_curve", "arm", "variant"]), on="_place")
    # A curve that ran the control's axis value itself keeps its own runs there.
    taken = arms[["_curve", "_x"]].drop_duplicates()
    joined = joined.merge(taken, on=["_curve", "_x"], how="left", indicator=True)
    joined = joined[joined["_merge"] == "left_only"].drop(columns="_merge")
    used = controls["_place"].isin(curves["_place"])
    combined = pd.concat([arms, controls[~used], joined], ignore_index=True)
    # Registration order (`seq`), so curves come in the order they were planned.
    if "seq" in combined.columns:
        combined = combined.sort_values("seq", kind="stable", ignore_index=True)
    combined["_curve"] = group_codes(combined, ["_curve"])
    return combined


def _off_control(arms: pd.DataFrame, controls: pd.DataFrame) -> pd.Series:
    """The arm curves with a run at an axis value their place's control did not run: the
    arm changed the param (a control-less place has none to join)."""
    ran = controls[["_place", "_x"]].drop_duplicates().assign(_ran=True)
    seen = arms[["_curve", "_place", "_x"]].merge(ran, on=["_place", "_x"], how="left")
    has_control = seen["_place"].isin(controls["_place"])
    return seen.loc[has_control & seen["_ran"].isna(), "_curve"].drop_duplicates()


def _points(rows: pd.DataFrame, axis: str, metric: str, level: float) -> pd.DataFrame:
    """One row per (curve, axis value): summarize's statistics, sorted by x within a curve,
    curves in order of first appearance."""
    points = summarize(rows, by=["_curve", "_x"], metric=metric, level=level)
    source = rows.groupby(["_curve", "_x"], observed=True)["source"].first().rename("source")
    keys = rows.drop_duplicates("_curve").set_index("_curve")[CURVE_KEYS]
    points = points.join(source, on=["_curve", "_x"]).join(keys, on="_curve")
    points = points.sort_values(["_curve", "_x"], kind="stable").rename(columns={"_x": axis})
    return points[[*CURVE_KEYS, axis, "source", *SUMMARY_STATS]].reset_index(drop=True)


@dataclass(frozen=True)
class _CurveData:
    """One curve's points as arrays, x ascending."""

    key: tuple[object, ...]
    x: np.ndarray
    means: np.ndarray
    n: np.ndarray
    std: np.ndarray


@dataclass(frozen=True)
class _Judged:
    row: dict[str, object]
    turn: np.ndarray  # "min" / "max" / "" per point
    is_best: np.ndarray
    near: np.ndarray  # within noise of the best point


@dataclass(frozen=True)
class Noise:
    """How differences between points of one curve are judged."""

    threshold: np.ndarray  # (points, points): a difference must exceed this to count
    source: str
    pooled_sd: float
    df: int
    floor: float  # the explicit floor when single-seed, else NaN


def curve_noise(n: np.ndarray, std: np.ndarray, noise: float | None, level: float) -> Noise | None:
    """The noise thresholds of a curve with per-point seed counts `n` and sds `std`, or None
    when no point has seeds and no `noise` floor was given."""
    df = int(np.sum(np.where(n >= 2, n - 1, 0)))
    if df >= 1:
        pooled = math.sqrt(float(np.nansum(np.where(n >= 2, (n - 1) * std**2, 0.0))) / df)
        lsd = t_quantile(0.5 + level / 2, df) * pooled
        threshold = lsd * np.sqrt(1.0 / n[:, None] + 1.0 / n[None, :])
        source = (
            f"seeds: pooled sd {pooled:.4f} (df {df}), {level:.0%} least significant difference"
        )
        if noise is not None:
            source += f"; --noise {noise:g} not used"
        return Noise(threshold, source, pooled, df, math.nan)
    if noise is None:
        return None
    threshold = np.full((len(n), len(n)), float(noise))
    return Noise(threshold, f"--noise {noise:g}: one seed per point", math.nan, 0, float(noise))


@functools.lru_cache(maxsize=256)
def t_quantile(q: float, df: int) -> float:
    """The Student t quantile, cached: a grid of curves shares a handful of df values, and
    one call costs about as much as judging a whole curve."""
    return float(ttests.t_quantile(q, df))


def _judge(
    data: _CurveData,
    noise: float | None,
    level: float,
    resamples: int,
    rng: np.random.Generator,
) -> _Judged:
    """The summary row of one curve (without over_cap_runs) and its per-point marks."""
    x, means, n = data.x, data.means, data.n
    judged = curve_noise(n, data.std, noise, level)
    if judged is None:
        name = " / ".join(str(part) for part in data.key if part != "")
        raise UserError(
            f"curve {name}: every point has one seed, so the noise is unknown; "
            "give a floor with --noise (in metric units, e.g. --noise 0.001)"
        )
    pivots = zigzag(means, judged.threshold)
    verdict, minima, maxima = verdict_of(means, pivots)
    best = int(np.argmin(means))
    near = means - means[best] <= judged.threshold[best]
    turn = np.full(len(x), "", dtype=object)
    turn[minima], turn[maxima] = "min", "max"
    p_mono, stability = _monotone_test(means, n, judged, best, resamples, rng)
    row: dict[str, object] = dict(zip(CURVE_KEYS, data.key, strict=True))
    row.update(
        points=len(x),
        best_x=x[best],
        best_mean=means[best],
        within_noise_of_best=x[near].tolist(),
        minima=x[minima].tolist(),
        maxima=x[maxima].tolist(),
        direction_changes=max(len(pivots) - 2, 0),
        verdict=verdict,
        verdict_text=verdict_text(verdict, x[minima], len(pivots) == 0),
        noise_source=judged.source,
        pooled_sd=judged.pooled_sd,
        noise_df=judged.df,
        noise_floor=judged.floor,
        p_monotone=p_mono,
        argmin_stability=stability,
    )
    return _Judged(row, turn, np.arange(len(x)) == best, near)


def _monotone_test(
    means: np.ndarray,
    n: np.ndarray,
    judged: Noise,
    best: int,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """(p-value of "the curve is monotone", share of resamples whose argmin is `best`).

    NaN without resamples or without seeds (no sd to resample with). The statistic is the
    weighted SSE of the best monotone fit (weights n / s_p^2); its null distribution comes
    from means drawn around that fit with the pooled seed sd.
    """
    if resamples <= 0 or not judged.pooled_sd > 0:
        return math.nan, math.nan
    sd = judged.pooled_sd / np.sqrt(n)
    weights = n / judged.pooled_sd**2
    observed, fit = _monotone_sse(means, weights)
    drawn = fit + rng.standard_normal((resamples, len(means))) * sd
    null = np.array([_monotone_sse(sample, weights)[0] for sample in drawn])
    p = (1 + int(np.sum(null >= observed))) / (resamples + 1)
    moved = means + rng.standard_normal((resamples, len(means))) * sd
    stability = float(np.mean(np.argmin(moved, axis=1) == best))
    return p, stability


def _monotone_sse(y: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    """The weighted SSE of the better of the increasing and decreasing isotonic fits."""
    # Imported here: scipy.optimize costs a report without curves a third of a second.
    from scipy import optimize

    best_sse, best_fit = math.inf, y
    for increasing in (True, False):
        fit = optimize.isotonic_regression(y, weights=weights, increasing=increasing).x
        sse = float(np.sum(weights * (y - fit) ** 2))
        if sse < best_sse:
            best_sse, best_fit = sse, fit
    return best_sse, best_fit


# --- rendering ---

_POINT_COLUMNS = ["source", "n", "mean ± std", "95% CI", "vs best", "turn", "per seed", "bytes"]


def curve_sections(curves: Curves) -> list[Section]:
    """One Section per curve: its points, and notes with the verdict, the best point, the
    points within noise of it and how noise was judged. Cells are formatted a column at a
    time (a 100,000-run store has tens of thousands of points)."""
    axis, points = curves.axis, curves.points
    columns = [axis, *_POINT_COLUMNS]
    cells = _point_cells(points, axis)
    rows = list(zip(*cells, strict=True))
    bytes_flag, no_flag = frozenset({"bytes"}), frozenset()
    flagged = [bytes_flag if over else no_flag for over in points["over_cap_runs"].tolist()]
    keys = group_codes(points, CURVE_KEYS).tolist()
    right = frozenset({axis, "n", "mean ± std", "95% CI", "vs best", "bytes"})
    summaries = curves.summary.to_dict("records")
    sections = [
        Section(
            _title(summary, curves),
            columns,
            rows[part],
            right,
            flagged[part],
            _curve_notes(summary),
        )
        for summary, (_, part) in zip(summaries, render.blocks(keys), strict=True)
    ]
    if curves.skipped and sections:
        sections[-1].notes.append(
            f"{curves.skipped} series with a single {axis} value are not curves"
        )
    return sections


def _point_cells(points: pd.DataFrame, axis: str) -> list[list[str]]:
    """The columns of _POINT_COLUMNS (after the axis) for every point."""
    col = functools.partial(render.column, points)
    best = points.groupby(CURVE_KEYS, sort=False, observed=True)["mean"].transform("min")
    deltas = render.delta_column(points["mean"] - best, np.full(len(points), np.nan))
    vs_best = [
        "best" if is_best else f"{delta} (noise)" if near else delta
        for delta, is_best, near in zip(
            deltas, points["is_best"].tolist(), points["within_noise"].tolist(), strict=True
        )
    ]
    intervals = render.interval_column(col("ci_low"), col("ci_high"))
    return [
        render.number_column(col(axis)),
        render.texts(points, "source"),
        render.texts(points, "n"),
        render.bpb_column(col("mean"), col("std"), col("n"), with_n=False),
        intervals,
        vs_best,
        render.texts(points, "turn"),
        render.seed_values_column(col("seeds"), col("values")),
        render.bytes_column(col("artifact_bytes"), col("over_cap_runs"), col("n")),
    ]


def _title(summary: dict[str, object], curves: Curves) -> str:
    place = " / ".join(str(summary[k]) for k in ("sweep", "lane", "match") if summary[k] != "")
    arm = f"{summary['arm']} {summary['variant']}".rstrip()
    return f"{place} — {arm}: {curves.metric} over {curves.axis}"


def _curve_notes(summary: dict[str, object]) -> list[str]:
    near = ", ".join(render.format_number(v) for v in summary["within_noise_of_best"])  # type: ignore[attr-defined]
    notes = [
        f"verdict: {summary['verdict_text']}",
        f"best: {render.format_number(summary['best_x'])} "
        f"({float(summary['best_mean']):.4f}); within noise of it: {near}",  # type: ignore[arg-type]
        f"noise: {summary['noise_source']}",
    ]
    if not pd.isna(summary["p_monotone"]):
        notes.append(
            f"monotone fit (isotonic): p = {float(summary['p_monotone']):.4f}; "  # type: ignore[arg-type]
            f"argmin unchanged in {float(summary['argmin_stability']):.0%} of resamples"  # type: ignore[arg-type]
        )
    if summary["over_cap_runs"]:
        notes.append(f"{summary['over_cap_runs']} runs OVER CAP (16,000,000 bytes)")
    return notes
