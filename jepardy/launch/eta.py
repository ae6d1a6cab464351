"""How long a sweep has left: each run's expected duration from its budget and from the runs
of the same budget seen so far, laid onto the sweep's slots in order.

A run's expected duration is, best first: the mean wall time of the done runs with its
budget (step cap and wallclock budget), which includes start-up, evaluation and export; the
projection of the running ones with its budget (elapsed / fraction done); its wallclock
budget alone. A running run has left the larger of (expected - elapsed) and its own
projection. Pending runs start in order on the slot that frees first (the tracker's order;
lanes that wait for others are not modelled). None when some run's duration is unknown.
"""

from __future__ import annotations

import heapq
import statistics

from jepardy.launch.livesweep import LiveRun, SweepSnapshot
from jepardy.store.states import RunStatus

# A projection from a run's first steps is mostly its start-up: not used below this fraction.
MIN_FRACTION = 0.05


def eta_s(snapshot: SweepSnapshot) -> float | None:
    """Seconds until the last run of the snapshot ends; 0 when none is left."""
    now = snapshot.now_s
    running = [r for r in snapshot.runs if r.running]
    pending = [r for r in snapshot.runs if r.status == RunStatus.PENDING.value]
    if not running and not pending:
        return 0.0
    durations = _durations_by_budget(snapshot.runs, now)
    left = []
    for run in running:
        expected = durations.get(_budget(run), run.wallclock_s)
        elapsed = now - run.started_s if run.started_s is not None else 0.0
        own = _projected_s(run, elapsed)
        if expected is None and own is None:
            return None
        left.append(max((expected or 0.0) - elapsed, (own or 0.0) - elapsed, 0.0))
    slots = snapshot.slots or len(running) + len(pending)
    free_at = sorted(left) + [0.0] * max(0, slots - len(left))
    heapq.heapify(free_at)
    end = max(left, default=0.0)
    for run in pending:
        expected = durations.get(_budget(run), run.wallclock_s)
        if expected is None:
            return None
        finish = heapq.heappop(free_at) + expected
        heapq.heappush(free_at, finish)
        end = max(end, finish)
    return end


def _budget(run: LiveRun) -> tuple[int | None, float | None]:
    return run.iterations, run.wallclock_s


def _durations_by_budget(runs: list[LiveRun], now: float) -> dict[tuple, float]:
    """Expected seconds per budget: done runs' mean wall time, else running ones' mean
    projection."""
    done: dict[tuple, list[float]] = {}
    projected: dict[tuple, list[float]] = {}
    for run in runs:
        if run.started_s is None:
            continue
        if run.status == RunStatus.DONE.value and run.ended_s is not None:
            done.setdefault(_budget(run), []).append(run.ended_s - run.started_s)
        elif run.running and (own := _projected_s(run, now - run.started_s)) is not None:
            projected.setdefault(_budget(run), []).append(own)
    return {k: statistics.fmean(v) for k, v in (projected | done).items()}


def _projected_s(run: LiveRun, elapsed_s: float) -> float | None:
    """The run's whole duration at its pace so far: elapsed over the larger of its share of
    steps and of its wallclock budget; None before MIN_FRACTION of either."""
    fractions = []
    if run.step is not None and run.iterations:
        fractions.append(run.step / run.iterations)
    if run.wallclock_s:
        fractions.append(elapsed_s / run.wallclock_s)
    fraction = min(1.0, max(fractions, default=0.0))
    return elapsed_s / fraction if fraction >= MIN_FRACTION else None
