"""Where a spec's axes live: each axis at one level (the sweep's [axes] or a lane's), never
also an arm param, and the `sweep.zip` groups that step axes together (equal lengths, each
axis in one group, a group wholly in or wholly out of each lane's scope).
"""

from __future__ import annotations

from typing import Any

from jepardy.errors import clipped_repr
from jepardy.spec.expand import arm_field
from jepardy.spec.grid import Fail
from jepardy.spec.model import Axes, Lane
from jepardy.spec.tomlfile import describe


def check_overlaps(axes: Axes, lanes: tuple[Lane, ...], fail: Fail) -> None:
    """An axis lives at one level, and a field that is an axis is never an arm param."""
    for lane in lanes:
        for key in lane.axes:
            if key in axes:
                fail(
                    f"lanes.{lane.name}.axes.{key}",
                    f"also a sweep axis (axes.{key}); define an axis at one level",
                )
        scope = {key: f"axes.{key}" for key in axes}
        scope |= {key: f"lanes.{lane.name}.axes.{key}" for key in lane.axes}
        for arm in (lane.control, *lane.arms):
            for key in (*arm.params, *arm.axes):
                if key in scope:
                    fail(
                        f"lanes.{lane.name}.{arm_field(arm.name)}.{key}",
                        f"also an axis ({scope[key]}); set a field in one place",
                    )


def parse_zip(
    value: Any, axes: Axes, lanes: tuple[Lane, ...], fail: Fail
) -> tuple[tuple[str, ...], ...]:
    """Each group names >= 2 distinct sweep or lane axes of equal length, and no axis is in
    two groups. In every lane a group is either wholly in scope or wholly absent."""
    if value is None:
        return ()
    if not isinstance(value, list):
        fail("sweep.zip", f"{describe(value)}; expected a list of lists of axis names")
    known = set(axes).union(*(lane.axes for lane in lanes))
    groups = tuple(_zip_group(g, f"sweep.zip[{i}]", known, fail) for i, g in enumerate(value))
    for i, group in enumerate(groups):
        for j, earlier in enumerate(groups[:i]):
            for name in set(group) & set(earlier):
                fail(
                    f"sweep.zip[{i}]",
                    f"{name} is also in sweep.zip[{j}]; an axis may be in one zip group",
                )
        for lane in lanes:
            _check_zip_in_lane(group, f"sweep.zip[{i}]", axes, lane, fail)
    return groups


def _zip_group(group: Any, where: str, known: set[str], fail: Fail) -> tuple[str, ...]:
    allowed = "expected a list of two or more distinct axis names"
    if not isinstance(group, list) or len(group) < 2:
        fail(where, f"{describe(group)}; {allowed}")
    for i, name in enumerate(group):
        if not isinstance(name, str) or name in group[:i]:
            fail(f"{where}[{i}]", f"{clipped_repr(name)} is not a new axis name; {allowed}")
        if name not in known:
            fail(
                f"{where}[{i}]",
                f"{clipped_repr(name)} is not a sweep or lane axis; "
                "zip names axes from [axes] or lanes.<name>.axes",
            )
    return tuple(group)


def _check_zip_in_lane(
    group: tuple[str, ...], where: str, axes: Axes, lane: Lane, fail: Fail
) -> None:
    scope = {**axes, **lane.axes}
    present = [name for name in group if name in scope]
    if not present:
        return
    if len(present) < len(group):
        missing = ", ".join(name for name in group if name not in scope)
        fail(
            f"lanes.{lane.name}.axes",
            f"lacks {missing} of zip group {where}; "
            "a zip group's axes must all be defined for the lane",
        )
    if len({len(scope[name]) for name in group}) > 1:
        sizes = ", ".join(f"{name}: {len(scope[name])}" for name in group)
        # Name the lane only when its own axes take part; sweep axes are the same everywhere.
        lane_part = f" in lane {lane.name}" if set(group) & set(lane.axes) else ""
        fail(
            where,
            f"axes of different lengths ({sizes}){lane_part}; zipped axes must have equal lengths",
        )
