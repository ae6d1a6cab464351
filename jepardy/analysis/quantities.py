"""One format per quantity: how every table shows a number, whatever made the table.

Light on purpose (no pandas, no numpy): `jepardy status` and `runs` format their cells with
it before pandas would have finished importing.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

# One format per quantity, chosen by the column's unit suffix, first match wins: every
# table of runs (runs, status, plan, ingest, diff) formats numbers through `format_value`;
# the report's column formatters below use the same precision for the same quantities.
_QUANTITIES: tuple[tuple[str, Callable[[float], str]], ...] = (
    ("_per_s", lambda v: f"{v:,.0f}"),  # a rate: tokens_per_s
    ("_bytes", lambda v: f"{v:,.0f}"),
    ("_bpb", lambda v: f"{v:.4f}"),
    ("_loss", lambda v: f"{v:.4f}"),
    ("_s", lambda v: f"{v:.1f}"),
)


def format_value(name: str, value: Any) -> str:
    """`value` of column `name` as every table shows it: bytes with thousands separators,
    bpb and losses to 4 decimals, seconds to 1, other floats as written in a spec (`0.1`,
    not `0.1000`); blank when missing."""
    if hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    if is_missing(value):
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    number = float(value)
    for suffix, fmt in _QUANTITIES:
        if name.endswith(suffix) or name == suffix[1:]:
            return fmt(number)
    if isinstance(value, int) or number.is_integer():
        return str(int(number))
    return repr(number)


def is_missing(value: Any) -> bool:
    """None, a float NaN, or pandas' NA or NaT."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    # pandas' missing values exist only once pandas is imported; never import it here.
    pandas = sys.modules.get("pandas")
    return pandas is not None and not isinstance(value, str) and pandas.isna(value) is True
