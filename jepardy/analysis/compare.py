"""The compare table: every arm against its lane's matched control, with significance tests.

Input is the runs table as a DataFrame (`Database.runs_frame()`, `pandas.read_sql("runs", ...)`
or `jepardy.store.frames.load_runs`); nothing here speaks SQL. The statistics follow
design/orchestrator.md ("Statistics"): per arm n, mean, sd, standard error, t-interval and
every seed's value; against the matched control, one-sided Welch's t-test as the primary
test with the paired test beside it, the challenge's margin, and Holm adjusted p-values when
several arms share one control. Level, margin and sides are a `Rule` (analysis/rules.py; by
default the record rule: 0.005 nats at p < 0.01, one-sided).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jepardy.analysis import render
from jepardy.analysis.matching import MATCH_COLUMNS, MATCH_PARAMS
from jepardy.analysis.reexports import against_sources
from jepardy.analysis.rules import RECORD, Rule, margin_in_metric
from jepardy.analysis.significance import compare_pairs, holm, pack
from jepardy.analysis.summary import (
    EXPORT_KIND,
    group_codes,
    is_control,
    split_lists,
    summarize,
)
from jepardy.store.frames import ARM_KEYS, tidy_runs
from jepardy.store.states import RunStatus

FORMATS = ("table", "markdown", "csv", "json")
METRICS = ("val_bpb", "val_loss", "prequant_val_bpb", "prequant_val_loss")
NO_CONTROL = "no matched control"
SEEDS_DIFFER = "seeds differ from control"

# Verdicts of an arm against its control. "significant" is only ever said of an arm whose
# control ran the same seeds (the study's headline comparison had no matched control).
CONTROL = "control"
NO_TEST_N1 = "n=1: no test"
NO_TEST_FLAT = "no test: zero variance"
UNPAIRED = "seeds differ: no verdict"
UNMATCHED = "unmatched"  # the verdict reads "unmatched: <the fields that differ>"

BEATS_MARGIN = "beats margin"
SIGNIFICANT = "significant, under margin"
SIGNIFICANT_NO_MARGIN = "significant"  # a rule without a margin (margin 0 nats)
WORSE = "significantly worse"  # the Welch test the other way (p_worse_holm < the rule's alpha)
NOT_SIGNIFICANT = "not significant"
COLUMNS = [
    *ARM_KEYS,
    "versus",  # what the row's delta is against: control, source (a re-export), "" (control)
    "n",
    "val_bpb_mean",
    "val_bpb_std",
    "val_bpb_sem",
    "val_bpb_ci_low",
    "val_bpb_ci_high",
    "val_bpb_values",
    "val_loss_mean",
    "val_loss_std",
    "delta_bpb",
    "delta_bpb_std",
    "delta_bpb_ci_low",
    "delta_bpb_ci_high",
    "delta_loss_nats",
    "delta_loss_std",
    "t_welch",
    "df_welch",
    "p_welch",
    "p_welch_holm",
    "p_worse",
    "p_worse_holm",
    "t_paired",
    "p_paired",
    "margin_bpb",
    "p_margin",
    "p_margin_holm",
    "beats_margin",
    "verdict",
    "artifact_bytes",
    "over_cap_runs",
    "under_cap",
    "seeds",
    "missing_seeds",
    "matched_seeds",
    "unmatched",
    "note",
]
_MATCH = ["sweep", "lane", "match"]
# --- the compare table ---


def compare_table(runs: pd.DataFrame, rule: Rule = RECORD) -> pd.DataFrame:
    """One row per (sweep, lane, match, arm, variant) over the done runs with a val_bpb.

    Columns are COLUMNS. Per group: n, val_bpb mean / std (ddof=1) / sem / t-based 95%
    interval / values (by seed), val_loss mean and std. Against the control runs of the same
    sweep, lane and match: delta_bpb and delta_loss_nats (difference of means; 0 on control
    rows), their per-seed std (paired differences; only when the seeds match), the
    two-sided 95% Welch interval of delta_bpb, one-sided Welch (t, df, p; H1: the arm is
    lower) and its other side (p_worse; H1: the arm is higher), the paired t-test (same
    seeds only), the margin test (margin_bpb: the rule's margin in bpb at the runs' val_bpb /
    val_loss ratio; H1: the arm is lower by more than that; none with a 0 margin), Holm
    adjusted p-values over the arms sharing a control, beats_margin and verdict, each at the
    rule's level. With a two-sided rule p_welch, p_worse and p_paired are each the two-sided
    p (the verdict's direction is delta_bpb's sign) and the margin p is doubled.
    artifact_bytes is the group's largest, over_cap_runs counts runs over the cap and
    under_cap is True only when every size is known and within it, False when one is over
    it, and <NA> (unknown) otherwise. missing_seeds lists seeds registered for the group
    that are not done. note: "no matched control", "seeds differ
    from control", and which seeds are not done. A re-export (kind "export") is never a
    control nor a seed of its source's group: its variant makes it a group of its own,
    tested against its source runs seed by seed (analysis/reexports.py; `versus` "source").

    Rows: sweeps by name; within a sweep, lanes and matches in order of first appearance;
    within a match the control first, then arms in order of first appearance (registration
    order, `seq`), each re-export right after its source's row.
    """
    params = list(MATCH_PARAMS) if "params" in runs.columns else None
    everything = _with_codes(tidy_runs(runs, params=params))
    is_done = (everything["status"] == RunStatus.DONE.value) & everything["val_bpb"].notna()
    if not is_done.any():
        return pd.DataFrame(columns=COLUMNS)
    done = _with_ranks(everything[is_done].reset_index(drop=True))
    table = _arm_summary(done)
    table = _add_control(table)
    table = _add_tests(table, done, rule)
    table = _add_matching(table, done)
    table = _add_verdicts(table, rule)
    table = against_sources(table, done, rule)
    table = _add_missing_seeds(table, done, everything[~is_done])
    order = ["_lane_rank", "_match_rank", "_sort_arm", "_sort_rank", "_sort_export", "_arm_rank"]
    table = table.sort_values(["sweep", *order], kind="stable")
    return table[COLUMNS].reset_index(drop=True)


_CODES = {name: f"_{name}_c" for name in ARM_KEYS}


def _with_codes(runs: pd.DataFrame) -> pd.DataFrame:
    """Integer codes of the key columns, so every later grouping and join is on integers:
    `_<key>_c` per key, `_m` per (sweep, lane, match) and `_key` per arm group."""
    coded = runs.assign(**{code: pd.factorize(runs[name])[0] for name, code in _CODES.items()})
    match_codes = [_CODES[name] for name in _MATCH]
    return coded.assign(
        _m=group_codes(coded, match_codes),
        _key=group_codes(coded, [_CODES[name] for name in ARM_KEYS]),
    )


def _with_ranks(done: pd.DataFrame) -> pd.DataFrame:
    """Order-of-first-appearance ranks of lanes, matches and arm groups (sort keys), and
    `_g`, the arm group's id among the done runs, numbered in the same order."""
    c = _CODES
    return done.assign(
        _g=group_codes(done, ["_key"]),
        _lane_rank=group_codes(done, [c["sweep"], c["lane"]]),
        _match_rank=group_codes(done, ["_m"]),
        _arm_rank=group_codes(done, [c["arm"], c["variant"]]),
    )


def _arm_summary(done: pd.DataFrame) -> pd.DataFrame:
    """Per arm group (row i is group `_g` == i): results.summarize of val_bpb, plus val_loss,
    the run set's val_bpb / val_loss ratio and the group's keys and sort ranks."""
    bpb = summarize(done, by="_g", metric="val_bpb")
    table = bpb.rename(
        columns={
            "mean": "val_bpb_mean",
            "std": "val_bpb_std",
            "sem": "val_bpb_sem",
            "ci_low": "val_bpb_ci_low",
            "ci_high": "val_bpb_ci_high",
            "values": "val_bpb_values",
        }
    ).set_index("_g")
    ratio = done["val_bpb"] / done["val_loss"]
    known_under = done["under_cap"].fillna(False).astype(bool)  # an unknown size is not under
    extra = (
        done.assign(_ratio=ratio, _known_under=known_under)
        .groupby("_g")
        .agg(
            val_loss_mean=("val_loss", "mean"),
            val_loss_std=("val_loss", "std"),
            _ratio_sum=("_ratio", "sum"),
            _ratio_n=("_ratio", "count"),
            _under=("_known_under", "all"),
        )
    )
    first = done.drop_duplicates("_g").set_index("_g")
    keys = first[[*ARM_KEYS, "_key", "_m", "_lane_rank", "_match_rank", "_arm_rank"]]
    table = keys.join(table).join(extra).sort_index()
    table["_is_arm"] = ~is_control(first).reindex(table.index)
    exports = first["kind"].astype(str) == EXPORT_KIND if "kind" in first else False
    table["_export"] = pd.Series(exports, index=first.index).reindex(table.index)
    # True when every size is known and within the cap, False when one is known over it,
    # unknown (<NA>) otherwise: never counted as under the cap, never shown as False.
    under = table.pop("_under").astype(bool)
    table["under_cap"] = under.astype("boolean").mask(~under & (table["over_cap_runs"] == 0))
    return table


def _add_control(table: pd.DataFrame) -> pd.DataFrame:
    """`_ctl` (the control group's id in the same match, -1 when none), matched_seeds,
    deltas of means against it, and note."""
    controls = table.loc[~table["_is_arm"], ["_m"]].reset_index()
    controls = controls.drop_duplicates("_m").rename(columns={"_g": "_ctl"})
    ctl = table[["_m"]].merge(controls, on="_m", how="left")["_ctl"]
    # A re-export is tested against its source runs instead (reexports.against_sources).
    table["_ctl"] = (
        ctl.fillna(-1).astype("int64").where(~table["_export"].to_numpy(), -1).to_numpy()
    )
    has = table["_ctl"] >= 0
    ref = table.reindex(table["_ctl"].where(has, table.index))
    table["delta_bpb"] = np.where(has, table["val_bpb_mean"] - ref["val_bpb_mean"].values, np.nan)
    delta_loss = table["val_loss_mean"] - ref["val_loss_mean"].values
    table["delta_loss_nats"] = np.where(has, delta_loss, np.nan)
    # A control is its own reference: 0 by definition, even when its val_loss is unknown.
    table.loc[~table["_is_arm"], ["delta_bpb", "delta_loss_nats"]] = 0.0
    same = [a == b for a, b in zip(table["seeds"], ref["seeds"], strict=True)]
    table["matched_seeds"] = has & np.array(same, dtype=bool)
    table["note"] = np.where(has, np.where(table["matched_seeds"], "", SEEDS_DIFFER), NO_CONTROL)
    return table


def _add_tests(table: pd.DataFrame, done: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """Welch, paired and margin tests of every arm row with a control, sided as `rule` says;
    Holm over a control's arms; per-seed std of the paired differences."""
    order = np.lexsort((done["seed"].to_numpy(), done["_g"].to_numpy()))
    ordered = done.iloc[order]
    samples = pack(ordered["_g"], ordered["val_bpb"], len(table))
    arms = table[table["_is_arm"] & (table["_ctl"] >= 0)]
    a = arms.index.to_numpy(dtype=np.int64)
    c = arms["_ctl"].to_numpy(dtype=np.int64)
    ratio_sum, ratio_n = table["_ratio_sum"].to_numpy(), table["_ratio_n"].to_numpy()
    ratio = (ratio_sum[a] + ratio_sum[c]) / (ratio_n[a] + ratio_n[c])
    no_margin = np.full_like(ratio, np.nan, dtype=np.float64)  # no margin test at 0 nats
    margin = margin_in_metric(ratio, rule.margin_nats) if rule.margin_nats > 0 else no_margin
    tests = compare_pairs(samples, a, c, arms["matched_seeds"].to_numpy(dtype=bool), margin)
    p_welch, p_worse = rule.sided_pair(tests.p_welch, tests.p_worse)
    columns = {
        "t_welch": tests.t_welch,
        "df_welch": tests.df_welch,
        "p_welch": p_welch,
        "p_worse": p_worse,
        "delta_bpb_ci_low": tests.ci_low,
        "delta_bpb_ci_high": tests.ci_high,
        "t_paired": tests.t_paired,
        "p_paired": rule.sided_pair(tests.p_paired, tests.p_paired_worse)[0],
        "margin_bpb": margin,
        "p_margin": rule.sided_p(tests.p_margin),
    }
    for name, values in columns.items():
        column = np.full(len(table), np.nan)
        column[a] = values
        table[name] = column
    table["p_welch_holm"] = holm(table["p_welch"], table["_ctl"])
    table["p_margin_holm"] = holm(table["p_margin"], table["_ctl"])
    table["p_worse_holm"] = holm(table["p_worse"], table["_ctl"])
    return table.join(_paired_spread(done, table))


def _paired_spread(done: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """delta_bpb_std and delta_loss_std: sd (ddof=1) of the per-seed differences arm - control,
    for arm groups whose seeds match their control's (NaN otherwise)."""
    columns = ["_m", "seed", "val_bpb", "val_loss"]
    control = is_control(done)
    pairs = done.loc[~control, ["_g", *columns]].merge(
        done.loc[control, columns], on=["_m", "seed"], suffixes=("", "_c")
    )
    spread = (
        pairs.assign(
            _d_bpb=pairs["val_bpb"] - pairs["val_bpb_c"],
            _d_loss=pairs["val_loss"] - pairs["val_loss_c"],
        )
        .groupby("_g")
        .agg(delta_bpb_std=("_d_bpb", "std"), delta_loss_std=("_d_loss", "std"))
    )
    spread = spread.reindex(table.index)
    return spread.where(table["matched_seeds"] & table["_is_arm"], np.nan)


def _add_matching(table: pd.DataFrame, done: pd.DataFrame) -> pd.DataFrame:
    """`unmatched`: the MATCH_COLUMNS / MATCH_PARAMS on which an arm group and its control
    group differ, or within either of them vary, comma-joined ("" when they match)."""
    fields = [f for f in (*MATCH_COLUMNS, *MATCH_PARAMS) if f in done.columns]
    groups = done["_g"].to_numpy()
    first_row = np.unique(groups, return_index=True)[1]  # table row i is group i
    has = (table["_is_arm"] & (table["_ctl"] >= 0)).to_numpy()
    ctl = table["_ctl"].where(table["_ctl"] >= 0, table.index).to_numpy()
    names = np.full(len(table), "", dtype=object)
    for field in fields:
        codes = _value_codes(done[field])
        first, count = codes[first_row], _distinct_per_group(groups, codes, len(table))
        varies = (count > 1) | (count[ctl] > 1)
        differs = has & ((first != first[ctl]) | varies)
        names[differs] += ", " + field
    table["unmatched"] = pd.Series(names, index=table.index).str.removeprefix(", ")
    return table


def _value_codes(values: pd.Series) -> np.ndarray:
    """Integer codes of a column's values (equal codes for equal values, -1 for unset).
    Values of mixed types (params) are compared as text, so 1 and 1.0 differ."""
    if values.dtype == object:
        values = values.astype(str).where(values.notna())
    return pd.factorize(values)[0]


def _distinct_per_group(groups: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Number of distinct codes in each group 0..n_groups-1 (unset counts as a value)."""
    width = int(codes.max(initial=-1)) + 2
    pairs = np.unique(groups.astype(np.int64) * width + (codes + 1))
    return np.bincount(pairs // width, minlength=n_groups)


def _add_verdicts(table: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """beats_margin and verdict (see the verdict constants) at the rule's level."""
    alpha = rule.alpha
    margin_ok = table["p_margin_holm"] < alpha
    matched = table["matched_seeds"] & (table["unmatched"] == "")
    table["beats_margin"] = (matched & table["_is_arm"] & margin_ok).astype(bool)
    small = (table["n"] < 2) | (table["n"].reindex(table["_ctl"]).values < 2)
    conditions = [
        ~table["_is_arm"],
        table["_ctl"] < 0,
        table["unmatched"] != "",
        small,
        table["p_welch"].isna(),
        ~table["matched_seeds"],
        table["beats_margin"],
        # Two-sided, both directions share one p: the difference's sign picks the verdict.
        (table["p_welch_holm"] < alpha) & (table["delta_bpb"] < 0),
        (table["p_worse_holm"] < alpha) & (table["delta_bpb"] > 0),
    ]
    unmatched = UNMATCHED + ": " + table["unmatched"].astype(str)
    choices = [
        CONTROL,
        NO_CONTROL,
        unmatched,
        NO_TEST_N1,
        NO_TEST_FLAT,
        UNPAIRED,
        BEATS_MARGIN,
        SIGNIFICANT if rule.margin_nats > 0 else SIGNIFICANT_NO_MARGIN,
        WORSE,
    ]
    table["verdict"] = np.select(conditions, choices, default=NOT_SIGNIFICANT)
    return table


def _add_missing_seeds(
    table: pd.DataFrame, done: pd.DataFrame, not_done: pd.DataFrame
) -> pd.DataFrame:
    """missing_seeds: registered seeds of the group that are not done; named in the note, so
    a mean over a subset of the planned seeds is visible (design: "make selection visible")."""
    wanted = not_done[["_key", "seed"]].drop_duplicates()
    wanted = wanted.merge(done[["_key", "seed"]], how="left", indicator=True)
    wanted = wanted[wanted["_merge"] == "left_only"].sort_values(["_key", "seed"])
    by_key = dict(
        zip(
            wanted["_key"].drop_duplicates().tolist(),
            split_lists(wanted["seed"].to_numpy(), wanted["_key"].to_numpy()),
            strict=True,
        )
    )
    missing = [by_key.get(key, []) for key in table["_key"].tolist()]
    table["missing_seeds"] = missing
    extra = ["seeds not done: " + ", ".join(map(str, m)) if m else "" for m in missing]
    pairs = zip(render.texts(table, "note"), extra, strict=True)
    table["note"] = ["; ".join(part for part in pair if part) for pair in pairs]
    return table
