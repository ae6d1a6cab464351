"""The curve and horizons the HTML report shows when `jepardy report` names none.

The page shows whatever a sweep holds: curves over the first arm axis (a key of the
variants, by name) with two or more numeric values within one arm, and horizons over the
first budget param (BUDGET_AXES) with two or more values within one lane. Those are only
candidates: each is built by the very table a user would ask for (curve_table,
horizon_table), so what the page shows is chosen by the tables' own rules. A candidate the
table refuses leaves its part out with a note saying why: the axis changed together with
another key of the matches or variants (no arm or lane ran two of its values with all else
equal), or what the table said (single-seed curves without --noise). The report never fails
over an axis it chose itself; an axis the user named keeps its error (report.build_report).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import pandas as pd

from jepardy.analysis.summary import drop_key, map_unique, split_pairs
from jepardy.errors import UserError

if TYPE_CHECKING:
    from jepardy.analysis.curves import Curves
    from jepardy.analysis.horizons import Horizons
    from jepardy.analysis.report import ReportRequest

# Budget params, whose values in the matches make horizons.
BUDGET_AXES = ("wallclock_s", "iterations")
T = TypeVar("T")


@dataclass(frozen=True)
class Scope:
    """Where a guessed axis must take two or more values (`within`), and the key columns
    whose other keys must stay the same between those values (`keys`)."""

    part: str  # "curves" or "horizons"
    within: tuple[str, ...]
    keys: tuple[str, ...]
    unit: str  # what must run two values, for the note


CURVES = Scope("curves", ("sweep", "lane", "arm"), ("match", "variant"), "arm")
HORIZONS = Scope("horizons", ("sweep", "lane"), ("match",), "lane")


@dataclass(frozen=True)
class FoundAxes:
    """The parts found (None where not, or where the request named its own axis) and a
    note per candidate axis the tables refused."""

    curves: Curves | None
    horizons: Horizons | None
    notes: tuple[str, ...]


def found_axes(done: pd.DataFrame, request: ReportRequest) -> FoundAxes:
    """Curves and horizons of tidy done runs along the axes they have, for the parts
    `request` names no axis for."""
    from jepardy.analysis.curves import curve_table
    from jepardy.analysis.horizons import horizon_table

    keys: dict[str, set[str]] = {"variant": set(), "match": set()}
    for column, found in keys.items():
        for text in done[column].astype(str).unique():
            found.update(split_pairs(text))
    curves, horizons, notes = None, None, []
    if not request.curve:
        candidates = [k for k in sorted(keys["variant"]) if _spread(done, k, CURVES.within)]

        def curve(axis: str) -> Curves:
            return curve_table(
                done, axis, metric=request.metric, noise=request.noise, resamples=request.resamples
            )

        curves = _first_built(done, CURVES, candidates, curve, notes)
    if not request.horizons:
        candidates = [
            k for k in BUDGET_AXES if k in keys["match"] and _spread(done, k, HORIZONS.within)
        ]
        horizons = _first_built(
            done,
            HORIZONS,
            candidates,
            lambda k: horizon_table(done, k, metric=request.metric),
            notes,
        )
    return FoundAxes(curves, horizons, tuple(notes))


def _first_built(
    done: pd.DataFrame,
    scope: Scope,
    candidates: list[str],
    build: Callable[[str], T],
    notes: list[str],
) -> T | None:
    """The table of the first candidate axis that `build` accepts; a note in `notes` for
    each one refused before it."""
    for axis in candidates:
        try:
            return build(axis)
        except UserError as refused:
            notes.append(_refusal_note(done, scope, axis, refused))
    return None


def _spread(done: pd.DataFrame, param: str, within: tuple[str, ...]) -> bool:
    """Whether numeric `param` takes two or more values in some group of `within` (runs
    without it left out)."""
    if param not in done.columns:
        return False
    values = pd.to_numeric(done[param], errors="coerce")
    if (values.isna() & done[param].notna()).any():  # not a number: no curve
        return False
    return bool((values.groupby([done[k] for k in within], observed=True).nunique() >= 2).any())


def _refusal_note(done: pd.DataFrame, scope: Scope, axis: str, refused: UserError) -> str:
    """Why the page has no `scope.part` over `axis`: the keys that changed with it, when
    that is why; else the table's own words."""
    moved = _moved_with(done, scope, axis)
    if not moved:
        return f"No {scope.part} over {axis}: {refused}"
    return (
        f"No {scope.part} over {axis}: no {scope.unit} ran two or more of its values with the "
        f"rest of its {' and '.join(scope.keys)} the same ({', '.join(moved)} changed with it)."
    )


def _moved_with(done: pd.DataFrame, scope: Scope, axis: str) -> list[str]:
    """The other keys of `scope.keys` that change with `axis` wherever it takes two or more
    values, when that is what keeps every such pair apart (no group with the rest of the
    keys equal holds two of its values); [] otherwise."""
    values = pd.to_numeric(done[axis], errors="coerce")
    rest = [
        map_unique(done[column].astype(str), lambda t: drop_key(t, axis)) for column in scope.keys
    ]
    keys = [*(done[k] for k in scope.within), *rest]
    if (values.groupby(keys, observed=True).nunique() >= 2).any():
        return []  # some group varies the axis alone: the table refused for another reason
    moved: set[str] = set()
    for _, group in done.assign(_x=values).groupby(list(scope.within), observed=True):
        if group["_x"].nunique() < 2:
            continue
        for column in scope.keys:
            pairs = [split_pairs(text) for text in group[column].astype(str).unique()]
            names = set().union(*pairs) - {axis}
            moved |= {name for name in names if len({p.get(name) for p in pairs}) > 1}
    return sorted(moved)
