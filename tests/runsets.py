"""Result sets with known answers, written as real runs into a real SQLite store.

Shared by the report tests (compare, curves, horizons, plots, results): each run is a
`jepardy.spec.identity.RunIdentity` registered with `Store.register_runs` and finished with
`Store.record_result`, exactly as a sweep records it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import Store

SWEEP = "study"
# Byte-level data: val_bpb = val_loss / ln 2, so val_loss = val_bpb * ln 2.
LN2 = math.log(2)


@dataclass(frozen=True)
class R:
    """One run to write. `variant` and `match` are the arm- and match-axis values."""

    lane: str
    arm: str
    seed: int
    val_bpb: float | None
    variant: Mapping[str, Any] = field(default_factory=dict)
    match: Mapping[str, Any] = field(default_factory=dict)
    artifact_bytes: int | None = 15_000_000
    status: str = "done"
    val_loss: float | None = None  # default: val_bpb * ln 2
    extra: Mapping[str, Any] = field(default_factory=dict)  # more params, not axes


def pairs(values: Mapping[str, Any]) -> str:
    """`k=v` joined by ",", as RunIdentity writes variant and match."""
    return ",".join(f"{key}={value}" for key, value in values.items())


def planned(run: R, sweep: str = SWEEP) -> RunIdentity:
    params = {**run.extra, **run.match, **run.variant, "seed": run.seed}
    identity = repr((sweep, run.lane, run.arm, sorted(params.items())))
    run_id = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return RunIdentity(
        run_id=run_id,
        sweep=sweep,
        lane=run.lane,
        arm=run.arm,
        variant=pairs(run.variant),
        match=pairs(run.match),
        seed=run.seed,
        params=params,
        nproc=1,
        kind="jepardy",
    )


def result(run: R) -> dict[str, Any] | None:
    if run.val_bpb is None:
        return None
    loss = run.val_bpb * LN2 if run.val_loss is None else run.val_loss
    out: dict[str, Any] = {"status": run.status, "val_bpb": run.val_bpb, "val_loss": loss}
    if run.artifact_bytes is not None:
        out["artifact_bytes"] = run.artifact_bytes
        out["under_cap"] = run.artifact_bytes <= 16_000_000
    return out


def write(store: Store, runs: Iterable[R], sweep: str = SWEEP) -> list[str]:
    """Register and record `runs` (status "pending" runs are only registered); their ids."""
    runs = list(runs)
    if sweep not in store.sweep_names():
        store.upsert_sweep(sweep, f"{sweep}.toml", f"[sweep]\nname = '{sweep}'\n")
    plans = [planned(run, sweep) for run in runs]
    store.register_runs(plans, git_commit="abc123")
    for run, plan in zip(runs, plans, strict=True):
        if run.status != "pending":
            store.record_result(
                plan.run_id, RunOutcome(status=run.status, result=result(run), metrics=[])
            )
    return [plan.run_id for plan in plans]


def seeds_around(mean: float, sd: float, seeds: Sequence[int] = (1, 2, 3)) -> list[float]:
    """Values with exactly this mean and sample sd (ddof=1): mean - sd, mean, mean + sd for
    three seeds; mean -+ sd / sqrt(2) for two; just the mean for one."""
    if len(seeds) == 1:
        return [mean]
    if len(seeds) == 2:
        return [mean - sd / math.sqrt(2), mean + sd / math.sqrt(2)]
    if len(seeds) == 3:
        return [mean - sd, mean, mean + sd]
    raise ValueError("seeds_around supports 1 to 3 seeds")


def curve(
    lane: str,
    xs: Sequence[float],
    means: Sequence[float],
    sd: float,
    seeds: Sequence[int] = (1, 2, 3),
    axis: str = "jepa_weight",
    match: Mapping[str, Any] | None = None,
) -> list[R]:
    """An arm "jepa" with one variant per x (x = 0 is the control arm), seeds around means."""
    runs = []
    for x, mean in zip(xs, means, strict=True):
        arm, variant = ("control", {}) if x == 0 else ("jepa", {axis: x})
        for seed, value in zip(seeds, seeds_around(mean, sd, seeds), strict=True):
            runs.append(R(lane, arm, seed, value, variant, dict(match or {})))
    return runs


# Horizons. Leader lane (study.md, method 2): weight 0.15 wins the 180 s screen and is 3rd
# of 4 at 600 s. Screen lane: two arms one thousandth apart, swapping places inside the noise.
HORIZON_SD = 0.002
LEADER = {
    180.0: {0.0: 1.30, 0.05: 1.29, 0.10: 1.28, 0.15: 1.25},
    600.0: {0.0: 1.20, 0.05: 1.19, 0.10: 1.18, 0.15: 1.195},
}
SCREEN = {180.0: {0.0: 1.300, 0.10: 1.299}, 600.0: {0.0: 1.200, 0.10: 1.201}}


def horizon_runs(
    lane: str, table: Mapping[float, Mapping[float, float]], seeds: Sequence[int] = (1, 2, 3)
) -> list[R]:
    """Runs of `table` (budget -> jepa_weight -> mean; weight 0 is the control), with
    wallclock_s in the match, seeds around each mean with sd HORIZON_SD."""
    runs = []
    for budget, arms in table.items():
        for weight, mean in arms.items():
            arm, variant = ("control", {}) if weight == 0 else ("jepa", {"jepa_weight": weight})
            values = seeds_around(mean, HORIZON_SD, seeds)
            for seed, value in zip(seeds, values, strict=True):
                runs.append(R(lane, arm, seed, value, variant, {"wallclock_s": budget}))
    return runs
