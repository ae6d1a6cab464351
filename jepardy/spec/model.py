"""A sweep spec as validated frozen dataclasses: the sweep, its lanes, their arms.

`jepardy.spec.parse.load_spec` builds them from a TOML file; `jepardy.spec.expand` turns them
into runs. The TOML layout and the precedence of params are the contracts in
docs/architecture.md ("Spec (TOML) -> runs").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

Scalar = bool | int | float | str
Axes = dict[str, tuple[Scalar, ...]]

CONTROL = "control"  # the name of every lane's control arm
SCRIPT = "script"  # a challenge train_gpt.py: params as environment variables
KINDS = ("jepardy", SCRIPT)  # trainer kinds that can be launched
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
# A grid of more points than this is almost surely a typo'd step (and would hang expansion).
MAX_GRID_POINTS = 10_000
# Runs a spec may expand to unless its [sweep] sets max_runs: past this, a spec is almost
# surely a mistake (a grid times many seeds), and expanding it would take minutes and GBs.
DEFAULT_MAX_RUNS = 10_000


@dataclass(frozen=True)
class Arm:
    """One arm of a lane: scalar params, and arm axes (each a tuple of distinct values)."""

    name: str
    params: dict[str, Scalar]
    axes: Axes


@dataclass(frozen=True)
class Lane:
    """A lane: its own params and axes, a control arm named "control", arms in file order."""

    name: str
    description: str
    params: dict[str, Scalar]
    axes: Axes
    control: Arm
    arms: tuple[Arm, ...]
    # Lanes (earlier in the file) whose runs must all finish before this lane's start, e.g.
    # the 600 s lane after the 180 s screen.
    after: tuple[str, ...] = ()
    # The lane's own seeds and processes per run, where they differ from the sweep's.
    seeds: tuple[int, ...] | None = None
    nproc: int | None = None
    # Arms taken from an earlier lane's winners (jepardy/spec/promote.py); None: its own.
    promote: Promotion | None = None


@dataclass(frozen=True)
class Condition:
    """One comparison of a promotion rule: `quantity op threshold`, e.g. p < 0.25."""

    quantity: str
    op: str
    threshold: float


@dataclass(frozen=True)
class Promotion:
    """`promote = { from, top, rule }`: the lane runs the winners of lane `source`. Without
    arms of its own it takes each winner's arm and variant; with its own arms (a gate) it
    runs those whose name won. `decided`: the decision is known (from the store), and the
    lane's arms are the promoted ones."""

    source: str
    top: int | None  # at most this many winners, best delta first; None: every one passing
    rule: tuple[Condition, ...]  # all must hold; () promotes by rank alone
    rule_text: str
    takes_winners: bool  # False: a gate over the lane's own arms
    decided: bool = False


@dataclass(frozen=True)
class Spec:
    """A validated spec. `text` and `sha256` are the file as read (the store records them);
    `code_digest` is `trainer_code_digest()` taken at load time, so expansion stays pure (for
    kind "script": the sha256 of the script at `script`)."""

    path: Path
    text: str
    sha256: str
    code_digest: str
    name: str
    description: str
    seeds: tuple[int, ...]
    max_runs: int
    zip_groups: tuple[tuple[str, ...], ...]
    kind: str
    nproc: int
    params: dict[str, Scalar]
    axes: Axes
    lanes: tuple[Lane, ...]
    # kind "script": the script's absolute path; code_digest is then its sha256.
    script: Path | None = None
    # [slurm]: SlurmOptions' fields (jepardy/spec/slurm.py).
    slurm: dict[str, str | int] = field(default_factory=dict)
    # `--set key=value` params that change the spec's [params] (already in `params`); each
    # run's match label names them (jepardy/spec/overrides.py).
    overrides: dict[str, Scalar] = field(default_factory=dict)
