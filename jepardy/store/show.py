"""One run's full record: identity, outcome, and provenance (code, git, runtime, data,
config), gathered from its store row and its result.json for `jepardy show RUN_ID`; and the
one way every command finds a run by its id or an id prefix (`resolve_run_id`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from jepardy.errors import UserError
from jepardy.store.engine import Database
from jepardy.store.models import Run
from jepardy.store.states import IDENTITY_COLUMNS, RESULT_FIELDS

_IDENTITY = (
    *IDENTITY_COLUMNS,
    "kind",
    "parent_run",  # a re-export's source run
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


# How many runs an ambiguous id lists.
_CANDIDATES = 5


def resolve_run_id(store: Database, ref: str, command: str) -> str:
    """The full id of the run `ref` names: its exact id, or a prefix of exactly one id. The
    one resolver of every command that takes run ids. UserError naming `command` when no run
    matches, and when several do (up to _CANDIDATES listed with lane/arm and seed)."""
    ref = ref.strip()
    if not ref:
        raise UserError(f"{command}: an empty run id")
    matches, count = _matching(store, ref)
    if ref in set(matches["id"]):
        return ref
    if count == 0:
        raise UserError(f"{command}: no run with id or id prefix {ref!r} in {store.name}")
    if count > 1:
        listed = ", ".join(_label(row) for row in matches.itertuples(index=False))
        more = f", ... ({count - len(matches)} more)" if count > len(matches) else ""
        raise UserError(
            f"{command}: ambiguous run id {ref!r}: {count} runs: {listed}{more}; "
            "give more of the id"
        )
    return str(matches["id"].iloc[0])


def resolve_run_ids(store: Database, refs: Sequence[str], command: str) -> list[str]:
    """`resolve_run_id` of each of `refs`, in order."""
    return [resolve_run_id(store, ref, command) for ref in refs]


def _matching(store: Database, ref: str) -> tuple[pd.DataFrame, int]:
    """Up to _CANDIDATES runs whose id starts with `ref` (the exact id first), and how many
    there are in all: one indexed range query, not the whole table."""
    where = Run.id.startswith(ref, autoescape=True)
    columns = (Run.id, Run.lane, Run.arm, Run.variant, Run.seed)
    first = (Run.id != ref, Run.id)
    with store.engine.connect() as connection:
        count = connection.scalar(sa.select(sa.func.count()).where(where))
        rows = connection.execute(
            sa.select(*columns).where(where).order_by(*first).limit(_CANDIDATES)
        ).all()
    return pd.DataFrame(rows, columns=[c.key for c in columns]), int(count or 0)


def _label(row: Any) -> str:
    arm = "/".join(part for part in (row.lane, row.arm, row.variant) if part)
    return f"{row.id} ({arm} seed {row.seed})"


def find_run(store: Database, ref: str, command: str) -> pd.Series:
    """The runs row (every column) of the run `ref` names (see `resolve_run_id`)."""
    run_id = resolve_run_id(store, ref, command)
    frame = store.runs_frame(store.stored_run(run_id).sweep)
    return frame[frame["id"] == run_id].iloc[0]


def describe_run(store: Database, run_id: str, command: str = "show") -> dict[str, dict[str, Any]]:
    """Sections of plain values, in display order: identity, outcome, code, runtime, data,
    params, config. A section is empty when the run did not record it (e.g. never ran).
    `command` names the command in the error for an unknown id."""
    row = find_run(store, run_id, command)
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
