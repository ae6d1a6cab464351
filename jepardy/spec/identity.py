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
from pathlib import Path
from typing import Any

JEPARDY = "jepardy"  # the kind of runs of the built-in trainer
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # jepardy/
_CODE_DIRS = ("trainer", "data")  # what the trainer process runs; see trainer_code_digest


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


def trainer_code_digest(package_dir: Path = _PACKAGE_DIR) -> str:
    """sha256 over every .py under `<package_dir>/trainer` and `<package_dir>/data`, sorted
    by path relative to the package's parent (e.g. "jepardy/trainer/config.py"); each file
    contributes its path, its length and its bytes. Files are read, never imported."""
    files = [p for d in _CODE_DIRS for p in (package_dir / d).rglob("*.py") if p.is_file()]
    relative = sorted((p.relative_to(package_dir.parent).as_posix(), p) for p in files)
    digest = hashlib.sha256()
    for name, path in relative:
        content = path.read_bytes()
        # Length-prefixed framing, so no two different file sets hash the same stream.
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()
