"""Progress shown while a sweep runs: a bar with counts and ETA, a line per finished run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jepardy.cli.output import console, tagged

if TYPE_CHECKING:
    from rich.progress import Progress

    from jepardy.spec.identity import RunIdentity
    from jepardy.store.models import RunOutcome


def sweep_progress() -> Progress:
    # rich.progress is imported here, not with the CLI: every command would pay for it.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        # The description names a run by its labels (user text): no markup.
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


class RichSweepObserver:
    """A progress bar with counts and ETA, and one line per finished run."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("sweep", total=None)

    def planned(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def skipped(self, run: RunIdentity) -> None:
        self.progress.update(self.task, advance=1)

    def started(self, run: RunIdentity) -> None:
        self.progress.update(self.task, description=f"{run.run_id} {_label(run)}")

    def finished(self, run: RunIdentity, outcome: RunOutcome) -> None:
        self.progress.update(self.task, advance=1)
        if outcome.status == "done" and outcome.result:
            r = outcome.result
            figures = [
                ("val_bpb", "{:.4f}"),
                ("artifact_bytes", "{:,}"),
                ("train_time_s", "{:.1f}s"),
            ]
            shown = "  ".join(
                f"{name} " + (fmt.format(r[name]) if r.get(name) is not None else "?")
                for name, fmt in figures
            )
            line = tagged("done", "green", f"{run.run_id} {_label(run)}  {shown}")
        else:
            line = tagged(outcome.status, "red", f"{run.run_id} {_label(run)}: {outcome.reason}")
        self.progress.console.print(line)


def _label(run: RunIdentity) -> str:
    parts = [f"{run.lane}/{run.arm}", run.variant, run.match, f"seed={run.seed}"]
    return " ".join(p for p in parts if p)
