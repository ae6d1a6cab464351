"""A run's identity: which run it is and what it was asked to do. One frozen type for every
run jepardy knows: planned from a spec, read back from the store, ingested from a log or a
table, or re-exported from another run's weights.

The id is a hash of the identity (sweep, lane, arm, params, kind, code), so the same run
planned twice, on any machine, has the same id and is never run twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JEPARDY = "jepardy"  # the kind of runs of the built-in trainer


@dataclass(frozen=True)
class RunIdentity:
    """One run. `params` holds only the keys its spec set (plus `seed`); the trainer fills in
    its own defaults. `match` pairs an arm run with its control run; `variant` names the arm's
    axis values. `script`: a kind "script" run's script path (empty when read back from the
    store, which keeps the script's hash, not its path). `parent_run`: the run whose weights
    a re-export took."""

    run_id: str
    sweep: str
    lane: str
    arm: str
    variant: str
    match: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    nproc: int = 1
    kind: str = JEPARDY
    script: str = ""
    parent_run: str | None = None


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the text every id hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def run_id(
    *, sweep: str, lane: str, arm: str, params: Mapping[str, Any], kind: str, code: str
) -> str:
    """First 16 hex chars of sha256 over the canonical JSON of the run's identity."""
    identity = {"sweep": sweep, "lane": lane, "arm": arm, "params": dict(params)}
    identity |= {"kind": kind, "code": code}
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]
