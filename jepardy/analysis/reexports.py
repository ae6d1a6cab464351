"""Re-exports in the compare table (`jepardy export`): each against its own source runs,
seed by seed, never against the control.

A re-export is the same trained model scored under another export (quantization,
compressor, byte budget). What it measures is the export's effect, free of training noise,
and its training's comparison with the control is its source's row. So a group of re-exports
(its variant `export=...` after its source's) is tested against the runs it came from: per
export run the difference to its parent run (`parent_run`), their mean and sd, the paired
t-test and its interval. It is never a control, never pooled into its source's group nor into
the control's mean, and it is listed right after its source's row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jepardy.analysis import ttests
from jepardy.analysis.rules import Rule
from jepardy.analysis.significance import CI_LEVEL
from jepardy.analysis.summary import EXPORT_KIND

# `versus` of a compare row: what its delta and tests are against ("" on a control row).
CONTROL_REF = "control"
SOURCE_REF = "source"

# Verdicts of a re-export against its source runs (short: an 80-column report keeps them).
NO_SOURCE = "source not done"
SOURCE_SAME = "same as source"  # every difference exactly 0: the run's own export again
SOURCE_N1 = "vs source: n=1"
SOURCE_FLAT = "vs source: sd 0"
SOURCE_BETTER = "better vs source"
SOURCE_WORSE = "worse vs source"
SOURCE_NS = "n.s. vs source"


def against_sources(table: pd.DataFrame, done: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """`table` (compare.py's, row i = arm group i of `done`) with `versus` on every row and
    each re-export row's deltas, paired test, verdict and note against its source runs;
    sort keys `_sort_arm`, `_sort_rank`, `_sort_export` that put it after its source."""
    export = table["_export"].to_numpy(dtype=bool)
    table["versus"] = np.where(~table["_is_arm"], "", np.where(export, SOURCE_REF, CONTROL_REF))
    table["_sort_arm"] = table["_is_arm"].to_numpy(dtype=bool)
    table["_sort_rank"] = table["_arm_rank"].to_numpy()
    table["_sort_export"] = export
    if not export.any():
        return table
    stats = _pair_stats(done)
    rows = np.flatnonzero(export)
    stats = stats.reindex(rows)
    has_source = stats["src"].notna().to_numpy()
    src = stats["src"].fillna(-1).to_numpy(dtype=np.int64)
    table.loc[rows[has_source], "_sort_arm"] = table["_is_arm"].to_numpy()[src[has_source]]
    table.loc[rows[has_source], "_sort_rank"] = table["_arm_rank"].to_numpy()[src[has_source]]
    test = _paired_test(stats)
    columns = {
        "delta_bpb": stats["bpb"],
        "delta_loss_nats": stats["loss"],
        "delta_bpb_std": stats["bpb_std"],
        "delta_loss_std": stats["loss_std"],
        "delta_bpb_ci_low": test.interval(CI_LEVEL)[0],
        "delta_bpb_ci_high": test.interval(CI_LEVEL)[1],
        "t_paired": test.t,
        "p_paired": rule.sided_p(test.p_less()),
        "matched_seeds": stats["n"].to_numpy() == table["n"].to_numpy()[rows],
        "verdict": _verdicts(stats, test, rule),
        "note": _notes(table, stats, src),
    }
    for name, values in columns.items():
        table.loc[rows, name] = np.asarray(values)
    return table


def _pair_stats(done: pd.DataFrame) -> pd.DataFrame:
    """Per export group (index `_g`): n pairs with a done source run, the mean and sd of the
    differences export - source in val_bpb and val_loss, and the source's group (`src`).
    Empty when the runs lack `id` or `parent_run`."""
    columns = ["n", "bpb", "bpb_std", "loss", "loss_std", "src"]
    if not {"id", "parent_run", "kind"} <= set(done.columns):
        return pd.DataFrame(columns=columns)
    is_export = (done["kind"].astype(str) == EXPORT_KIND).to_numpy()
    metrics = ["val_bpb", "val_loss"]
    exports = done.loc[is_export, ["_g", "seed", "parent_run", *metrics]]
    sources = done.loc[~is_export, ["id", "_g", *metrics]]
    sources = sources.rename(columns={"id": "parent_run", "_g": "src"})
    pairs = exports.astype({"parent_run": str}).merge(
        sources.astype({"parent_run": str}), on="parent_run", suffixes=("", "_source")
    )
    pairs = pairs.assign(
        d_bpb=pairs["val_bpb"] - pairs["val_bpb_source"],
        d_loss=pairs["val_loss"] - pairs["val_loss_source"],
    )
    return pairs.groupby("_g").agg(
        n=("d_bpb", "count"),
        bpb=("d_bpb", "mean"),
        bpb_std=("d_bpb", "std"),
        loss=("d_loss", "mean"),
        loss_std=("d_loss", "std"),
        src=("src", "first"),
    )[columns]


def _paired_test(stats: pd.DataFrame) -> ttests.TTest:
    """The one-sample t of the differences (scipy's ttest_rel of export against source)."""
    n = stats["n"].fillna(0).to_numpy(dtype=np.float64)
    sd = stats["bpb_std"].to_numpy(dtype=np.float64)
    return ttests.one_sample(stats["bpb"].to_numpy(dtype=np.float64), sd**2, n)


def _verdicts(stats: pd.DataFrame, test: ttests.TTest, rule: Rule) -> np.ndarray:
    n = stats["n"].fillna(0).to_numpy()
    flat = stats["bpb_std"].fillna(0).to_numpy() == 0
    conditions = [
        n == 0,
        flat & (stats["bpb"].to_numpy() == 0),
        n < 2,
        flat,
        rule.sided_p(test.p_less()) < rule.alpha,
        rule.sided_p(test.p_greater()) < rule.alpha,
    ]
    choices = [NO_SOURCE, SOURCE_SAME, SOURCE_N1, SOURCE_FLAT, SOURCE_BETTER, SOURCE_WORSE]
    return np.select(conditions, choices, default=SOURCE_NS)


def _notes(table: pd.DataFrame, stats: pd.DataFrame, src: np.ndarray) -> list[str]:
    """`re-export of control: paired with its source runs by seed` (and how many of its
    runs have none)."""
    arms = table["arm"].astype(str).to_numpy()
    variants = table["variant"].astype(str).to_numpy()
    n_runs = table["n"].to_numpy()[stats.index.to_numpy()]
    notes = []
    for g, paired, total in zip(src, stats["n"].fillna(0).astype(int), n_runs, strict=True):
        if g < 0:
            notes.append("re-export: its source run is not among the done runs")
            continue
        source = "/".join(part for part in (arms[g], variants[g]) if part)
        note = f"re-export of {source}: paired with its source runs by seed"
        notes.append(note + (f" ({total - paired} without one)" if paired < total else ""))
    return notes
