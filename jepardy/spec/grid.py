"""Float grids of a spec axis: `{start = "0.0", stop = "1.0", step = "0.05"}` -> 21 points.

Exact decimal arithmetic, then float, so a 0.05 step gives 0.15 and not 0.15000000000000002,
and the same grid is the same run ids on every machine.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from jepardy.errors import clipped_repr
from jepardy.spec.model import MAX_GRID_POINTS

GRID_KEYS = ("start", "stop", "step")
Fail = Callable[[str, str], NoReturn]  # (where, what): raise the one-line UserError


def float_grid(table: dict[str, Any], where: str, fail: Fail) -> tuple[float, ...]:
    """start, start + step, ..., stop. The step must land exactly on stop."""
    for key in GRID_KEYS:
        if key not in table:
            fail(f"{where}.{key}", "missing; a float grid needs start, stop and step")
    start, stop, step = (exact_decimal(table[k], f"{where}.{k}", fail) for k in GRID_KEYS)
    if step <= 0:
        fail(f"{where}.step", f"{step} is not positive; step must be > 0")
    if stop < start:
        fail(f"{where}.stop", f"{stop} is below start {start}; stop must be >= start")
    if (stop - start) / step >= MAX_GRID_POINTS:
        fail(f"{where}.step", f"{step} gives too many points; at most {MAX_GRID_POINTS}")
    count, rest = divmod(stop - start, step)
    if rest != 0:
        fail(
            f"{where}.step",
            f"{step} does not divide stop - start = {stop - start}; "
            "the grid must land exactly on stop",
        )
    return tuple(float(start + i * step) for i in range(int(count) + 1))


def exact_decimal(value: Any, where: str, fail: Fail) -> Decimal:
    """A TOML number or decimal string as an exact, finite Decimal."""
    # Numbers go through str() so a TOML 0.05 becomes Decimal("0.05"), not its binary value.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        kind = {dict: "table", list: "list"}.get(type(value), type(value).__name__)
        fail(where, f"{clipped_repr(value)} is a {kind}; expected a decimal string or a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        fail(where, f'{clipped_repr(value)} is not a number; expected a decimal string like "0.05"')
    if not number.is_finite():
        fail(where, f"{clipped_repr(value)} is not finite; expected a finite number")
    return number
