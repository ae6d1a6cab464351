"""Promotion decisions in the store: recorded once with their evidence, read back forever.

A decision (a sweep's lane taking the winners of an earlier lane) is written in one write
transaction that first looks for an earlier one: of two orchestrators deciding at once, the
second finds the first's decision and gets it back instead of its own, so a decision is
never made twice, nor differently on resume.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jepardy.store.reader import Reader, parse_time, reading

if TYPE_CHECKING:
    from jepardy.store.engine import Database


@dataclass(frozen=True)
class Candidate:
    """One arm and variant of the source lane at one match, against its matched control."""

    arm: str
    variant: str
    match: str
    position: int  # in the source lane's order
    n: int
    control_n: int
    delta_bpb: float | None
    ci_low: float | None  # the 95% interval of delta_bpb
    ci_high: float | None
    p_welch: float | None
    p_holm: float | None
    p_margin: float | None
    verdict: str  # the compare table's
    rank: int | None  # 1 = best delta among those passing the rule; None: failed it
    selected: bool
    reason: str  # why selected or not, in words
    run_ids: tuple[str, ...]  # the arm's runs and its control's


@dataclass(frozen=True)
class Decision:
    """Which candidates of `source_lane` lane `lane` of `sweep` runs, and why."""

    sweep: str
    lane: str
    source_lane: str
    rule: str
    top: int | None
    note: str  # the decision in one line
    candidates: tuple[Candidate, ...]
    decided_at: datetime | None = None  # set when recorded

    def winners(self) -> list[tuple[str, str]]:
        """The selected (arm, variant) pairs, best first."""
        chosen = sorted(
            (c for c in self.candidates if c.selected), key=lambda c: (c.rank, c.position)
        )
        return list(dict.fromkeys((c.arm, c.variant) for c in chosen))


def record_decision(database: Database, decision: Decision) -> Decision:
    """Record `decision` unless one is recorded for its sweep and lane; return the recorded
    one (this, with its time, or the earlier one, unchanged)."""
    # Imported here: readers of decisions (the report) never load SQLAlchemy.
    import sqlalchemy as sa

    from jepardy.store.models import PromotionCandidate, PromotionDecision

    with database._session(write=True) as session:
        key = (decision.sweep, decision.lane)
        if session.get(PromotionDecision, key) is None:
            now = datetime.now(UTC)
            session.add(
                PromotionDecision(
                    sweep=decision.sweep,
                    lane=decision.lane,
                    source_lane=decision.source_lane,
                    rule=decision.rule,
                    top=decision.top,
                    note=decision.note,
                    decided_at=now,
                )
            )
            session.flush()  # the parent row first: the candidates' foreign key names it
            rows = [_candidate_row(decision, c) for c in decision.candidates]
            if rows:
                session.execute(sa.insert(PromotionCandidate), rows)
    return read_decisions(database, decision.sweep)[decision.lane]


def read_decisions(db: Reader | Database, sweep: str) -> dict[str, Decision]:
    """Every recorded decision of `sweep`, by promoted lane."""
    with reading(db) as reader:
        heads = reader.records(
            "SELECT lane, source_lane, rule, top, note, decided_at FROM promotions "
            "WHERE sweep = {p}",
            [sweep],
        )
        rows = reader.records(
            f"SELECT lane, {', '.join(_CANDIDATE_FIELDS)} FROM promotion_candidates "
            "WHERE sweep = {p} ORDER BY lane, position",
            [sweep],
        )
    by_lane: dict[str, list[Candidate]] = {}
    for row in rows:
        by_lane.setdefault(row.pop("lane"), []).append(_candidate(row))
    return {
        head["lane"]: Decision(
            sweep=sweep,
            **{name: head[name] for name in ("lane", "source_lane", "rule", "top", "note")},
            candidates=tuple(by_lane.get(head["lane"], [])),
            decided_at=parse_time(head["decided_at"]),
        )
        for head in heads
    }


_CANDIDATE_FIELDS = [f.name for f in fields(Candidate)]


def _candidate_row(decision: Decision, candidate: Candidate) -> dict[str, object]:
    row: dict[str, object] = {"sweep": decision.sweep, "lane": decision.lane}
    for name in _CANDIDATE_FIELDS:
        value = getattr(candidate, name)
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # SQLite turns NaN into NULL anyway; PostgreSQL would keep it
        row[name] = value
    row["run_ids"] = json.dumps(list(candidate.run_ids))
    return row


def _candidate(row: dict[str, Any]) -> Candidate:
    # A raw cursor gives SQLite's 0/1 for a boolean.
    values = {**row, "selected": bool(row["selected"])}
    return replace(Candidate(**values), run_ids=tuple(json.loads(row["run_ids"])))
