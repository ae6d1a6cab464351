"""Health flags of recorded runs, from the figures the trainer put in result.json:
module groups that did not move (the study's untrained predictor), a JEPA prediction whose
spread fell below its target (collapse), and gradient trouble (a clip coefficient that
stayed below 1e-3 at every logged step, or a non-finite gradient norm)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from jepardy.analysis import render
from jepardy.analysis.render import Section

# A relative change below this over a whole run means the group did not train.
FROZEN_DRIFT = 1e-6
# Clipping that multiplied the gradients by less than this at every logged step silenced them.
SILENCED_CLIP = 1e-3
HEALTH_COLUMNS = ["id", "sweep", "lane", "arm", "variant", "match", "seed", "status", "flags"]
# In a narrow terminal the flags are the answer: kept first (folded over lines when long),
# then what finds the run.
_PRIORITY = ("flags", "id", "arm", "variant", "match", "seed", "lane", "sweep", "status")


def run_flags(result: dict[str, Any]) -> list[str]:
    """The health flags of one result.json (empty when healthy or not recorded)."""
    flags = []
    for group, drift in sorted((result.get("module_drift") or {}).items()):
        if drift is not None and drift < FROZEN_DRIFT:
            flags.append(f"frozen: {group} moved {drift:.2g}")
    std, target = result.get("jepa_pred_std"), result.get("jepa_std_target")
    if std is not None and target is not None and std < target:
        flags.append(f"collapse: jepa_pred_std {std:.3g} < target {target:g}")
    grads = result.get("grad_health") or {}
    if (grads.get("clip_coef_max") or 1.0) < SILENCED_CLIP:
        flags.append(f"gradients silenced: clip coefficient <= {grads['clip_coef_max']:.2g}")
    if grads.get("nonfinite_grad_norm_steps"):
        flags.append(f"non-finite grad norm at {grads['nonfinite_grad_norm_steps']} logged steps")
    return flags


def health_table(runs: pd.DataFrame, only_flagged: bool = False) -> pd.DataFrame:
    """One row per run that recorded a result: its labels and its flags ('' when healthy)."""
    has_result = runs["result"].notna()
    rows = runs.loc[has_result, HEALTH_COLUMNS[:-1]].copy()
    flags = [run_flags(json.loads(text)) for text in runs.loc[has_result, "result"]]
    rows["flags"] = ["; ".join(f) for f in flags]
    if only_flagged:
        rows = rows[rows["flags"] != ""]
    return rows.reset_index(drop=True)


def health_sections(flagged: pd.DataFrame) -> list[Section]:
    """The flagged runs (`health_table(..., only_flagged=True)`) as one Section, titled
    "health: N runs flagged"; with none, the title "health: no flags" and no rows."""
    if flagged.empty:
        return [Section("health: no flags", HEALTH_COLUMNS, [])]
    cells = [render.texts(flagged, name) for name in HEALTH_COLUMNS]
    rows = [list(row) for row in zip(*cells, strict=True)]
    title = f"health: {len(flagged)} run{'s' if len(flagged) > 1 else ''} flagged"
    return [
        Section(
            title,
            HEALTH_COLUMNS,
            rows,
            right=frozenset({"seed"}),
            priority=_PRIORITY,
            folded=frozenset({"flags"}),
        )
    ]
