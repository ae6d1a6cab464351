"""Two runs side by side for `jepardy diff`: their labels, params (as given and as the
trainer resolved them), code hashes, data, runtime and outcome, field by field, from the
same record `jepardy show` prints (`jepardy.store.show.describe_run`).

Fields that change on every attempt (ids, times, hosts, job ids, run directories) say how a
run ran, not what it was; they are compared only with `everything`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jepardy.store.engine import Database
from jepardy.store.show import describe_run, resolve_run_id

# describe_run's sections, in the order a diff shows them.
SECTIONS = ("identity", "params", "config", "code", "data", "runtime", "outcome")
# Identity fields that describe what a run is; the others describe one attempt at it.
_WHAT = ("sweep", "lane", "arm", "variant", "match", "seed", "kind", "nproc", "status", "reason")
UNSET = "(unset)"


@dataclass(frozen=True)
class FieldDiff:
    section: str
    field: str
    first: Any
    second: Any

    @property
    def differs(self) -> bool:
        return self.first != self.second


@dataclass(frozen=True)
class RunDiff:
    """The two runs' full ids and their fields in display order (all, or those that differ)."""

    first_id: str
    second_id: str
    fields: list[FieldDiff]


def diff_runs(store: Database, first: str, second: str, everything: bool = False) -> RunDiff:
    """The fields of the runs `first` and `second` name (ids or unique prefixes) that differ,
    or with `everything` every field of both. A field one run lacks shows as UNSET."""
    ids = [resolve_run_id(store, ref, "diff") for ref in (first, second)]
    one, two = (_flat(describe_run(store, run_id, "diff"), everything) for run_id in ids)
    fields = [
        FieldDiff(key[0], key[1], one.get(key, UNSET), two.get(key, UNSET))
        for key in dict.fromkeys([*one, *two])
    ]
    shown = [f for f in fields if everything or f.differs]
    return RunDiff(ids[0], ids[1], sorted(shown, key=lambda f: SECTIONS.index(f.section)))


def _flat(
    sections: Mapping[str, Mapping[str, Any]], everything: bool
) -> dict[tuple[str, str], Any]:
    """{(section, dotted field): value}; nested tables (data, config) flattened."""
    out: dict[tuple[str, str], Any] = {}
    for section in SECTIONS:
        values = sections.get(section, {})
        if section == "identity" and not everything:
            values = {k: v for k, v in values.items() if k in _WHAT}
        for name, value in _dotted(values, ""):
            out[(section, name)] = value
    return out


def _dotted(values: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items += _dotted(value, f"{name}.")
        else:
            items.append((name, value))
    return items
