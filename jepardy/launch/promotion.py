"""When promotions between lanes are decided, and what a sweep runs in consequence.

A sweep with promoted lanes runs in stages: every run known so far (lanes that promote
nothing, and promoted lanes whose decision is recorded); then, for each promoted lane whose
source lane's runs are now all done, the decision, made once from the store's results
(jepardy/analysis/promotion.py) and recorded with its evidence (jepardy/store/promotions.py);
then the runs it promotes; and so on until no decision is left to make. A recorded decision
is read back, never made again: a resumed sweep runs exactly the runs it promoted. A source
lane with runs not done (failed, timed out) leaves its promoted lanes pending, and says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from jepardy.errors import UserError
from jepardy.spec.expand import expand_runs
from jepardy.spec.identity import RunIdentity
from jepardy.spec.model import Lane, Spec
from jepardy.spec.promote import every_candidate, pending_lanes, resolve
from jepardy.store.engine import Database
from jepardy.store.frames import RUN_COLUMNS, read_runs
from jepardy.store.promotions import Decision, read_decisions, record_decision
from jepardy.store.states import RunStatus
from jepardy.store.transitions import Store


@dataclass
class Chain:
    """A spec as far as its decisions go: `spec` with the recorded ones applied, the
    decisions, and a line per lane still pending (why it waits)."""

    spec: Spec
    decisions: dict[str, Decision] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)


def recorded_chain(spec: Spec, database: Database | None) -> Chain:
    """The spec with the decisions recorded in `database` (read-only) applied; UserError when
    a recorded decision was made under other settings than the spec's."""
    recorded = read_decisions(database, spec.name) if database is not None else {}
    # In spec order, and only for lanes the spec still promotes.
    promoted = [lane for lane in spec.lanes if lane.promote and lane.name in recorded]
    decisions = {lane.name: recorded[lane.name] for lane in promoted}
    for lane in promoted:
        _check_recorded(spec, lane, decisions[lane.name])
    winners = {lane: decision.winners() for lane, decision in decisions.items()}
    chain = Chain(resolve(spec, winners), decisions)
    statuses = _statuses(chain.spec, database)
    most = Counter(run.lane for run in expand_runs(every_candidate(chain.spec, top=True)))
    for lane in pending_lanes(chain.spec):
        why = _waiting(chain.spec, lane, statuses)
        chain.waiting[lane.name] = f"{why}; then up to {most[lane.name]} runs" if why else ""
    return chain


def stages(spec: Spec, store: Store) -> Iterator[tuple[list[RunIdentity], list[Decision]]]:
    """The runs of each stage of a sweep (those not in an earlier stage), with the decisions
    made just before it; the caller runs each stage before asking for the next."""
    seen: set[str] = set()
    made: list[Decision] = []
    while True:
        chain = advance(spec, store, made)
        runs = [run for run in expand_runs(chain.spec) if run.run_id not in seen]
        if not runs:
            return
        seen.update(run.run_id for run in runs)
        yield runs, made
        made = []


def advance(spec: Spec, store: Store, made: list[Decision]) -> Chain:
    """Decide every pending lane whose source lane is done (recording each, appending it to
    `made`), until none is left to decide; the chain as it then stands."""
    while True:
        chain = recorded_chain(spec, store)
        ready = [lane for lane in pending_lanes(chain.spec) if chain.waiting[lane.name] == ""]
        if not ready:
            return chain
        for lane in ready:
            made.append(_decide(chain.spec, lane, store))


def chain_lines(chain: Chain) -> list[str]:
    """One line per promoted lane: what was promoted, or why it is pending."""
    lines = [f"lane {lane}: {decision.note}" for lane, decision in chain.decisions.items()]
    return lines + [f"lane {lane}: pending, {why}" for lane, why in chain.waiting.items()]


def _decide(spec: Spec, lane: Lane, store: Store) -> Decision:
    # Imported here: the tests import scipy, which would double every sweep's start-up.
    from jepardy.analysis.matching import MATCH_COLUMNS, MATCH_PARAMS
    from jepardy.analysis.promotion import decide

    assert lane.promote is not None
    source = lane.promote.source
    ids = [run.run_id for run in expand_runs(spec) if run.lane == source]
    columns = [*RUN_COLUMNS, *(c for c in MATCH_COLUMNS if c not in RUN_COLUMNS)]
    runs = read_runs(
        store, sweep=spec.name, status=None, columns=columns, params=list(MATCH_PARAMS)
    )
    runs = runs[runs["id"].astype(str).isin(ids)].reset_index(drop=True)
    decision = decide(runs, lane.promote, sweep=spec.name, lane=lane.name)
    return record_decision(store, decision)


def _statuses(spec: Spec, database: Database | None) -> dict[str, RunStatus]:
    runs = expand_runs(spec)
    return database.statuses([run.run_id for run in runs]) if database is not None else {}


def _waiting(spec: Spec, lane: Lane, statuses: dict[str, RunStatus]) -> str:
    """Why a pending lane waits ("" when its source lane is done and it can be decided)."""
    assert lane.promote is not None
    promote = lane.promote
    how = ", ".join(
        p for p in (promote.rule_text, f"top {promote.top}" if promote.top else "") if p
    )
    source = next(other for other in spec.lanes if other.name == promote.source)
    if source.promote is not None and not source.promote.decided:
        return f"promotes from lane {source.name} ({how}), itself pending"
    ids = [run.run_id for run in expand_runs(spec) if run.lane == source.name]
    done = sum(statuses.get(run_id) is RunStatus.DONE for run_id in ids)
    if done == len(ids):
        return ""
    stopped = sum(statuses.get(run_id) in (RunStatus.FAILED, RunStatus.TIMEOUT) for run_id in ids)
    tail = f"; {stopped} failed or timed out (rerun with --retry-failed)" if stopped else ""
    return f"decided ({how}) when lane {source.name} is done: {done} of {len(ids)} runs done{tail}"


def _check_recorded(spec: Spec, lane: Lane, decision: Decision) -> None:
    """A recorded decision stands only for the settings it was made under."""
    assert lane.promote is not None
    promote = lane.promote
    recorded = (decision.source_lane, decision.rule, decision.top)
    if recorded != (promote.source, promote.rule_text, promote.top):
        said = f"from {decision.source_lane}, rule {decision.rule!r}, top {decision.top}"
        raise UserError(
            f"{spec.path}: lanes.{lane.name}.promote: sweep {spec.name} recorded this "
            f"decision {said} at {decision.decided_at:%Y-%m-%d %H:%M} UTC; a decision is "
            "made once: restore those settings, or run the changed spec under a new sweep name"
        )
