"""What a running sweep shows, where: on a terminal the live view (cli/live.py) redrawn in
place; elsewhere (a pipe, a file, CI) one plain line per run started or finished. The same
for `jepardy status --watch`, read from the store by another process."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.live import Live

from jepardy.cli.live import event_line, header, render
from jepardy.cli.output import console
from jepardy.launch.livesweep import LiveRun, LiveSweep, SweepSnapshot, store_snapshot
from jepardy.launch.metrics_tail import MetricsTails
from jepardy.store.engine import Database

# The live view redraws this often; each redraw reads the running runs' new metric lines.
REFRESH_PER_S = 2.0


@contextmanager
def sweep_view() -> Iterator[LiveSweep]:
    """The observer to give a sweep, shown while the block runs: the live view on a
    terminal, plain event lines otherwise."""
    if not console.is_terminal:
        yield LiveSweep(notify=_print_event)
        return
    observer = LiveSweep()
    with Live(
        console=console,
        get_renderable=lambda: render(observer.snapshot(), console.width),
        refresh_per_second=REFRESH_PER_S,
    ):
        yield observer


def _print_event(run: LiveRun, runs: list[LiveRun]) -> None:
    console.print(event_line(run, runs), highlight=False, soft_wrap=True)


def print_interrupted(observer: LiveSweep) -> None:
    """After Ctrl-C: where the sweep stands, and the command that resumes it."""
    snapshot = observer.snapshot()
    console.print(header(snapshot), soft_wrap=True)
    command = shlex.join(["jepardy", *sys.argv[1:]])
    console.print(f"stopped; resume with: {command}", highlight=False, soft_wrap=True)


def watch(database: Database, sweep: str | None, interval_s: float, count: int | None) -> None:
    """`status --watch`: poll the store (and the running runs' metrics.jsonl) every
    `interval_s` until Ctrl-C or `count` polls."""
    tails = MetricsTails()
    polls = _polls(interval_s, count)
    if not console.is_terminal:
        _watch_plain(database, sweep, tails, polls)
        return
    with Live(console=console, auto_refresh=False) as live:
        for _ in polls:
            snapshot = _store_view(database, sweep, tails)
            live.update(render(snapshot, console.width), refresh=True)


def _watch_plain(
    database: Database, sweep: str | None, tails: MetricsTails, polls: Iterator[int]
) -> None:
    """One line per run that started or finished since the last poll; the first poll
    prints the header and the runs running then."""
    seen: dict[str, str] | None = None
    for _ in polls:
        snapshot = _store_view(database, sweep, tails)
        if seen is None:
            console.print(header(snapshot), soft_wrap=True)
            seen = {r.run_id: r.status for r in snapshot.runs if not r.running}
        for run in snapshot.runs:
            if seen.get(run.run_id) != run.status and (run.running or run.finished):
                _print_event(run, snapshot.runs)
            seen[run.run_id] = run.status


def _polls(interval_s: float, count: int | None) -> Iterator[int]:
    """0, 1, 2, ... one per `interval_s` (the first at once), `count` of them if given."""
    n = 0
    while count is None or n < count:
        if n:
            time.sleep(interval_s)
        yield n
        n += 1


def _store_view(database: Database, sweep: str | None, tails: MetricsTails) -> SweepSnapshot:
    """The watched sweep as the store has it: `sweep`, else the one with running runs
    (the one started last), else the one whose run started last."""
    runs = database.runs_frame(sweep)
    if sweep is None and len(runs):
        running = runs[runs["status"] == "running"]
        pool = running if len(running) else runs
        latest = pool.sort_values("started_at", na_position="first").iloc[-1]
        sweep = str(latest["sweep"])
        runs = runs[runs["sweep"] == sweep]
    return store_snapshot(runs, sweep or database.name, tails)
