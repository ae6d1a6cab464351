"""Two runs side by side for `jepardy diff`: their labels, params (as given and as the
trainer resolved them), code hashes, data, runtime and outcome, field by field, from the
same record `jepardy show` prints (`jepardy.store.show.describe_run`).

Fields that change on every attempt (ids, times, hosts, job ids, run directories) say how a
run ran, not what it was; they are compared only with `everything`.

A re-export (`jepardy export`, kind "export") is its source's trained model under another
export: what it did not record itself (an older export kept no config, data or runtime) is
its source's, its config with the export's own settings (quant_bits, zstd_level, ...) over
it, so a run against its re-export differs only where the export changed something. A note
under the table says which run a re-export came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jepardy.errors import UserError
from jepardy.store.engine import Database
from jepardy.store.show import describe_run, resolve_run_id

# describe_run's sections, in the order a diff shows them.
SECTIONS = ("identity", "params", "config", "code", "data", "runtime", "outcome")
# Identity fields that describe what a run is; the others describe one attempt at it.
_WHAT = (
    *("sweep", "lane", "arm", "variant", "match", "seed", "kind", "parent_run", "nproc"),
    *("status", "reason"),
)
UNSET = "(unset)"
EXPORT_KIND = "export"  # a re-export's kind (launch/reexport.py; diff never imports launch)
# The sections a re-export that did not record them takes from its source run.
_INHERITED = ("config", "data", "runtime")


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
    notes: list[str] = field(default_factory=list)  # which run a re-export came from


def diff_runs(store: Database, first: str, second: str, everything: bool = False) -> RunDiff:
    """The fields of the runs `first` and `second` name (ids or unique prefixes) that differ,
    or with `everything` every field of both. A field one run lacks shows as UNSET."""
    ids = [resolve_run_id(store, ref, "diff") for ref in (first, second)]
    described = [_with_source(store, describe_run(store, run_id, "diff")) for run_id in ids]
    one, two = (_flat(sections, everything) for sections, _ in described)
    fields = [
        FieldDiff(key[0], key[1], one.get(key, UNSET), two.get(key, UNSET))
        for key in dict.fromkeys([*one, *two])
    ]
    shown = [f for f in fields if everything or f.differs]
    notes = [note for _, note in described if note]
    ordered = sorted(shown, key=lambda f: SECTIONS.index(f.section))
    return RunDiff(ids[0], ids[1], ordered, notes)


def _with_source(
    store: Database, sections: dict[str, dict[str, Any]]
) -> tuple[dict[str, dict[str, Any]], str]:
    """A re-export's sections with what it did not record taken from its source run (see
    the module docstring), and the note that says so; any other run's as they are."""
    identity = sections["identity"]
    source_id = identity.get("parent_run")
    if identity.get("kind") != EXPORT_KIND or not source_id:
        return sections, ""
    note = f"{identity['id']} is a re-export of {source_id}"
    try:
        source = describe_run(store, str(source_id), "diff")
    except UserError:
        return sections, f"{note} (no longer in the store)"
    taken = [name for name in _INHERITED if not sections[name] and source[name]]
    own = {
        key: value
        for key, value in sections["params"].items()
        if source["params"].get(key, UNSET) != value
    }
    filled = {name: source[name] for name in taken}
    if "config" in filled:  # the source's config under the export's own settings
        filled["config"] = {**filled["config"], **{k: own[k] for k in own if k in filled["config"]}}
    missing = [key for key in source["runtime"] if key not in sections["runtime"]]
    if missing and "runtime" not in taken:
        filled["runtime"] = {**sections["runtime"], **{k: source["runtime"][k] for k in missing}}
        taken.append("runtime")
    said = f"; not recorded by the export, its source's: {', '.join(taken)}" if taken else ""
    return {**sections, **filled}, note + said


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
