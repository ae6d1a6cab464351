"""A validated spec -> its runs, in the order the spec is written: lanes in file order;
control, then arms in file order; arm-axis points; sweep and lane axis points (zip groups
advance together); seeds. Pure and deterministic; the run identity is docs/architecture.md's
("Run identity").
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from jepardy.errors import UserError
from jepardy.spec.identity import RunIdentity, canonical_json, run_id
from jepardy.spec.model import CONTROL, Arm, Axes, Lane, Scalar, Spec


def expand_runs(spec: Spec) -> list[RunIdentity]:
    """Every run of the spec, in spec order: lanes in file order; control, then arms in file
    order; arm-axis points; sweep+lane-axis points (zip groups advance together); seeds.

    Pure and deterministic. Raises `UserError` if two runs of one lane resolve to the same
    params (e.g. an arm that equals the control).
    """
    runs = [run for lane in spec.lanes for run in _expand_lane(spec, lane)]
    _check_duplicates(spec, runs)
    return runs


def count_runs(spec: Spec) -> int:
    """How many runs `expand_runs` gives, from the axis sizes alone: nothing is built, so a
    spec of 10^12 runs is counted at once."""
    return sum(_lane_count(spec, lane) for lane in spec.lanes)


def _lane_count(spec: Spec, lane: Lane) -> int:
    if not _runs(lane):
        return 0
    matches = math.prod(len(unit) for unit in _match_units(spec, lane))
    arms = (lane.control, *lane.arms)
    variants = sum(math.prod(len(values) for values in arm.axes.values()) for arm in arms)
    return variants * matches * len(lane.seeds or spec.seeds)


def _runs(lane: Lane) -> bool:
    """Whether a lane has runs: not a promoted lane whose decision is pending or promoted
    nothing (a control alone would be compared with nothing)."""
    return lane.promote is None or (lane.promote.decided and bool(lane.arms))


def arm_variants(arm: Arm) -> list[tuple[str, dict[str, Scalar]]]:
    """Each point of an arm's axes with its `variant` label, in expansion order."""
    return [(_label(point), point) for point in _points(_axis_units(arm.axes))]


def format_value(value: Scalar) -> str:
    """A value as it appears in `match` and `variant`: true/false, floats by repr."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def describe_plan(runs: Sequence[RunIdentity]) -> dict[str, Any]:
    """Counts for `jepardy plan`: {"runs": n, "lanes": {lane: n}, "arms": {lane: {arm: n}},
    "axes": {param: {value: n}}}. "axes" lists every param (seed included) whose value differs
    between runs; a run that does not set it counts under "(default)"."""
    arms: dict[str, Counter[str]] = {}
    for run in runs:
        arms.setdefault(run.lane, Counter())[run.arm] += 1
    return {
        "runs": len(runs),
        "lanes": dict(Counter(run.lane for run in runs)),
        "arms": {lane: dict(counts) for lane, counts in arms.items()},
        "axes": _value_counts(runs),
    }


def _expand_lane(spec: Spec, lane: Lane) -> Iterator[RunIdentity]:
    if not _runs(lane):
        return
    matches = _points(_match_units(spec, lane))
    for arm in (lane.control, *lane.arms):
        for variant in _points(_axis_units(arm.axes)):
            for match in matches:
                for seed in lane.seeds or spec.seeds:
                    yield _planned_run(spec, lane, arm, variant, match, seed)


def _planned_run(
    spec: Spec,
    lane: Lane,
    arm: Arm,
    variant: dict[str, Scalar],
    match: dict[str, Scalar],
    seed: int,
) -> RunIdentity:
    # Precedence: [params] < lane params < axis values < arm params < seed. Validation made
    # axis and arm keys disjoint, so only the first two layers ever overlap the others.
    merged = {**spec.params, **lane.params, **match, **arm.params, **variant, "seed": seed}
    params = dict(sorted(merged.items()))
    identity = run_id(
        sweep=spec.name,
        lane=lane.name,
        arm=arm.name,
        params=params,
        kind=spec.kind,
        code=spec.code_digest,
    )
    return RunIdentity(
        run_id=identity,
        sweep=spec.name,
        lane=lane.name,
        arm=arm.name,
        variant=_label(variant),
        match=_label({**match, **spec.overrides}),
        seed=seed,
        params=params,
        nproc=lane.nproc or spec.nproc,
        kind=spec.kind,
        script=str(spec.script) if spec.script else "",
    )


# A "unit" is one independent factor of a product: a list of choices, each choice a dict of
# axis values. An ordinary axis is a unit of one-key dicts; a zip group is a single unit.
_Unit = list[dict[str, Scalar]]


def _axis_units(axes: Axes) -> list[_Unit]:
    return [[{name: value} for value in values] for name, values in axes.items()]


def _match_units(spec: Spec, lane: Lane) -> list[_Unit]:
    """Sweep axes then lane axes, in written order; a zip group sits at its first member."""
    scope = {**spec.axes, **lane.axes}
    units: list[_Unit] = []
    done: set[str] = set()
    for name in scope:
        if name in done:
            continue
        group = next((g for g in spec.zip_groups if name in g), (name,))
        units.append([{n: scope[n][i] for n in group} for i in range(len(scope[name]))])
        done.update(group)
    return units


def _points(units: list[_Unit]) -> list[dict[str, Scalar]]:
    # product() of no units yields one empty point: a lane without axes runs once per seed.
    return [
        {k: v for choice in combo for k, v in choice.items()} for combo in itertools.product(*units)
    ]


def _label(point: Mapping[str, Scalar]) -> str:
    return ",".join(f"{key}={format_value(point[key])}" for key in sorted(point))


def _check_duplicates(spec: Spec, runs: list[RunIdentity]) -> None:
    seen: dict[tuple[str, str], RunIdentity] = {}
    for run in runs:
        first = seen.setdefault((run.lane, canonical_json(run.params)), run)
        if first is not run:
            where = f"lanes.{run.lane}.{arm_field(run.arm)}"
            raise UserError(
                f"{spec.path}: {where}: {_run_label(run)} resolves to the same params as "
                f"{_run_label(first)}; every run in a lane must differ"
            )


def arm_field(arm: str) -> str:
    return CONTROL if arm == CONTROL else f"arms.{arm}"


def _run_label(run: RunIdentity) -> str:
    where = ", ".join(part for part in (run.variant, run.match, f"seed={run.seed}") if part)
    return f"arm {run.arm} ({where})"


def _value_counts(runs: Sequence[RunIdentity]) -> dict[str, dict[str, int]]:
    keys = sorted({key for run in runs for key in run.params})
    counts = {
        key: Counter(
            format_value(run.params[key]) if key in run.params else "(default)" for run in runs
        )
        for key in keys
    }
    return {key: dict(c) for key, c in counts.items() if len(c) > 1}
