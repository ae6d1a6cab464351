"""Plan-time checks of a spec's runs, before any is stored or launched: how many there are
(counted before one is built), and that the trainer can run every one of them.

A run of the jepardy trainer is checked with the trainer's own rules
(`jepardy.trainer.config.check_params`, the function the trainer itself refuses a config
with at start-up), on its resolved params: the preset's fields, the spec's params over
them, the trainer's defaults for the rest. A "script" run's params are environment
variables of the challenge's script, which checks them itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jepardy.errors import UserError
from jepardy.spec.expand import arm_field, count_runs
from jepardy.spec.identity import RunIdentity
from jepardy.spec.model import Spec
from jepardy.spec.overrides import set_where
from jepardy.trainer.config import check_params

# A run's label in a message is cut to this many characters (a spec may have many axes).
_LABEL_CHARS = 60


def check_run_count(spec: Spec) -> None:
    """UserError when the spec expands to more than its `max_runs` runs."""
    total = count_runs(spec)
    if total > spec.max_runs:
        shown = f"{total:,}" if total < 10**15 else f"{total:.2e}"
        raise UserError(
            f"{spec.path}: sweep.max_runs: the spec expands to {shown} runs, over the limit "
            f"of {spec.max_runs:,}; set max_runs = N in [sweep] if so many are meant"
        )


def check_runs(spec: Spec, runs: Sequence[RunIdentity]) -> None:
    """UserError naming the first run the trainer would refuse, its field and value."""
    if spec.kind != "jepardy":
        return
    # Runs that differ only in their seed resolve to the same config but for the seed,
    # which parse.py already held to the trainer's rule: check each config once.
    checked: set[frozenset[tuple[str, object]]] = set()
    for run in runs:
        key = frozenset((k, v) for k, v in run.params.items() if k != "seed")
        if key in checked:
            continue
        if problem := check_params(run.params, world_size=run.nproc):
            where = run_where(spec.path, run)
            given = set_where(spec, problem.field)  # a --set value breaks a rule: say so
            raise UserError(f"{given}: {where}: {problem}" if given else f"{where}: {problem}")
        checked.add(key)


def run_where(spec_path: Path | str, run: RunIdentity) -> str:
    """`<spec>: lanes.<lane>.arms.<arm> (run <axis values, seed>)`: where a run's message
    points in the spec."""
    label = ",".join(part for part in (run.variant, run.match, f"seed={run.seed}") if part)
    if len(label) > _LABEL_CHARS:
        label = f"{label[: _LABEL_CHARS - 3]}..."
    return f"{spec_path}: lanes.{run.lane}.{arm_field(run.arm)} (run {label})"
