"""A promotion decision from a frame of results: which arms of a lane go on, and why.

The candidates are the source lane's arm groups (arm, variant) at each match, tested against
their matched control by the compare table (jepardy/analysis/compare.py: Welch, Holm, the
margin test, the 95% interval of the delta). An arm group passes when every condition of the
rule holds at every match it ran; those passing are ranked by their mean delta (lowest
first) and the best `top` are selected. A candidate the compare table gives no verdict
(no matched control, other code or data, other seeds) never passes. Pure: the caller
records the result (jepardy/store/promotions.py) and never asks again.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

import pandas as pd

from jepardy.analysis import render
from jepardy.analysis.compare import CONTROL, NO_CONTROL, UNMATCHED, UNPAIRED, compare_table
from jepardy.analysis.reexports import CONTROL_REF
from jepardy.spec.model import CONTROL as CONTROL_ARM
from jepardy.spec.model import Condition, Promotion
from jepardy.store.promotions import Candidate, Decision
from jepardy.store.states import RunStatus

# Rule quantities (jepardy/spec/promote.py) -> compare table columns.
COLUMNS = {
    "p": "p_welch",
    "p_holm": "p_welch_holm",
    "p_margin": "p_margin",
    "delta": "delta_bpb",
    "ci_high": "delta_bpb_ci_high",
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def decide(runs: pd.DataFrame, promote: Promotion, *, sweep: str, lane: str) -> Decision:
    """The decision of promoted lane `lane` from the source lane's runs (`runs`: every run of
    it, done ones counted; any form `tidy_runs` accepts, with MATCH_PARAMS for the
    matching checks)."""
    table = compare_table(runs)
    # Re-exports are no candidates: their deltas are to their source runs, not the control.
    arms = table[table["versus"] == CONTROL_REF].reset_index(drop=True)
    control_n = _control_n(table)
    done = runs[runs["status"].astype(str) == RunStatus.DONE.value]
    groups = list(
        dict.fromkeys(zip(arms["arm"].astype(str), arms["variant"].astype(str), strict=True))
    )
    failures = {key: _failure(arms, key, promote.rule) for key in groups}
    passing = [key for key in groups if failures[key] is None]
    score = {key: _mean_delta(arms, key) for key in groups}
    ranked = sorted(passing, key=lambda key: (score[key], groups.index(key)))
    rank = {key: i + 1 for i, key in enumerate(ranked)}
    chosen = set(ranked[: promote.top] if promote.top else ranked)
    candidates = []
    for position, row in enumerate(arms.itertuples(index=False)):
        key = (str(row.arm), str(row.variant))
        why = _reason(key, failures[key], rank.get(key), key in chosen, promote.top, score)
        candidates.append(
            Candidate(
                arm=key[0],
                variant=key[1],
                match=str(row.match),
                position=position,
                n=int(row.n),
                control_n=control_n.get(str(row.match), 0),
                delta_bpb=_number(row.delta_bpb),
                ci_low=_number(row.delta_bpb_ci_low),
                ci_high=_number(row.delta_bpb_ci_high),
                p_welch=_number(row.p_welch),
                p_holm=_number(row.p_welch_holm),
                p_margin=_number(row.p_margin),
                verdict=str(row.verdict),
                rank=rank.get(key),
                selected=key in chosen,
                reason=why,
                run_ids=_run_ids(done, key, str(row.match)),
            )
        )
    winners = [key for key in ranked if key in chosen]
    note = _note(winners, len(groups), promote)
    return Decision(
        sweep, lane, promote.source, promote.rule_text, promote.top, note, tuple(candidates)
    )


def _control_n(table: pd.DataFrame) -> dict[str, int]:
    controls = table[table["verdict"] == CONTROL]
    return dict(zip(controls["match"].astype(str), controls["n"].astype(int), strict=True))


def _rows(arms: pd.DataFrame, key: tuple[str, str]) -> pd.DataFrame:
    return arms[(arms["arm"].astype(str) == key[0]) & (arms["variant"].astype(str) == key[1])]


def _mean_delta(arms: pd.DataFrame, key: tuple[str, str]) -> float:
    value = _rows(arms, key)["delta_bpb"].mean()
    return float(value) if pd.notna(value) else math.inf


def _failure(arms: pd.DataFrame, key: tuple[str, str], rule: Sequence[Condition]) -> str | None:
    """Why an arm group does not pass (the first match and condition that fail), or None."""
    for row in _rows(arms, key).itertuples(index=False):
        at = f" at {row.match}" if row.match else ""
        verdict = str(row.verdict)
        if verdict in (NO_CONTROL, UNPAIRED) or verdict.startswith(UNMATCHED):
            return f"not comparable{at}: {verdict}"
        if not rule and not math.isfinite(_number(row.delta_bpb) or math.nan):
            return f"no delta{at}"
        for condition in rule:
            value = _number(getattr(row, COLUMNS[condition.quantity]))
            shown = (
                f"{condition.quantity} {condition.op} {render.format_number(condition.threshold)}"
            )
            if value is None:
                return f"fails {shown}{at}: {condition.quantity} undefined ({verdict})"
            if not _OPS[condition.op](value, condition.threshold):
                return f"fails {shown}{at}: {condition.quantity} = {value:.4g}"
    return None


def _reason(
    key: tuple[str, str],
    failure: str | None,
    rank: int | None,
    selected: bool,
    top: int | None,
    score: dict[tuple[str, str], float],
) -> str:
    if failure is not None:
        return failure
    passed = f"rank {rank} (mean delta {score[key]:+.4f})"
    return f"selected: {passed}" if selected else f"passed, {passed}: beyond top {top}"


def _note(winners: list[tuple[str, str]], total: int, promote: Promotion) -> str:
    how = ", ".join(
        part for part in (promote.rule_text, f"top {promote.top}" if promote.top else "") if part
    )
    if not winners:
        return f"promoted none of {total} from lane {promote.source}: none passed {how}"
    names = ", ".join(f"{arm} {variant}".strip() for arm, variant in winners)
    return f"promoted {len(winners)} of {total} from lane {promote.source} ({how}): {names}"


def _run_ids(done: pd.DataFrame, key: tuple[str, str], match: str) -> tuple[str, ...]:
    """The done runs the candidate's test used: its own and its matched control's."""
    same = done["match"].astype(str) == match
    arm = (done["arm"].astype(str) == key[0]) & (done["variant"].astype(str) == key[1])
    control = done["arm"].astype(str) == CONTROL_ARM
    return tuple(done.loc[same & (arm | control), "id"].astype(str))


def _number(value: object) -> float | None:
    """A finite float, else None (NaN: untested)."""
    if value is None or pd.isna(value):
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None
