"""What a sweep will cost and what it can detect, before it runs (`jepardy plan`).

Cost: each run takes its training budget (`wallclock_s`, resolved through its preset) plus
an overhead (compile, evaluation, export, start-up) measured on the store's earlier runs of
the same preset: the median of their wall time (finished_at - started_at) minus their
budget; without such runs, a stated default. A run without a budget (an iteration cap only)
takes the median wall time of earlier runs of the same preset and iteration cap. Device-hours
count `nproc` GPUs per run on GPUs, `nproc` single-threaded cores on CPU; the wall time packs
the runs still to run onto the slots as the local executor does (spec order, no backfill, a
lane with `after` waits for those lanes; a run holds `nproc` GPUs, or one CPU slot).

Power: per comparison (an arm variant against its lane's control in the same match), the
smallest true improvement its seeds detect (analysis/power.py), given the seed sd pooled
over the store's done runs of the same preset and budget (each arm group's own sd, pooled by
degrees of freedom), or a given `--seed-std`; each figure says where its sd came from.
"""

from __future__ import annotations

import functools
import heapq
import json
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from jepardy.analysis.power import DEFAULT_POWER, detectable_difference, seeds_needed
from jepardy.analysis.rules import Rule
from jepardy.analysis.summary import CONTROL_ARM, EXPORT_KIND
from jepardy.errors import UserError
from jepardy.spec.identity import RunIdentity
from jepardy.store.engine import Database
from jepardy.store.frames import ARM_KEYS, read_runs
from jepardy.store.states import RunStatus
from jepardy.trainer.config import TrainConfig, preset_params

DEFAULT_OVERHEAD_S = 300.0  # stated when no earlier run of a preset says otherwise
# A run's cost class: kind, preset, budget (None: none) and, without a budget, its step cap.
CostKey = tuple[str, str, float | None, int | None]


@dataclass(frozen=True)
class PlanOptions:
    """What `plan` was asked: slots (GPUs, or CPU slots when `on_gpus` is False) to pack
    onto, a stated overhead, a given seed sd, a difference to detect, the rule and the power."""

    slots: int
    slots_source: str
    rule: Rule
    on_gpus: bool = True
    overhead_s: float = DEFAULT_OVERHEAD_S
    seed_std: float | None = None
    detect: float | None = None
    power: float = DEFAULT_POWER


@dataclass(frozen=True)
class CostLine:
    """Runs of one cost class still to run: each `wall_s` = budget + overhead (or a
    measured wall), `nproc` GPUs (or CPU cores) each, and where the overhead came from."""

    key: CostKey
    runs: int
    nproc: int
    wall_s: float
    source: str


@dataclass(frozen=True)
class Comparison:
    """One arm variant against its control: seeds, arms sharing the control (Holm's
    family), the seed sd and its source, the detectable difference in seed sds (known
    without any sd) and in bpb (NaN without one), the seeds needed for --detect."""

    lane: str
    match: str
    arm: str
    variant: str
    seeds: int
    family: int
    seed_sd: float | None
    sd_source: str
    detectable_sds: float
    detectable: float
    needed: int | None


@dataclass(frozen=True)
class PlanEstimate:
    runs_total: int
    runs_todo: int
    device_hours: float  # GPU-hours, or CPU core-hours off GPUs
    wall_s: float
    costs: list[CostLine]
    comparisons: list[Comparison]
    options: PlanOptions


def estimate_plan(
    runs: Sequence[RunIdentity],
    statuses: Sequence[str],
    after: Mapping[str, Sequence[str]],
    history: pd.DataFrame,
    options: PlanOptions,
) -> PlanEstimate:
    """Cost and power of `runs` (with their store statuses; done ones cost nothing),
    `after` the lanes each lane waits for, from `history` (`history_frame`)."""
    if options.seed_std is not None and not options.seed_std > 0:
        raise UserError(f"plan: --seed-std {options.seed_std}; a seed sd must be > 0")
    if options.detect is not None and not options.detect > 0:
        raise UserError(f"plan: --detect {options.detect}; a difference must be > 0")
    if not options.overhead_s >= 0:
        raise UserError(f"plan: --overhead-s {options.overhead_s}; an overhead must be >= 0")
    todo = [run for run, status in zip(runs, statuses, strict=True) if status != "done"]
    keys = {run.run_id: cost_key(run) for run in runs}
    walls = {key: _wall(key, history, options.overhead_s) for key in set(keys.values())}
    costs = _cost_lines(todo, keys, walls)
    durations = [walls[keys[run.run_id]][0] for run in todo]
    device_s = sum(d * run.nproc for d, run in zip(durations, todo, strict=True))
    wall_s = pack_wall_s(todo, durations, options.slots, after, options.on_gpus)
    comparisons = _comparisons(runs, keys, history, options)
    return PlanEstimate(len(runs), len(todo), device_s / 3600, wall_s, costs, comparisons, options)


# --- cost ---


def cost_key(run: RunIdentity | Mapping[str, Any], kind: str = "jepardy") -> CostKey:
    """(kind, preset, budget_s, step cap when there is no budget) of a run or params."""
    params = run.params if isinstance(run, RunIdentity) else run
    kind = run.kind if isinstance(run, RunIdentity) else kind
    preset = str(params.get("preset", "") or "")
    defaults = TrainConfig()
    resolved = {**(preset_params(preset) if kind == "jepardy" else {}), **params}
    budget = float(resolved.get("wallclock_s", defaults.wallclock_s if kind == "jepardy" else 0))
    steps = resolved.get("iterations", defaults.iterations if kind == "jepardy" else None)
    return (kind, preset, budget, None) if budget > 0 else (kind, preset, None, steps)


def _wall(key: CostKey, history: pd.DataFrame, overhead_s: float) -> tuple[float, str]:
    """A run's expected wall time and where its overhead came from."""
    kind, preset, budget, steps = key
    named = f"preset {preset}" if preset else f"{kind} runs without a preset"
    if budget is not None:
        same = history[(history["_kind"] == kind) & (history["_preset"] == preset)]
        same = same[same["_budget"].notna()]
        if len(same):
            overhead = statistics.median((same["_wall_s"] - same["_budget"]).tolist())
            return budget + overhead, (
                f"overhead {overhead:.0f} s measured: median of {len(same)} earlier runs of "
                f"{named} (wall minus budget; {_ids(same)})"
            )
        return budget + overhead_s, (
            f"overhead {overhead_s:.0f} s stated (--overhead-s; no earlier run of {named})"
        )
    same = history[(history["_kind"] == kind) & (history["_preset"] == preset)]
    same = same[same["_budget"].isna() & (same["_steps"] == steps)]
    if len(same):
        wall = statistics.median(same["_wall_s"].tolist())
        return wall, (
            f"no budget: median wall of {len(same)} earlier runs of {named} at {steps} steps "
            f"({_ids(same)})"
        )
    return overhead_s, (
        f"no budget and no earlier run of {named} at {steps} steps: counted at --overhead-s"
    )


def _ids(runs: pd.DataFrame, shown: int = 3) -> str:
    ids = runs["id"].astype(str).tolist()
    more = f", ... ({len(ids)} runs)" if len(ids) > shown else ""
    return "runs " + ", ".join(ids[:shown]) + more


def _cost_lines(
    todo: Sequence[RunIdentity], keys: Mapping[str, CostKey], walls: Mapping[CostKey, tuple]
) -> list[CostLine]:
    lines: dict[tuple[CostKey, int], int] = {}
    for run in todo:
        group = (keys[run.run_id], run.nproc)
        lines[group] = lines.get(group, 0) + 1
    return [
        CostLine(key, count, nproc, walls[key][0], walls[key][1])
        for (key, nproc), count in lines.items()
    ]


def pack_wall_s(
    runs: Sequence[RunIdentity],
    durations: Sequence[float],
    slots: int,
    after: Mapping[str, Sequence[str]],
    on_gpus: bool = True,
) -> float:
    """When the last of `runs` ends, packed in order onto `slots` (each run takes `nproc`
    of them on GPUs, one on CPU; no run starts before the one before it, nor before every
    run of the lanes its lane waits for has ended). UserError for a run wider than the slots."""
    free = [0.0] * slots  # a min-heap of the times each slot is free
    started, end_of_lane, end = 0.0, {}, 0.0
    for run, duration in zip(runs, durations, strict=True):
        need = run.nproc if on_gpus else 1
        if need > slots:
            raise UserError(f"plan: run {run.run_id} needs {run.nproc} GPUs; only {slots} given")
        taken = [heapq.heappop(free) for _ in range(need)]
        waits = [end_of_lane.get(lane, 0.0) for lane in after.get(run.lane, ())]
        started = max(started, taken[-1], *waits)
        finish = started + duration
        for _ in taken:
            heapq.heappush(free, finish)
        end_of_lane[run.lane] = max(end_of_lane.get(run.lane, 0.0), finish)
        end = max(end, finish)
    return end


# --- power ---


def history_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """The store's finished runs as `estimate_plan` reads them: `_kind`, `_preset`,
    `_budget`, `_steps`, `_wall_s` (finished_at - started_at), beside ARM_KEYS, id, seed and
    val_bpb. `runs` holds the runs columns with `params` as JSON text (read_runs with
    params=False); re-exports and runs without both times are left out."""
    done = runs[(runs["status"].astype(str) == RunStatus.DONE.value)]
    done = done[done["kind"].astype(str) != EXPORT_KIND]
    done = done[done["started_at"].notna() & done["finished_at"].notna()].copy()
    pairs = zip(done["params"], done["kind"], strict=True)
    keys = [_history_key(text, str(kind)) for text, kind in pairs]
    done["_kind"] = [key[0] for key in keys]
    done["_preset"] = [key[1] for key in keys]
    done["_budget"] = pd.Series([key[2] for key in keys], index=done.index, dtype=float)
    done["_steps"] = [key[3] for key in keys]
    wall = pd.to_datetime(done["finished_at"], utc=True) - pd.to_datetime(
        done["started_at"], utc=True
    )
    done["_wall_s"] = wall.dt.total_seconds()
    return done


def _history_key(text: Any, kind: str) -> CostKey:
    """An earlier run's cost class; one whose params no longer resolve (a preset since
    renamed) is a class of its own that no planned run shares."""
    params = json.loads(text) if isinstance(text, str) else dict(text or {})
    try:
        return cost_key(params, kind)
    except UserError:
        return (kind, f"unknown:{params.get('preset')}", None, None)


HISTORY_COLUMNS = [*ARM_KEYS, "id", "seed", "kind", "status", "val_bpb", "started_at"]


def read_history(database: Database | None) -> pd.DataFrame:
    """The store's done runs as `history_frame` (empty without a store)."""
    columns = [*HISTORY_COLUMNS, "finished_at", "params"]
    if database is None:
        return history_frame(pd.DataFrame(columns=columns))
    runs = read_runs(database, sweep=None, status="done", columns=columns, params=False)
    return history_frame(runs)


def _comparisons(
    runs: Sequence[RunIdentity],
    keys: Mapping[str, CostKey],
    history: pd.DataFrame,
    options: PlanOptions,
) -> list[Comparison]:
    groups: dict[tuple[str, str, str, str], list[RunIdentity]] = {}
    for run in runs:
        groups.setdefault((run.lane, run.match, run.arm, run.variant), []).append(run)
    arms = [key for key in groups if key[2] != CONTROL_ARM]
    per_control = Counter(key[:2] for key in arms)
    sds = {key: _seed_sd(key, history, options) for key in set(keys.values())}
    out = []
    for key in arms:
        seeds = len(groups[key])
        sd, source = sds[keys[groups[key][0].run_id]]
        out.append(_comparison(key, seeds, per_control[key[:2]], sd, source, options))
    return out


def _comparison(
    key: tuple[str, str, str, str],
    seeds: int,
    family: int,
    sd: float | None,
    source: str,
    options: PlanOptions,
) -> Comparison:
    rule, power = options.rule, options.power
    # Scale-free: the detectable difference is a multiple of the seed sd.
    in_sds = _detectable_sds(seeds, rule, family, power)
    needed = None
    if sd is not None and options.detect is not None:
        needed = _seeds_needed(options.detect, sd, rule, family, power)
    detectable = np.nan if sd is None else in_sds * sd
    return Comparison(*key, seeds, family, sd, source, in_sds, detectable, needed)


# Cached: a spec of 10,000 runs has thousands of comparisons and a handful of distinct
# (seeds, family) pairs.
@functools.cache
def _detectable_sds(seeds: int, rule: Rule, family: int, power: float) -> float:
    return detectable_difference(1.0, seeds, rule, family, power)


_seeds_needed = functools.cache(seeds_needed)


def _seed_sd(key: CostKey, history: pd.DataFrame, options: PlanOptions) -> tuple[float | None, str]:
    """The seed sd of a cost class: --seed-std when given, else pooled over the store's
    arm groups of the same kind, preset and budget (each group's sd, weighted by its
    degrees of freedom), naming the groups; None when neither exists."""
    if options.seed_std is not None:
        return options.seed_std, "--seed-std (given)"
    kind, preset, budget, steps = key
    same = history[(history["_kind"] == kind) & (history["_preset"] == preset)]
    same = same[same["_budget"].isna() if budget is None else same["_budget"] == budget]
    if budget is None:
        same = same[same["_steps"] == steps]
    same = same[same["val_bpb"].notna()]
    spread = same.groupby(ARM_KEYS, observed=True)["val_bpb"].agg(["var", "count"])
    spread = spread[spread["count"] >= 2]
    where = f"preset {preset or '(none)'}, " + (
        f"wallclock_s {budget:g}" if budget is not None else f"{steps} steps"
    )
    if spread.empty:
        return None, f"no seeds of {where} in the store; pass --seed-std"
    dof = spread["count"] - 1
    sd = float(np.sqrt((spread["var"] * dof).sum() / dof.sum()))
    names = ["/".join(str(p) for p in group if str(p)) for group in spread.index]
    shown = ", ".join(names[:3]) + (f", ... ({len(names)} groups)" if len(names) > 3 else "")
    return sd, f"pooled over {int(spread['count'].sum())} runs of {where}: {shown}"
