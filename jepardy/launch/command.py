"""The exact command, environment and run.json of one run. Never a shell string.

The orchestrator knows the trainer only through this: its command line, its environment,
its schema (printed by `python -m jepardy.trainer.config`) and the files it writes.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

from jepardy.errors import UserError

RUN_CONFIG = "run.json"


class RunLike(Protocol):
    run_id: str
    sweep: str
    lane: str
    arm: str
    variant: str
    match: str
    seed: int
    params: dict[str, Any]
    nproc: int
    kind: str


@functools.cache
def trainer_schema() -> dict[str, dict[str, Any]]:
    """The jepardy trainer's params: name -> {"type", "default"}, asked of the trainer itself."""
    proc = subprocess.run(
        [sys.executable, "-m", "jepardy.trainer.config"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise UserError(
            f"trainer schema: `python -m jepardy.trainer.config` failed: "
            f"{proc.stderr.strip().splitlines()[-1:]}"
        )
    return json.loads(proc.stdout)


def torchrun_argv(nproc: int, run_dir: Path) -> list[str]:
    """`torchrun --standalone` through the current interpreter, so the venv's torch is used.

    --standalone rendezvouses on a free localhost port, so jobs on one host never clash.
    """
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "jepardy.trainer",
        "--config",
        str(run_dir / RUN_CONFIG),
        "--out",
        str(run_dir),
    ]


def write_run_config(run: RunLike, run_dir: Path) -> Path:
    """Write run_dir/run.json: the run's identity and its resolved params."""
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "run_id": run.run_id,
        "sweep": run.sweep,
        "lane": run.lane,
        "arm": run.arm,
        "variant": run.variant,
        "match": run.match,
        "params": run.params,
    }
    path = run_dir / RUN_CONFIG
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path
