"""Horizons: the arms' rankings at each budget side by side, and where they flip.

The study's leader-stack lane ranked a JEPA weight best in its 180 s screen that lost badly
at 600 s (study.md, method 2): short screens can mislead. For each set of arms that ran at
several values of a budget param (wallclock_s, iterations, ...) this module gives

- each arm's mean, sd, t-interval and rank (1 = lowest metric) at every budget;
- Kendall's tau between the rankings of consecutive budgets, and shortest vs longest
  (`scipy.stats.kendalltau`, over the arms that ran at both);
- a flag on every arm that ranked high in the shortest screen (top third, the winner always
  included) and low at the longest budget (bottom half);
- per pair of arms whose order differs between the shortest and longest budget, a
  "confirmed flip" when both differences' two-sided Welch intervals exclude 0, else
  "unresolved" (design/orchestrator.md, "Statistics").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations, pairwise

import numpy as np
import pandas as pd

from jepardy.analysis import render, ttests
from jepardy.analysis.render import Section
from jepardy.analysis.summary import (
    axis_values,
    drop_key,
    kendall_tau,
    require_metric,
    summarize,
    too_few_values,
)
from jepardy.store.states import RunStatus

SET_KEYS = ["sweep", "lane", "match"]
ARM = ["arm", "variant"]
CONFIRMED = "confirmed flip"
UNRESOLVED = "unresolved"
LEVEL = 0.95
# "Ranked high" at the screen: the top third of the arms (at least the winner);
# "lost" at the long budget: the bottom half.
HIGH_SHARE = 1 / 3
LOW_SHARE = 1 / 2


@dataclass(frozen=True)
class Horizons:
    """Rankings of `metric` across values of the budget param `axis`.

    `arms`: one row per (set, arm, variant, budget) with results.summarize's columns,
    `rank` at that budget, and per arm `screen_rank`, `final_rank` and `flag` (text; "" when
    not flagged). `taus`: per set and budget pair, `n_arms`, `tau`, `p_tau`. `flips`: per
    set and pair of arms ordered differently at the shortest and longest budget, the two
    differences (a - b) with their intervals and `status`. `skipped`: sets that ran at a
    single budget.
    """

    axis: str
    metric: str
    arms: pd.DataFrame
    taus: pd.DataFrame
    flips: pd.DataFrame
    skipped: int


def horizon_table(runs: pd.DataFrame, axis: str, *, metric: str = "val_bpb") -> Horizons:
    """The horizons of tidy done runs (`results.load_runs`) along budget param `axis`.

    A set is one (sweep, lane, match) with the axis removed from the match; an arm is
    (arm, variant) with the axis removed from the variant. UserError when the axis is
    missing or not numeric.
    """
    require_metric(runs, metric)
    if "status" in runs.columns:
        runs = runs[runs["status"].astype(str) == RunStatus.DONE]
    x = axis_values(runs, axis)
    rows = runs.assign(_budget=x)[x.notna() & runs[metric].notna()].copy()
    rows["match"] = [drop_key(m, axis) for m in rows["match"]]
    rows["variant"] = [drop_key(v, axis) for v in rows["variant"]]
    arms = summarize(rows, by=[*SET_KEYS, *ARM, "_budget"], metric=metric, level=LEVEL)
    budgets = arms.groupby(SET_KEYS, sort=False, observed=True)["_budget"].transform("nunique")
    skipped = int(arms[budgets < 2].groupby(SET_KEYS, sort=False, observed=True).ngroups)
    if not (budgets >= 2).any():
        needs = "horizons need two or more budgets"
        measured = x.where(runs[metric].notna())
        raise too_few_values(f"--horizons {axis}", measured, runs["sweep"], needs)
    arms = arms[budgets >= 2].rename(columns={"_budget": axis}).reset_index(drop=True)
    arms = _rank(arms, axis)
    taus, flips = [], []
    for _, group in arms.groupby(SET_KEYS, sort=False, observed=True):
        taus += _taus(group, axis)
        flips += _flips(group, axis)
    return Horizons(
        axis,
        metric,
        arms,
        pd.DataFrame(taus, columns=[*SET_KEYS, "budget_a", "budget_b", "n_arms", "tau", "p_tau"]),
        pd.DataFrame(flips, columns=FLIP_COLUMNS),
        skipped,
    )


def _rank(arms: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Add rank (per set and budget; ties share the lower rank), screen_rank and final_rank
    (at the set's shortest and longest budget) and flag."""
    arms["rank"] = (
        arms.groupby([*SET_KEYS, axis], observed=True)["mean"].rank(method="min").astype("int64")
    )
    by_set = arms.groupby(SET_KEYS, sort=False, observed=True)[axis]
    first, last = arms[axis] == by_set.transform("min"), arms[axis] == by_set.transform("max")
    screen = arms[first].set_index([*SET_KEYS, *ARM])["rank"].rename("screen_rank")
    final = arms[last].set_index([*SET_KEYS, *ARM])["rank"].rename("final_rank")
    counts = arms.groupby([*SET_KEYS, axis], observed=True)["rank"].transform("size")
    k_screen = arms[first].set_index([*SET_KEYS, *ARM])[[]].assign(k_screen=counts[first].values)
    k_final = arms[last].set_index([*SET_KEYS, *ARM])[[]].assign(k_final=counts[last].values)
    keyed = arms.join(screen, on=[*SET_KEYS, *ARM]).join(final, on=[*SET_KEYS, *ARM])
    keyed = keyed.join(k_screen, on=[*SET_KEYS, *ARM]).join(k_final, on=[*SET_KEYS, *ARM])
    high = keyed["screen_rank"] <= np.maximum(1, np.ceil(keyed["k_screen"] * HIGH_SHARE))
    low = keyed["final_rank"] > keyed["k_final"] * LOW_SHARE
    flagged = (high & low).fillna(False).astype(bool)
    budgets = arms.groupby(SET_KEYS, sort=False, observed=True)[axis].agg(["min", "max"])
    ends = keyed.join(budgets, on=SET_KEYS)
    keyed["flag"] = [
        _flag_text(row) if hot else ""
        for hot, row in zip(flagged, ends.itertuples(index=False), strict=True)
    ]
    keyed["screen_rank"] = keyed["screen_rank"].astype("Int64")
    keyed["final_rank"] = keyed["final_rank"].astype("Int64")
    return keyed.drop(columns=["k_screen", "k_final"])


def _flag_text(row: object) -> str:
    """`won the 180 screen, 4th of 4 at 600` or `2nd at the 180 screen, 4th of 4 at 600`."""
    short, long = render.format_number(row.min), render.format_number(row.max)  # type: ignore[attr-defined]
    screen, final, k = int(row.screen_rank), int(row.final_rank), int(row.k_final)  # type: ignore[attr-defined]
    start = (
        f"won the {short} screen" if screen == 1 else f"{_ordinal(screen)} at the {short} screen"
    )
    return f"{start}, {_ordinal(final)} of {k} at {long}"


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _taus(group: pd.DataFrame, axis: str) -> list[dict[str, object]]:
    """Kendall's tau between the arms' means at consecutive budgets, and first vs last."""
    budgets = sorted(group[axis].unique())
    pairs = list(pairwise(budgets))
    if len(budgets) > 2:
        pairs.append((budgets[0], budgets[-1]))
    wide = group.pivot_table(index=ARM, columns=axis, values="mean", observed=True)
    first = group.iloc[0]
    out = []
    for a, b in pairs:
        both = wide[[a, b]].dropna()
        tau, p = math.nan, math.nan
        if len(both) >= 2:
            tau, p = kendall_tau(both[a], both[b])
        row = {key: first[key] for key in SET_KEYS}
        out.append(
            {**row, "budget_a": a, "budget_b": b, "n_arms": len(both), "tau": tau, "p_tau": p}
        )
    return out


FLIP_COLUMNS = [
    *SET_KEYS,
    "arm_a",
    "variant_a",
    "arm_b",
    "variant_b",
    "budget_short",
    "budget_long",
    "diff_short",
    "diff_short_ci_low",
    "diff_short_ci_high",
    "diff_long",
    "diff_long_ci_low",
    "diff_long_ci_high",
    "status",
]


def _flips(group: pd.DataFrame, axis: str) -> list[dict[str, object]]:
    """Pairs of arms whose order at the shortest budget is the reverse of the longest's."""
    short, long = group[axis].min(), group[axis].max()
    at_short = group[group[axis] == short].set_index(ARM)
    at_long = group[group[axis] == long].set_index(ARM)
    common = [arm for arm in at_short.index if arm in at_long.index]
    first = group.iloc[0]
    out = []
    for a, b in combinations(common, 2):
        d_short = at_short.at[a, "mean"] - at_short.at[b, "mean"]
        d_long = at_long.at[a, "mean"] - at_long.at[b, "mean"]
        if not np.sign(d_short) * np.sign(d_long) < 0:
            continue
        ci_short = _welch_interval(at_short.at[a, "values"], at_short.at[b, "values"])
        ci_long = _welch_interval(at_long.at[a, "values"], at_long.at[b, "values"])
        confirmed = _excludes_zero(ci_short) and _excludes_zero(ci_long)
        out.append(
            {
                **{key: first[key] for key in SET_KEYS},
                "arm_a": a[0],
                "variant_a": a[1],
                "arm_b": b[0],
                "variant_b": b[1],
                "budget_short": short,
                "budget_long": long,
                "diff_short": d_short,
                "diff_short_ci_low": ci_short[0],
                "diff_short_ci_high": ci_short[1],
                "diff_long": d_long,
                "diff_long_ci_low": ci_long[0],
                "diff_long_ci_high": ci_long[1],
                "status": CONFIRMED if confirmed else UNRESOLVED,
            }
        )
    return out


def _welch_interval(a: list[float], b: list[float]) -> tuple[float, float]:
    """The two-sided LEVEL Welch interval of mean(a) - mean(b); NaNs when a side has n < 2."""
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    low, high = ttests.welch(np.array([a]), np.array([b])).interval(LEVEL)
    return float(low[0]), float(high[0])


def _excludes_zero(interval: tuple[float, float]) -> bool:
    low, high = interval
    return bool(low > 0 or high < 0)


# --- rendering ---


def horizon_sections(horizons: Horizons) -> list[Section]:
    """One Section per set: arms as rows, a `rank. mean ± sd (n)` column per budget, the flag;
    notes give Kendall's tau and every flipped pair."""
    sections = []
    taus = horizons.taus.groupby(SET_KEYS, sort=False, observed=True)
    flips = horizons.flips.groupby(SET_KEYS, sort=False, observed=True)
    for key, group in horizons.arms.groupby(SET_KEYS, sort=False, observed=True):
        notes = [_tau_note(row) for row in _rows_of(taus, key)]
        notes += [_flip_note(row) for row in _rows_of(flips, key)]
        sections.append(_set_section(horizons, key, group, notes))
    if horizons.skipped:
        note = f"{horizons.skipped} sets ran at a single {horizons.axis} and are left out"
        if sections:
            sections[-1].notes.append(note)
    return sections


def _rows_of(grouped: pd.api.typing.DataFrameGroupBy, key: tuple[object, ...]) -> list[dict]:
    try:
        return grouped.get_group(key).to_dict("records")
    except KeyError:
        return []


def _set_section(
    horizons: Horizons, key: tuple[object, ...], group: pd.DataFrame, notes: list[str]
) -> Section:
    axis = horizons.axis
    budgets = sorted(group[axis].unique())
    names = [f"{axis}={render.format_number(b)}" for b in budgets]
    columns = ["arm", "variant", *names, "flag"]
    rows, flagged = [], []
    for (arm, variant), cells in group.groupby(ARM, sort=False, observed=True):
        by_budget = cells.set_index(axis)
        row, hot = [str(arm), str(variant)], set()
        for budget, name in zip(budgets, names, strict=True):
            if budget not in by_budget.index:
                row.append(render.MISSING)
                continue
            point = by_budget.loc[budget]
            text = f"{int(point['rank'])}. " + render.format_bpb(
                point["mean"], point["std"], int(point["n"])
            )
            if point["over_cap_runs"]:
                text += f" {render.OVER_CAP}"
                hot.add(name)
            row.append(text)
        flag = str(cells["flag"].iloc[0])
        if flag:
            hot.add("flag")
        rows.append([*row, flag])
        flagged.append(frozenset(hot))
    place = " / ".join(str(part) for part in key if part != "")
    title = f"{place}: {horizons.metric} by {axis}"
    return Section(title, columns, rows, frozenset(names), flagged, notes)


def _tau_note(row: dict) -> str:
    a, b = render.format_number(row["budget_a"]), render.format_number(row["budget_b"])
    if pd.isna(row["tau"]):
        return f"Kendall's tau {a} vs {b}: undefined ({row['n_arms']} arms in both)"
    return (
        f"Kendall's tau {a} vs {b}: {row['tau']:+.2f} (p {row['p_tau']:.3f}, {row['n_arms']} arms)"
    )


def _flip_note(row: dict) -> str:
    a = f"{row['arm_a']} {row['variant_a']}".strip()
    b = f"{row['arm_b']} {row['variant_b']}".strip()
    short, long = (
        render.format_number(row["budget_short"]),
        render.format_number(row["budget_long"]),
    )
    return (
        f"{row['status']}: {a} - {b} is {render.format_delta(row['diff_short'])} "
        f"{_ci(row['diff_short_ci_low'], row['diff_short_ci_high'])} at {short}, "
        f"{render.format_delta(row['diff_long'])} "
        f"{_ci(row['diff_long_ci_low'], row['diff_long_ci_high'])} at {long}"
    )


def _ci(low: float, high: float) -> str:
    if pd.isna(low):
        return "(n=1: no interval)"
    return f"[{low:+.4f}, {high:+.4f}]"
