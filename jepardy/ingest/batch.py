"""What reading files for `jepardy ingest` gives: runs with their identity and outcome
(`IngestedRun`), in one `Batch` per ingested folder or file, and the `IngestReport` of what
was added, already there or left out.

An ingested run's id hashes (sweep, source path relative to the ingested folder, the run's
index in the file, the sha256 of its text), so ingesting the same files again adds nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepardy.ingest.records import Check
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome

KIND = "ingested"


@dataclass(frozen=True)
class IngestedRun:
    """A run read from a file: its identity, its outcome, and where in the file it was."""

    identity: RunIdentity
    outcome: RunOutcome
    source: str  # "<relative path>" or "<relative path> run <n>" / "table <t> line <l>"


@dataclass
class Batch:
    """The runs of one ingested folder or file, and what the sweep row records of it."""

    sweep: str
    path: Path
    runs: list[IngestedRun] = field(default_factory=list)
    description: dict[str, Any] = field(default_factory=dict)


@dataclass
class IngestReport:
    added: list[IngestedRun] = field(default_factory=list)
    existing: list[IngestedRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # files, tables and rows left out, and why
    checks: list[Check] = field(default_factory=list)  # submission.json against its logs
    sweeps: list[str] = field(default_factory=list)


def ingest_id(sweep: str, source: str, index: int | str, content_sha256: str) -> str:
    """First 16 hex chars of sha256 over the canonical JSON of an ingested run's identity."""
    identity = {"sweep": sweep, "source": source, "index": index, "content": content_sha256}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as the sweep row records each ingested file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
