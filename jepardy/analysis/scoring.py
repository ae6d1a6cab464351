"""How each run's score was measured, and the lanes whose arms were not all scored alike.

A score is a plain round trip, a sliding-window evaluation or test-time training
(`ingest.logresult.TIER_NAMES`): an ingested or script run records which (`metric_tier`), a
jepardy run's `eval_stride` says it (0: round trip, else sliding window). Test-time training
alone moves val_bpb by about as much as a record, so a delta between arms scored differently
measures the evaluation as much as the arm: the report puts such lanes first, before any
table.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from jepardy.analysis.render import Section
from jepardy.store.models import RunStatus

SCORING_COLUMNS = ["sweep", "lane", "arm", "variant", "scored by"]
TITLE = "WARNING: arms scored differently; their deltas compare evaluations, not only arms"


def scored_by(result: dict[str, Any]) -> str | None:
    """The evaluation a result's score comes from, or None when it does not say."""
    tier = result.get("metric_tier")
    if isinstance(tier, str) and tier:
        return tier
    stride = result.get("eval_stride")
    if isinstance(stride, int) and not isinstance(stride, bool):
        return "sliding window" if stride > 0 else "round trip"
    return None


def mixed_scoring(runs: pd.DataFrame) -> pd.DataFrame:
    """Per arm group of the done runs in a (sweep, lane) scored more than one way: how its
    runs were scored (SCORING_COLUMNS). Empty when every lane scored alike."""
    if "result" not in runs.columns or runs.empty:
        return pd.DataFrame(columns=SCORING_COLUMNS)
    done = runs[runs["status"].astype(str) == RunStatus.DONE.value]
    kinds = [scored_by(_parsed(text)) for text in done["result"]]
    frame = pd.DataFrame(
        {
            "sweep": done["sweep"].astype(str).to_numpy(),
            "lane": done["lane"].astype(str).to_numpy(),
            "arm": done["arm"].astype(str).to_numpy(),
            "variant": done["variant"].astype(str).to_numpy(),
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


def _parsed(text: Any) -> dict[str, Any]:
    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
