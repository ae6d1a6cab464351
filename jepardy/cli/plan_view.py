"""What `jepardy plan` says under its job matrix: the counts, the cost (GPU-hours, or
CPU-hours where the sweep would run on CPU; wall time on the slots the sweep would use) and
the power of each comparison, as readable lines and a table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console

from jepardy.analysis.planning import Comparison, CostLine, PlanEstimate
from jepardy.analysis.render import Section, to_rich
from jepardy.errors import UserError

if TYPE_CHECKING:
    from jepardy.launch.sweep import PlanEntry
    from jepardy.spec.model import Spec
    from jepardy.store.engine import Database


def print_counts(console: Console, counts: Mapping[str, Any]) -> None:
    """`describe_plan`'s counts as two lines: runs per lane and arm, runs per axis value."""
    lanes = "; ".join(
        f"{lane} {n} runs ({', '.join(f'{arm} {k}' for arm, k in counts['arms'][lane].items())})"
        for lane, n in counts["lanes"].items()
    )
    console.print(f"lanes: {lanes}", highlight=False)
    axes = "; ".join(
        f"{axis} " + ", ".join(f"{value} {n}" for value, n in values.items())
        for axis, values in counts["axes"].items()
    )
    console.print(f"axes: {axes or 'none'}", highlight=False)


def print_estimate(console: Console, estimate: PlanEstimate) -> None:
    """The cost lines, then the power table with the test, the power and the sd sources."""
    options = estimate.options
    unit = "GPU" if options.on_gpus else "CPU"
    console.print(
        f"cost: {estimate.runs_todo} of {estimate.runs_total} runs still to run: "
        f"{estimate.device_hours:.2f} {unit}-hours, {duration(estimate.wall_s)} wall on "
        f"{options.slots} {options.slots_source}",
        highlight=False,
    )
    for line in estimate.costs:
        console.print(f"  {_cost_text(line, options.on_gpus)}", highlight=False)
    if not estimate.comparisons:
        console.print("power: no arm against a control in this spec", highlight=False)
        return
    # plan has no --format: only a wider terminal shows a hidden column.
    console.print(to_rich([_power_section(estimate)], hint="a wider terminal shows them"))


def _cost_text(line: CostLine, on_gpus: bool) -> str:
    """`8 runs x 1 CPU core, jepardy, no preset, budget iterations = 150 (no wallclock_s):
    5 min 00 s each; ...`: what each run holds, its budget, its wall time and its source."""
    kind, preset, budget, steps = line.key
    what = f"preset {preset}" if preset else f"{kind}, no preset"
    if budget is not None:
        budget_text = f"budget wallclock_s = {budget:g} s"
    else:
        budget_text = f"budget iterations = {steps} (no wallclock_s)"
    unit = "GPU" if on_gpus else "CPU core"
    return (
        f"{line.runs} runs x {line.nproc} {unit}{'s' if line.nproc > 1 else ''}, {what}, "
        f"{budget_text}: {duration(line.wall_s)} each; {line.source}"
    )


def _power_section(estimate: PlanEstimate) -> Section:
    options = estimate.options
    detect = options.detect
    columns = ["lane", "match", "arm", "seeds", "arms/control", "seed sd", "detectable"]
    if detect is not None:
        columns.append(f"seeds for {detect:g}")
    rows = [_power_cells(c, detect) for c in estimate.comparisons]
    rule = options.rule
    notes = [
        f"detectable: the smallest true improvement in val_bpb found {options.power:.0%} of "
        f"the time by the report's test ({rule.sided}-sided Welch, p < {rule.alpha:g} divided "
        "over the arms sharing a control, Holm's first step); a margin comes on top",
        *(f"seed sd: {s}" for s in dict.fromkeys(c.sd_source for c in estimate.comparisons)),
    ]
    right = frozenset(columns[3:])
    # At 80 columns the answer (detectable, seeds needed) is kept before the inputs.
    first = ("arm", *columns[6:], "seed sd", "seeds")
    title = "power per comparison (arm vs its control)"
    return Section(title, columns, rows, right, [], notes, frozenset({"match"}), first)


def _power_cells(c: Comparison, detect: float | None) -> list[str]:
    in_sds = f"{c.detectable_sds:.2f} sd"
    found = in_sds if math.isnan(c.detectable) else f"{c.detectable:.5f} ({in_sds})"
    if c.seeds < 2:
        found = "n=1: no test"
    sd = "—" if c.seed_sd is None else f"{c.seed_sd:.5f}"
    cells = [c.lane, c.match, " ".join(p for p in (c.arm, c.variant) if p), str(c.seeds)]
    cells += [str(c.family), sd, found]
    if detect is not None:
        cells.append("—" if c.seed_sd is None else str(c.needed) if c.needed else "> 1000")
    return cells


def duration(seconds: float) -> str:
    """`2 h 05 min`, `6 min 12 s`, `45 s`."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@dataclass(frozen=True)
class PlanAsk:
    """`plan`'s options for the summary, as given on the command line."""

    gpus: str | None
    slots: int | None  # None: the sweep's default
    seed_std: float | None
    detect: float | None
    alpha: float
    sided: str
    power: float
    overhead_s: float | None  # None: planning's stated default


def print_plan_summary(
    console: Console,
    spec: Spec,
    entries: Sequence[PlanEntry],
    database: Database | None,
    ask: PlanAsk,
) -> None:
    """The counts, cost and power of a plan (under its job matrix)."""
    from jepardy.analysis.planning import (
        DEFAULT_OVERHEAD_S,
        PlanOptions,
        estimate_plan,
        read_history,
    )
    from jepardy.analysis.rules import make_rule
    from jepardy.spec.expand import describe_plan

    runs = [e.run for e in entries]
    print_counts(console, describe_plan(runs))
    if not 0 < ask.power < 1:
        raise UserError(f"plan: --power {ask.power}; a power must be between 0 and 1")
    slots, source, on_gpus = sweep_slots(ask, max((run.nproc for run in runs), default=1))
    options = PlanOptions(
        slots=slots,
        slots_source=source,
        on_gpus=on_gpus,
        rule=make_rule(ask.alpha, 0.0, ask.sided, name="report"),
        overhead_s=DEFAULT_OVERHEAD_S if ask.overhead_s is None else ask.overhead_s,
        seed_std=ask.seed_std,
        detect=ask.detect,
        power=ask.power,
    )
    after = {lane.name: lane.after for lane in spec.lanes}
    statuses = [e.status for e in entries]
    estimate = estimate_plan(runs, statuses, after, read_history(database), options)
    print_estimate(console, estimate)


def sweep_slots(ask: PlanAsk, widest: int) -> tuple[int, str, bool]:
    """The slots `jepardy sweep` with the same options would pack onto here, what they
    are, and whether they are GPUs: --gpus, else the GPUs detected; without GPUs, CPU
    slots: --slots, else one per core (per rank of the widest run), as the sweep takes."""
    from jepardy.launch.slots import detect_gpus, parse_gpus
    from jepardy.launch.sweep import cpu_slots

    if ask.gpus:
        gpus = len(parse_gpus(ask.gpus))
        return gpus, _slots_text(gpus, "GPU", "--gpus"), True
    detected = len(detect_gpus())
    if detected:
        return detected, _slots_text(detected, "GPU", "detected; --gpus to choose"), True
    if ask.slots is not None:
        return ask.slots, _slots_text(ask.slots, "CPU slot", "--slots"), False
    slots = cpu_slots(widest)
    per = "one per CPU core" if widest == 1 else f"one per {widest} CPU cores"
    return slots, _slots_text(slots, "CPU slot", f"no GPU found: {per}; --slots to choose"), False


def _slots_text(count: int, unit: str, why: str) -> str:
    """`GPUs (--gpus)`, `CPU slot (--slots)`: what follows the count."""
    return f"{unit}{'s' if count != 1 else ''} ({why})"
