"""How each run's score was measured, and the lanes whose arms were not all scored alike.

A score is a plain round trip, a sliding-window evaluation or test-time training
(`ingest.logresult.TIER_NAMES`): an ingested or script run records which (`metric_tier`), a
jepardy run's `eval_stride` says it (0: round trip, else sliding window). Test-time training
alone moves val_bpb by about as much as a record, so a delta between arms scored differently
measures the evaluation as much as the arm: the report puts such lanes first, before any
table.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from jepardy.analysis.render import Section
from jepardy.store.states import RunStatus

SCORING_COLUMNS = ["sweep", "lane", "arm", "variant", "scored by"]
TITLE = "WARNING: arms scored differently; their deltas compare evaluations, not only arms"


# The result.json fields that say how a run was scored, read as `result.<field>` columns
# (store.frames.read_runs) rather than by parsing every run's whole result.
RESULT_FIELDS = ("metric_tier", "eval_stride")


def scored_by(tier: Any, stride: Any) -> str | None:
    """The evaluation a score comes from, given its result's `metric_tier` and
    `eval_stride` (as stored: text, numbers or None), or None when neither says."""
    if isinstance(tier, str) and tier:
        return tier
    try:
        stride_steps = int(stride)
    except (TypeError, ValueError):
        return None
    return "sliding window" if stride_steps > 0 else "round trip"


def mixed_scoring(runs: pd.DataFrame) -> pd.DataFrame:
    """Per arm group of the done runs in a (sweep, lane) scored more than one way: how its
    runs were scored (SCORING_COLUMNS). Empty when every lane scored alike."""
    columns = [f"result.{name}" for name in RESULT_FIELDS]
    if not set(columns) <= set(runs.columns) or runs.empty:
        return pd.DataFrame(columns=SCORING_COLUMNS)
    done = runs[runs["status"].astype(str) == RunStatus.DONE.value]
    # Judged once per distinct group and scoring, not once per run: a 100,000-run store has
    # a few thousand of them (bench/report.py).
    groups = done[["sweep", "lane", "arm", "variant", *columns]].drop_duplicates()
    pairs = zip(groups[columns[0]].tolist(), groups[columns[1]].tolist(), strict=True)
    kinds = [scored_by(tier, stride) for tier, stride in pairs]
    frame = pd.DataFrame(
        {
            "sweep": groups["sweep"].astype(str).to_numpy(),
            "lane": groups["lane"].astype(str).to_numpy(),
            "arm": groups["arm"].astype(str).to_numpy(),
            "variant": groups["variant"].astype(str).to_numpy(),
            "scored by": kinds,
        }
    ).dropna()
    per_lane = frame.groupby(["sweep", "lane"])["scored by"].transform("nunique")
    mixed = frame[per_lane > 1]
    grouped = mixed.groupby(["sweep", "lane", "arm", "variant"], sort=False)["scored by"]
    table = grouped.agg(lambda kinds: ", ".join(sorted(set(kinds)))).reset_index()
    return table[SCORING_COLUMNS]


def scoring_sections(table: pd.DataFrame) -> list[Section]:
    """The warning as one section (none when `table` is empty)."""
    if table.empty:
        return []
    rows = [[str(cell) for cell in row] for row in table[SCORING_COLUMNS].itertuples(index=False)]
    return [Section(TITLE, SCORING_COLUMNS, rows)]
