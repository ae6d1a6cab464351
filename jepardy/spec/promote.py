"""Promotion between lanes: a lane's `promote = { from, top, rule }` table, its rule, and the
lanes a decision makes concrete.

A promoted lane runs the winners of an earlier lane (`from`): the candidates, each arm and
variant of that lane tested against its matched control, that pass every condition of the
rule, best delta first, at most `top` of them. Without arms of its own the lane takes each
winner's arm and variant (its params; the lane's own params, axes and seeds around them);
with arms of its own it is a gate and runs those whose name won. The decision itself is made
from the store's results (jepardy/analysis/promotion.py) and recorded there; this module only
parses the table and turns recorded winners into lanes (`resolve`), purely.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, NoReturn

from jepardy.errors import UserError, clipped_repr
from jepardy.spec.expand import arm_variants
from jepardy.spec.model import Arm, Axes, Condition, Lane, Promotion, Scalar, Spec

PROMOTE_KEYS = ("from", "top", "rule")
# Rule quantities: each arm (and variant) of the source lane against its matched control,
# as the compare table computes them (jepardy/analysis/compare.py).
QUANTITIES = {
    "p": "one-sided Welch p (the arm lower than its control)",
    "p_holm": "p, Holm-adjusted over the arms sharing the control",
    "p_margin": "p of beating the control by the challenge's margin (0.005 nats)",
    "delta": "arm mean - control mean, val_bpb",
    "ci_high": "upper end of the 95% interval of delta",
}
P_QUANTITIES = ("p", "p_holm", "p_margin")
_CONDITION = re.compile(r"\s*([a-z_]+)\s*(<=|>=|<|>)\s*(\S+)\s*")
_RULE_HELP = 'e.g. "p < 0.25" or "p < 0.25 and delta < -0.002"'

Fail = Callable[[str, str], NoReturn]
# A lane's recorded winners, best first: (arm, variant) pairs of its source lane.
Winners = Sequence[tuple[str, str]]


def parse_promote(value: Any, where: str, fail: Fail) -> Promotion:
    """The `promote` table of a lane (its arms decided later: `takes_winners` is set by
    `check_chain`, which sees the lane's own arms)."""
    if not isinstance(value, dict):
        fail(where, f'{clipped_repr(value)} is not a table; e.g. {{ from = "screen", top = 3 }}')
    for key in value:
        if key not in PROMOTE_KEYS:
            fail(f"{where}.{key}", f"unknown key; allowed: {', '.join(PROMOTE_KEYS)}")
    source = value.get("from")
    if not isinstance(source, str):
        fail(f"{where}.from", f"{clipped_repr(source)}: expected the name of an earlier lane")
    top = value.get("top")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        fail(f"{where}.top", f"{clipped_repr(top)} is not an int >= 1")
    text = value.get("rule", "")
    if not isinstance(text, str):
        fail(f"{where}.rule", f"{clipped_repr(text)} is not a string; {_RULE_HELP}")
    if top is None and not text.strip():
        fail(where, 'needs a rule, a top or both; e.g. { from = "screen", top = 3 }')
    rule = parse_rule(text, f"{where}.rule", fail) if text.strip() else ()
    return Promotion(source, top, rule, " ".join(text.split()), takes_winners=True)


def parse_rule(text: str, where: str, fail: Fail) -> tuple[Condition, ...]:
    """`quantity op number` conditions joined by `and`; see QUANTITIES."""
    conditions = []
    for part in re.split(r"\band\b", text):
        found = _CONDITION.fullmatch(part)
        if not found:
            fail(
                where,
                f"{clipped_repr(text)}: {part.strip()!r} is not `quantity < number`; {_RULE_HELP}",
            )
        quantity, op, number = found.groups()
        if quantity not in QUANTITIES:
            fail(
                where,
                f"{clipped_repr(text)}: unknown quantity {quantity!r}; "
                f"allowed: {', '.join(QUANTITIES)}",
            )
        try:
            threshold = float(number)
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            fail(where, f"{clipped_repr(text)}: {number!r} is not a finite number")
        if quantity in P_QUANTITIES and not 0 < threshold <= 1:
            fail(
                where,
                f"{clipped_repr(text)}: {quantity} {op} {number}: a p-value threshold is in (0, 1]",
            )
        conditions.append(Condition(quantity, op, threshold))
    return tuple(conditions)


def check_chain(lanes: Sequence[Lane], fail: Fail) -> tuple[Lane, ...]:
    """Each promotion names an earlier lane (so promotions never form a cycle) that has
    candidates; a gate's arms are named like candidates of its source. Returns the lanes
    with `takes_winners` set (False for a gate, a lane with arms of its own)."""
    checked: list[Lane] = []
    for lane in lanes:
        promote = lane.promote
        if promote is None:
            checked.append(lane)
            continue
        where = f"lanes.{lane.name}.promote"
        earlier = {other.name: other for other in checked}
        source = earlier.get(promote.source)
        if source is None:
            allowed = ", ".join(earlier) or "none"
            fail(
                f"{where}.from",
                f"{promote.source!r} is not an earlier lane (a lane is "
                f"promoted from one written before it, so never in a cycle); earlier lanes: "
                f"{allowed}",
            )
        arms = candidate_arms(source, earlier)
        if not arms:
            fail(
                f"{where}.from",
                f"lane {source.name} has no arms but its control; nothing can be promoted from it",
            )
        _check_arms(lane, source.name, arms, fail)
        checked.append(replace(lane, promote=replace(promote, takes_winners=not lane.arms)))
    return tuple(checked)


def candidate_arms(lane: Lane, lanes: Mapping[str, Lane]) -> tuple[Arm, ...]:
    """The arms a lane can run: its own, or (taking winners) its source's."""
    if lane.promote is not None and lane.promote.takes_winners and not lane.arms:
        return candidate_arms(lanes[lane.promote.source], lanes)
    return lane.arms


def _check_arms(lane: Lane, source: str, arms: Sequence[Arm], fail: Fail) -> None:
    """A gate's arms are named like candidates; a lane taking winners sets none of their
    fields as its own axis (the winner's value would clash with the axis)."""
    names = sorted({arm.name for arm in arms})
    for arm in lane.arms:
        if arm.name not in names:
            fail(
                f"lanes.{lane.name}.arms.{arm.name}",
                f"no arm {arm.name!r} in lane {source} to promote; its arms: {', '.join(names)}",
            )
    if lane.arms:
        return
    fields = {key for arm in arms for key in (*arm.params, *arm.axes)}
    for key in lane.axes:
        if key in fields:
            fail(
                f"lanes.{lane.name}.axes.{key}",
                f"also a field of the arms promoted from lane {source}; set a field in one place",
            )


def resolve(spec: Spec, winners: Mapping[str, Winners]) -> Spec:
    """The spec with every promoted lane whose decision is in `winners` (lane -> its winners,
    best first) made concrete: its arms set and `decided`. Lanes whose decision is not known
    (or whose source is not decided) stay pending: they expand to no runs."""
    lanes: dict[str, Lane] = {}
    for lane in spec.lanes:
        promote = lane.promote
        source = lanes.get(promote.source) if promote else None
        if promote and source is not None and _known(source) and lane.name in winners:
            lane = _decided(lane, source, winners[lane.name])
        lanes[lane.name] = lane
    return replace(spec, lanes=tuple(lanes.values()))


def every_candidate(spec: Spec, *, top: bool = False) -> Spec:
    """The spec as if every candidate of each pending promotion were promoted (with `top`:
    as many as its `top` allows): every run it can come to (for the trainer's checks at plan
    time), or as many as it can come to."""
    lanes: dict[str, Lane] = {}
    for lane in spec.lanes:
        if lane.promote is not None and not lane.promote.decided:
            source = lanes[lane.promote.source]
            everyone = [(arm.name, label) for arm in source.arms for label, _ in arm_variants(arm)]
            # A gate may run any of its arms, whichever candidates come first.
            cut = top and lane.promote.takes_winners
            lane = _decided(lane, source, everyone[: lane.promote.top if cut else None])
        lanes[lane.name] = lane
    return replace(spec, lanes=tuple(lanes.values()))


def pending_lanes(spec: Spec) -> list[Lane]:
    """Promoted lanes whose decision is not yet known, in spec order."""
    return [lane for lane in spec.lanes if not _known(lane)]


def _known(lane: Lane) -> bool:
    return lane.promote is None or lane.promote.decided


def _decided(lane: Lane, source: Lane, winners: Winners) -> Lane:
    """`lane` running `winners` of `source`: their arms and variants (each variant a
    one-point arm axis, so its label stays the source's), or, for a gate, its own arms whose
    name won."""
    assert lane.promote is not None
    if not lane.promote.takes_winners:
        names = {arm for arm, _ in winners}
        arms = tuple(arm for arm in lane.arms if arm.name in names)
    else:
        points = {
            (arm.name, label): (arm, point)
            for arm in source.arms
            for label, point in arm_variants(arm)
        }
        missing = [f"{n} {v}".strip() for n, v in winners if (n, v) not in points]
        if missing:
            raise UserError(
                f"lanes.{lane.name}.promote: the recorded winner {missing[0]} of lane "
                f"{source.name} is no longer an arm of it in the spec; restore it, or run "
                "the changed spec as a new sweep"
            )
        arms = tuple(
            Arm(name, points[name, label][0].params, _one_point(points[name, label][1]))
            for name, label in winners
        )
    return replace(lane, arms=arms, promote=replace(lane.promote, decided=True))


def _one_point(point: Mapping[str, Scalar]) -> Axes:
    return {key: (value,) for key, value in point.items()}
