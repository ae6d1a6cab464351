"""The chain of a sweep's promotions, for `jepardy report`: what each source lane screened,
what was promoted and why (the recorded evidence, never recomputed), what the promoted
runs found against their own control, and whether the screen's ranking held.

"Held" compares, over the promoted arms, their order by delta in the source lane with their
order in the promoted lane: Kendall's tau (`scipy.stats.kendalltau`, from two promoted
arms on) and every pair whose order flipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict
from itertools import combinations

import pandas as pd

from jepardy.analysis import render
from jepardy.analysis.render import Section
from jepardy.analysis.summary import kendall_tau
from jepardy.store.promotions import Decision

COLUMNS = [
    "sweep",
    "lane",
    "source_lane",
    "rule",
    "top",
    "arm",
    "variant",
    "match",
    "n",
    "control_n",
    "delta_bpb",
    "ci_low",
    "ci_high",
    "p_welch",
    "p_holm",
    "p_margin",
    "verdict",
    "rank",
    "selected",
    "reason",
    "then_n",
    "then_delta_bpb",
    "then_p_welch",
    "then_verdict",
]
_SHOWN = ["arm", "variant", "match", "delta (95% CI)", "p", "rank", "decision", "then"]


def chain_table(decisions: Iterable[Decision], compare: pd.DataFrame) -> pd.DataFrame:
    """One row per recorded candidate, with (for those promoted) the promoted lane's result
    for the same arm and variant: its n, delta, p and verdict there (`then_*`; matches
    averaged for delta, the first one's p and verdict, as the lane may have other matches).
    `compare`: the compare table of the sweeps (jepardy/analysis/compare.py)."""
    rows = []
    for decision in decisions:
        head = {k: getattr(decision, k) for k in ("sweep", "lane", "source_lane", "rule", "top")}
        for candidate in decision.candidates:
            row = {**head, **asdict(candidate)}
            row.pop("run_ids")
            row.pop("position")
            rows.append(row | _then(compare, decision, candidate.arm, candidate.variant))
    return pd.DataFrame(rows, columns=COLUMNS)


def _then(compare: pd.DataFrame, decision: Decision, arm: str, variant: str) -> dict:
    keys = ("sweep", "lane", "arm", "variant")
    mask = pd.Series(True, index=compare.index)
    for key, value in zip(keys, (decision.sweep, decision.lane, arm, variant), strict=True):
        mask &= compare[key].astype(str) == value
    found = compare[mask]
    if found.empty:
        return {"then_n": None, "then_delta_bpb": None, "then_p_welch": None, "then_verdict": ""}
    first = found.iloc[0]
    return {
        "then_n": int(found["n"].sum()),
        "then_delta_bpb": float(found["delta_bpb"].mean()),
        "then_p_welch": first["p_welch"],
        "then_verdict": str(first["verdict"]),
    }


def chain_sections(table: pd.DataFrame) -> list[Section]:
    """A section per promotion: the candidates, the decision, what the promoted runs found;
    notes: the rule, and whether the ranking held."""
    sections = []
    for (sweep, lane), group in table.groupby(["sweep", "lane"], sort=False):
        first = group.iloc[0]
        how = ", ".join(
            p
            for p in (
                str(first["rule"]),
                "" if pd.isna(first["top"]) else f"top {int(first['top'])}",
            )
            if p
        )
        title = f"{sweep} / promotion: lane {first['source_lane']} -> lane {lane} ({how})"
        rows = [_cells(row) for row in group.to_dict("records")]
        flagged = [
            frozenset({"decision"}) if row["selected"] else frozenset()
            for row in group.to_dict("records")
        ]
        sections.append(
            Section(title, _SHOWN, rows, frozenset({"delta (95% CI)", "p"}), flagged, held(group))
        )
    return sections


def _cells(row: dict) -> list[str]:
    interval = "" if pd.isna(row["ci_low"]) else f" [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
    then = render.MISSING
    if row["selected"] and not pd.isna(row["then_n"]):
        parts = [render.format_delta(row["then_delta_bpb"])]
        if not pd.isna(row["then_p_welch"]):
            parts.append(f"p {render.format_p(row['then_p_welch'])}")
        then = ", ".join([*parts, f"{row['then_verdict']} (n={int(row['then_n'])})"])
    elif row["selected"]:
        then = "not run yet"
    return [
        str(row["arm"]),
        str(row["variant"]),
        str(row["match"]),
        render.format_delta(row["delta_bpb"]) + interval,
        render.format_p(row["p_welch"], row["p_holm"]),
        render.MISSING if pd.isna(row["rank"]) else str(int(row["rank"])),
        str(row["reason"]),
        then,
    ]


def held(group: pd.DataFrame) -> list[str]:
    """Did the source lane's ranking hold in the promoted lane? Kendall's tau over the
    promoted arms' deltas (source vs promoted lane) and each flipped pair."""
    chosen = group[group["selected"] & group["then_delta_bpb"].notna()]
    arms = chosen.groupby(["arm", "variant"], sort=False).agg(
        before=("delta_bpb", "mean"), after=("then_delta_bpb", "first")
    )
    if len(arms) < 2:
        return [f"ranking: {len(arms)} promoted arm(s) with results; nothing to compare yet"]
    tau, p = kendall_tau(arms["before"], arms["after"])
    said = "undefined" if math.isnan(tau) else f"{tau:+.2f} (p {p:.3f})"
    source, lane = group["source_lane"].iloc[0], group["lane"].iloc[0]
    lines = [
        f"ranking held? Kendall's tau of the promoted arms' deltas, lane {source} vs lane "
        f"{lane}: {said}, {len(arms)} arms"
    ]
    for a, b in combinations(arms.index, 2):
        before = arms.at[a, "before"] - arms.at[b, "before"]
        after = arms.at[a, "after"] - arms.at[b, "after"]
        if before * after < 0:
            lines.append(
                f"flip: {' '.join(a).strip()} vs {' '.join(b).strip()}: "
                f"{render.format_delta(before)} in lane {source}, {render.format_delta(after)} in "
                f"lane {lane}"
            )
    if len(lines) == 1:
        lines.append("no flips: the promoted arms kept their order")
    return lines
