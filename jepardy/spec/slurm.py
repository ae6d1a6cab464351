"""The Slurm options of a sweep, declared once: the spec's [slurm] table, the CLI's
`--partition ... --constraint` options and the Slurm executor all derive from `SlurmOptions`.

It lives in the spec layer (plain data, no imports) so that the spec parser can check a
[slurm] table without importing the launcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, get_args, get_type_hints


def _option(help_text: str, default: int | None = None) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class SlurmOptions:
    """sbatch settings of every job of a sweep (None: the cluster's default). Text options
    must be non-empty, counts at least 1."""

    partition: str | None = _option("Slurm partition.")
    nodes: int = _option("Slurm nodes per run.", 1)
    # None: run.nproc on a GPU partition is the user's call.
    gpus_per_node: int | None = _option("Slurm GPUs per node.")
    # None: from the run's budget (sweep.run_timeout_s).
    time: int | None = _option("Slurm minutes per run.")
    account: str | None = _option("Slurm account.")
    qos: str | None = _option("Slurm QOS.")
    constraint: str | None = _option("Slurm node constraint.")


@dataclass(frozen=True)
class SlurmField:
    """One option of SlurmOptions: its name, value type (str or int) and help text."""

    name: str
    kind: type
    help: str


def _value_type(hint: Any) -> type:
    """`str` for `str | None`, `int` for `int`."""
    (kind,) = [arg for arg in get_args(hint) or (hint,) if arg is not type(None)]
    return kind


SLURM_FIELDS = tuple(
    SlurmField(f.name, _value_type(get_type_hints(SlurmOptions)[f.name]), f.metadata["help"])
    for f in fields(SlurmOptions)
)
SLURM_KEYS = tuple(f.name for f in SLURM_FIELDS)


def slurm_value_problem(key: str, value: object) -> str | None:
    """What a [slurm] `key` expects when `value` is not it; None when it fits. `key` is one
    of SLURM_KEYS."""
    kind = next(f.kind for f in SLURM_FIELDS if f.name == key)
    if kind is str:
        return None if isinstance(value, str) and value else "expected a non-empty string"
    is_int = isinstance(value, int) and not isinstance(value, bool)
    return None if is_int and value >= 1 else "expected an integer >= 1"
