"""One run's full record: identity, outcome, and provenance (code, git, runtime, data,
config), gathered from its store row and its result.json for `jepardy show RUN_ID`; and the
one way every command finds a run by an id prefix (`find_run`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from jepardy.errors import UserError
from jepardy.store.engine import Database
from jepardy.store.models import IDENTITY_COLUMNS, RESULT_FIELDS

_IDENTITY = (
    *IDENTITY_COLUMNS,
    "kind",
    "nproc",
    "status",
    "reason",
    "exit_code",
    "attempts",
    "started_at",
    "finished_at",
    "host",
    "executor",
    "job_id",
    "job_state",
    "job_nodes",
    "devices",
    "run_dir",
    "git_commit",
)
_OUTCOME = tuple(name for name in RESULT_FIELDS if name != "code_sha256")  # code: its own section
_RUNTIME = (
    "python_version",
    "torch_version",
    "cuda_version",
    "cudnn_version",
    "gpu_name",
    "gpu_count",
    "world_size",
    "host",
    "platform",
    "device",
)


def find_run(store: Database, prefix: str, command: str) -> pd.Series:
    """The runs row whose id starts with `prefix`; UserError (naming `command`) unless
    exactly one does."""
    frame = store.runs_frame()
    rows = frame[frame["id"].str.startswith(prefix)] if prefix else frame.iloc[0:0]
    if len(rows) != 1:
        found = "no run" if len(rows) == 0 else f"{len(rows)} runs"
        raise UserError(f"{command}: {prefix!r}: {found} with that id prefix in {store.name}")
    return rows.iloc[0]


def describe_run(store: Database, run_id: str) -> dict[str, dict[str, Any]]:
    """Sections of plain values, in display order: identity, outcome, code, runtime, data,
    params, config. A section is empty when the run did not record it (e.g. never ran)."""
    row = find_run(store, run_id, "show")
    result = json.loads(row["result"]) if isinstance(row["result"], str) else {}
    config_path = Path(row["run_dir"]) / "config.json" if isinstance(row["run_dir"], str) else None
    config = json.loads(config_path.read_text()) if config_path and config_path.exists() else {}
    return {
        "identity": {k: _plain(row[k]) for k in _IDENTITY},
        "outcome": {k: _plain(row[k]) for k in _OUTCOME},
        "code": {"code_sha256": result.get("code_sha256"), **result.get("code_files", {})},
        "runtime": {k: result[k] for k in _RUNTIME if k in result},
        "data": result.get("data", {}),
        "params": json.loads(row["params"]),
        "config": config,
    }


def _plain(value: Any) -> Any:
    """pandas scalars (NA, Timestamp, numpy numbers) as plain printable values."""
    if value is None or pd.isna(value) is True:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value
