"""The exact command, environment and run.json of one run. Never a shell string.

The orchestrator knows the trainer only through this: its command line, its environment,
its schema (printed by `python -m jepardy.trainer.config`) and the files it writes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from jepardy.errors import UserError
from jepardy.spec.challenge_env import script_env
from jepardy.spec.identity import RunIdentity

RUN_CONFIG = "run.json"
SCRIPT = "script"  # the trainer kind of a challenge script (spec.SCRIPT)


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


def script_path(run: RunIdentity) -> Path:
    """The script of a kind "script" run (RunIdentity.script); a run without one (read back
    from the store) is a UserError."""
    script = getattr(run, "script", "")
    if not script:
        raise UserError(
            f"run {run.run_id}: a script run needs its script's path; run it from its spec "
            "with `jepardy sweep`"
        )
    return Path(script)


def script_argv(run: RunIdentity, run_dir: Path) -> list[str]:
    """torchrun over a challenge script, started inside its run directory by
    `jepardy.launch.script_entry` (so its final_model.* and logs/ stay with the run)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={run.nproc}",
        "-m",
        "jepardy.launch.script_entry",
        str(run_dir),
        str(script_path(run)),
    ]


def run_argv(run: RunIdentity, run_dir: Path) -> list[str]:
    """The argv of a run of any launchable kind; an ingested run (read from a file, never
    launched) is a UserError."""
    if run.kind == SCRIPT:
        return script_argv(run, run_dir)
    if run.kind != "jepardy":
        raise UserError(
            f"run {run.run_id}: kind {run.kind!r} was read from a file, not launched; "
            "there is nothing to run"
        )
    return torchrun_argv(run.nproc, run_dir)


def script_environment(run: RunIdentity) -> dict[str, str]:
    """A script run's params as the challenge's environment variables (one table:
    `jepardy.spec.challenge_env.PARAMS`; upper-case params pass through), and RUN_ID."""
    env = script_env(run.params, Path.cwd())
    env["RUN_ID"] = run.run_id
    return env


def file_provenance(path: Path) -> dict[str, Any]:
    """{"path", "bytes", "sha256"} of the exact file a run uses."""
    data = path.read_bytes()
    return {"path": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def run_identity(run: RunIdentity) -> dict[str, Any]:
    """The fields of run.json that say which run this is and what it was asked to do."""
    return {
        "run_id": run.run_id,
        "sweep": run.sweep,
        "lane": run.lane,
        "arm": run.arm,
        "variant": run.variant,
        "match": run.match,
        "params": run.params,
    }


def write_run_config(run: RunIdentity, run_dir: Path) -> Path:
    """Write run_dir/run.json: the run's identity and its resolved params (and for a script
    run, the script's path, size and sha256 as launched)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = run_identity(run)
    if run.kind == SCRIPT:
        doc["script"] = file_provenance(script_path(run))
    path = run_dir / RUN_CONFIG
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path
