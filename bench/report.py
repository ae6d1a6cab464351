"""Report benchmark: a store of 100,000 done runs, then a full `report --compare --curve`.

The store holds one sweep of lanes x matches x (control + a jepa_weight grid) x seeds, the
shape of the study's weight grid repeated until it reaches --runs. Timed, in one process:

- reference: `pandas.read_sql` of the whole runs table (the cheapest way to get the rows);
- `run_report(db, --compare --curve jepa_weight, --format markdown)`: load, compare table
  with its tests, curves with their verdicts, and rendering (goal < 2 s);
- the same report rendered as rich terminal tables (into a null file).

Prints each time, rows/s, and the report's time as a multiple of the reference. Phases
(load, compare, curves, render) are timed separately to show where the time goes.

    python bench/report.py [--runs 100000] [--seeds 5] [--grid 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from rich.console import Console

from jepardy.analysis.compare import compare_table
from jepardy.analysis.curves import curve_table
from jepardy.analysis.report import Report, ReportRequest, render_report, run_report
from jepardy.spec.identity import RunIdentity
from jepardy.store.frames import load_runs
from jepardy.store.models import Run
from jepardy.store.states import RunStatus
from jepardy.store.transitions import open_store

GOAL_S = 2.0
LN2 = math.log(2)


def planned_runs(total: int, seeds: int, grid: int) -> list[RunIdentity]:
    """`total` runs (rounded up to whole matches): 8 lanes, matches ema x wallclock_s,
    each match the control (jepa_weight 0) and `grid` weights 0.05, 0.10, ..., `seeds` each."""
    per_match = (grid + 1) * seeds
    matches = math.ceil(total / per_match)
    runs = []
    for m in range(matches):
        lane = f"lane{m % 8}"
        match = {"ema": bool(m // 8 % 2), "wallclock_s": float(180 + 60 * (m // 16))}
        for g in range(grid + 1):
            weight = round(0.05 * g, 2)
            arm, variant = ("control", {}) if g == 0 else ("jepa", {"jepa_weight": weight})
            for seed in range(1, seeds + 1):
                params = {**match, **variant, "seed": seed}
                run_id = f"{m:06x}{g:03x}{seed:03x}{len(runs) % 16:x}"[:16].ljust(16, "0")
                runs.append(
                    RunIdentity(
                        run_id=run_id,
                        sweep="bench",
                        lane=lane,
                        arm=arm,
                        variant=",".join(f"{k}={v}" for k, v in variant.items()),
                        match=",".join(f"{k}={v}" for k, v in match.items()),
                        seed=seed,
                        params=params,
                        nproc=1,
                        kind="jepardy",
                    )
                )
    return runs


def fill(db: Path, runs: list[RunIdentity]) -> None:
    """Register every run, then write every result in one bulk UPDATE (the orchestrator's
    record_result is one transaction per run: right for a sweep, slow for 100,000 rows)."""
    store = open_store(db)
    store.upsert_sweep("bench", "bench.toml", "[sweep]\nname = 'bench'\n")
    store.register_runs(runs, git_commit=None)
    rng = random.Random(0)
    rows = []
    for run in runs:
        weight = float(run.params.get("jepa_weight", 0.0))
        # A bumpy curve: a trend, a wiggle, seed noise of sd 0.002; one run in 500 over the cap.
        bpb = 1.25 - 0.02 * math.sqrt(weight) + 0.004 * math.sin(12 * weight)
        bpb += rng.gauss(0.0, 0.002)
        size = 15_000_000 + rng.randrange(900_000) + (1_500_000 if rng.random() < 0.002 else 0)
        rows.append(
            {
                "rid": run.run_id,
                "val_bpb": bpb,
                "val_loss": bpb * LN2,
                "artifact_bytes": size,
                "under_cap": size <= 16_000_000,
                "result": json.dumps({"status": "done", "val_bpb": bpb}),
            }
        )
    statement = (
        sa.update(Run)
        .where(Run.id == sa.bindparam("rid"))
        .values(
            status=RunStatus.DONE,
            finished_at=datetime.now(UTC),
            val_bpb=sa.bindparam("val_bpb"),
            val_loss=sa.bindparam("val_loss"),
            artifact_bytes=sa.bindparam("artifact_bytes"),
            under_cap=sa.bindparam("under_cap"),
            result=sa.bindparam("result"),
        )
    )
    with store.engine.begin() as connection:
        connection.execute(statement, rows)
    store.close()


@dataclass(frozen=True)
class Timing:
    """The fastest of several runs: wall seconds and this process's CPU seconds."""

    wall_s: float
    cpu_s: float

    def line(self, label: str, rows: int, reference: Timing | None = None) -> str:
        text = (
            f"{label:<44} wall {self.wall_s:6.3f} s  cpu {self.cpu_s:6.3f} s  "
            f"{rows / self.wall_s:>9,.0f} rows/s"
        )
        if reference is not None:
            text += f"  = {self.wall_s / reference.wall_s:.2f}x reference"
        return text


def best_of(repeat: int, work: Callable[[], object]) -> tuple[Timing, object]:
    """The fastest of `repeat` timings of `work()` (by wall time), and its last result."""
    best, out = Timing(math.inf, math.inf), None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = work()
        timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, timing, key=lambda t: t.wall_s)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--grid", type=int, default=20, help="jepa weights besides 0")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        start = time.perf_counter()
        runs = planned_runs(args.runs, args.seeds, args.grid)
        fill(db, runs)
        print(f"store: {len(runs):,} done runs written in {time.perf_counter() - start:.1f} s")
        n = len(runs)
        request = ReportRequest(curve="jepa_weight", fmt="markdown")
        engine = sa.create_engine(f"sqlite:///{db}")

        reference, _ = best_of(args.repeat, lambda: pd.read_sql("runs", engine))
        full, output = best_of(args.repeat, lambda: run_report(db, request))
        text = output.rendered  # type: ignore[attr-defined]

        load, runs_frame = best_of(
            args.repeat, lambda: load_runs(db, status=None, details=False, params=False)
        )
        compare_t, compare = best_of(args.repeat, lambda: compare_table(runs_frame))
        done = runs_frame[runs_frame["status"] == "done"].reset_index(drop=True)
        curve_t, curves = best_of(args.repeat, lambda: curve_table(done, "jepa_weight"))
        report = Report(compare, curves, None)  # type: ignore[arg-type]
        markdown_t, _ = best_of(args.repeat, lambda: render_report(report, "markdown"))

        def terminal() -> None:
            console = Console(file=io.StringIO(), width=250)
            console.print(render_report(report, "table"), soft_wrap=True)

        terminal_t, _ = best_of(1, terminal)

    print(f"rows: {n:,}; compare rows {len(compare):,}; curves {len(curves.summary):,}")  # type: ignore[arg-type]
    print(reference.line("reference: pandas.read_sql('runs', engine)", n))
    print(full.line("report --compare --curve jepa_weight (md)", n, reference))
    verdict = "met" if full.wall_s < GOAL_S else "NOT met"
    print(f"goal: < {GOAL_S:.0f} s wall: {verdict} ({full.wall_s:.3f} s; cpu {full.cpu_s:.3f} s)")
    print(
        f"phases (cpu): load_runs {load.cpu_s:.3f} s, compare_table {compare_t.cpu_s:.3f} s, "
        f"curve_table {curve_t.cpu_s:.3f} s, markdown {markdown_t.cpu_s:.3f} s "
        f"({len(text):,} chars)"
    )
    print(terminal_t.line("the same report as terminal tables (rich)", n))


if __name__ == "__main__":
    main()
