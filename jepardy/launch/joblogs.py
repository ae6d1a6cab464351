"""The logs a run's job wrote, wherever its executor put them (`jepardy logs RUN_ID`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from jepardy.launch.rundir import STDOUT_LOG
from jepardy.launch.slurm import SLURM, SUBMITIT_FOLDER


def log_files(row: pd.Series) -> list[Path]:
    """The logs a run's job wrote that exist, main first: node 0's stdout.log, the other
    nodes' stdout.node<k>.log, and for a Slurm job submitit's own .out and .err (where a job
    that failed before its torchrun started says why)."""
    if not isinstance(row["run_dir"], str):
        return []
    run_dir = Path(row["run_dir"])
    files = [run_dir / STDOUT_LOG, *sorted(run_dir.glob("stdout.node*.log"))]
    if row["executor"] == SLURM and isinstance(row["job_id"], str):
        submitit = run_dir.parent / SUBMITIT_FOLDER
        files += [submitit / f"{row['job_id']}_0_log.{ext}" for ext in ("out", "err")]
    return [path for path in files if path.exists()]
