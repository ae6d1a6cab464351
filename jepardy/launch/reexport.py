"""Re-export a finished run with other quantization / compression settings, as a new run.

The study's storage-only pass: the weights stay, only the artifact changes. The trainer's
`python -m jepardy.trainer.export_run` does the work from the run's final.pt; this module
gives it a run row of its own, linked to its source:

- same sweep, lane, arm, match and seed as the source, so reports pair it with the same
  control; variant `export=int<bits>+zstd<level>` (after the source's own variant, if any:
  a `key=value` label like an arm's axes, so tables show it as a column `export`);
- params = the source's params with `quant_bits` and `zstd_level` set to the export's;
- kind "export", `parent_run` = the source's id; its id hashes all of that with the trainer
  code digest, so asking for the same export twice finds the first one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jepardy.errors import UserError
from jepardy.launch.command import run_identity
from jepardy.launch.rundir import STDOUT_LOG, collect
from jepardy.launch.slots import detect_gpus
from jepardy.launch.sweep import git_commit
from jepardy.spec.identity import RunIdentity, trainer_code_digest
from jepardy.spec.identity import run_id as make_run_id
from jepardy.store.states import RunOutcome, RunStatus
from jepardy.store.transitions import Store
from jepardy.trainer.rules import BOUNDS, CHOICES

KIND = "export"
EXPORT_AXIS = "export"  # the variant key of a re-export's settings: export=int8+zstd19
CHECKPOINT_FILE = "final.pt"  # the trainer's checkpoint.CHECKPOINT_FILE (a file contract)


@dataclass(frozen=True)
class ExportOutcome:
    run: RunIdentity
    run_dir: Path
    status: RunStatus  # done or failed
    reason: str
    result: dict[str, Any] | None
    existed: bool = False  # an earlier identical export was done: returned as it is


def export_variant(
    source_variant: str, quant_bits: int, zstd_level: int, target_bytes: int = 0
) -> str:
    label = f"{EXPORT_AXIS}=int{quant_bits}+zstd{zstd_level}"
    label += f"+target{target_bytes}" if target_bytes else ""
    return f"{source_variant},{label}" if source_variant else label


def plan_export(
    store: Store, source_id: str, quant_bits: int, zstd_level: int, target_bytes: int = 0
) -> RunIdentity:
    """The export run of `source_id` with these settings; UserError unless the source is a
    done run of the jepardy trainer."""
    source = store.stored_run(source_id)
    if source.kind != "jepardy":
        raise UserError(
            f"run {source_id}: kind {source.kind!r}; only runs of the jepardy trainer keep "
            "their final weights"
        )
    params = {**source.params, "quant_bits": quant_bits, "zstd_level": zstd_level}
    if target_bytes:  # else the trainer's default budget: the cap minus the code bytes
        params["export_target_bytes"] = target_bytes
    variant = export_variant(source.variant, quant_bits, zstd_level, target_bytes)
    identity = {**params, "parent_run": source_id}
    new_id = make_run_id(
        sweep=source.sweep,
        lane=source.lane,
        arm=source.arm,
        params=identity,
        kind=KIND,
        code=trainer_code_digest(),
    )
    return replace(
        source,
        run_id=new_id,
        variant=variant,
        params=params,
        nproc=1,
        kind=KIND,
        parent_run=source_id,
    )


def source_run_dir(store: Store, source_id: str) -> Path:
    """The source's run directory, which must hold its final.pt."""
    frame = store.runs_frame(store.stored_run(source_id).sweep)
    row = frame[frame["id"] == source_id].iloc[0]
    if row["status"] != RunStatus.DONE:
        raise UserError(f"run {source_id}: status {row['status']}; only a done run re-exports")
    if not row["run_dir"]:
        raise UserError(f"run {source_id}: no run directory recorded")
    run_dir = Path(row["run_dir"])
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise UserError(
            f"run {source_id}: {run_dir / CHECKPOINT_FILE} not found; it finished before "
            "the trainer kept final weights: rerun it first"
        )
    return run_dir


def export_argv(source_dir: Path, out_dir: Path, run: RunIdentity, device: str | None) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "jepardy.trainer.export_run",
        "--run-dir",
        str(source_dir),
        "--out",
        str(out_dir),
        "--quant-bits",
        str(run.params["quant_bits"]),
        "--zstd-level",
        str(run.params["zstd_level"]),
        "--run-id",
        run.run_id,
    ]
    if run.params.get("export_target_bytes"):
        argv += ["--target-bytes", str(run.params["export_target_bytes"])]
    return argv + (["--device", device] if device else [])


def reexport(
    store: Store,
    source_id: str,
    quant_bits: int,
    zstd_level: int,
    runs_root: Path = Path("runs"),
    device: str | None = None,
    timeout_s: float | None = None,
    target_bytes: int = 0,
) -> ExportOutcome:
    """Re-export run `source_id`, recording the new run row; an identical export already
    done is returned as it is (`existed`)."""
    check_settings(quant_bits, zstd_level, target_bytes, device)
    source_dir = source_run_dir(store, source_id)
    run = plan_export(store, source_id, quant_bits, zstd_level, target_bytes)
    out_dir = runs_root / run.sweep / run.run_id
    if store.statuses([run.run_id]).get(run.run_id) == RunStatus.DONE:
        result = collect(out_dir, None).result
        return ExportOutcome(run, out_dir, RunStatus.DONE, "", result, existed=True)
    check_device(device or str(run.params.get("device", "auto")), given=device is not None)
    store.register_runs([run], git_commit())
    argv = export_argv(source_dir, out_dir, run, device)
    _write_run_config(run, out_dir, argv)
    store.mark_running(run.run_id, socket.gethostname(), os.getpid(), str(out_dir), argv)
    outcome = _run(argv, out_dir, timeout_s)
    store.record_result(run.run_id, replace(outcome, metrics=[]))
    return ExportOutcome(run, out_dir, outcome.status, outcome.reason, outcome.result)


def check_settings(quant_bits: int, zstd_level: int, target_bytes: int, device: str | None) -> None:
    """The trainer's own ranges and choices (trainer/rules.py), before anything is looked up
    or recorded: a mistake is a UserError, never a failed run."""
    for flag, name, value in (
        ("--quant-bits", "quant_bits", quant_bits),
        ("--zstd-level", "zstd_level", zstd_level),
        ("--target-bytes", "export_target_bytes", target_bytes),
    ):
        if not BOUNDS[name].holds(value):
            raise UserError(f"export: {flag} {value}: must be {BOUNDS[name]}")
    if device is not None and device not in CHOICES["device"]:
        allowed = ", ".join(CHOICES["device"])
        raise UserError(f"export: --device {device}: unknown device; allowed: {allowed}")


def check_device(device: str, given: bool) -> None:
    """`cuda` needs a GPU here (CUDA_VISIBLE_DEVICES, else nvidia-smi: the orchestrator's own
    detection; it never initialises CUDA itself). Refused before the run is recorded."""
    if device != "cuda" or detect_gpus():
        return
    where = "--device cuda" if given else "the run's device 'cuda'"
    raise UserError(f"export: {where}: no GPU on this machine; --device cpu exports on the CPU")


def _write_run_config(run: RunIdentity, out_dir: Path, argv: list[str]) -> None:
    """out_dir/run.json: what was asked (identity, params, parent, the exact argv)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {**run_identity(run), "kind": run.kind, "parent_run": run.parent_run, "argv": argv}
    (out_dir / "run.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _run(argv: list[str], out_dir: Path, timeout_s: float | None) -> RunOutcome:
    """Run the export as a child process, its output in out_dir/stdout.log."""
    (out_dir / "result.json").unlink(missing_ok=True)
    with (out_dir / STDOUT_LOG).open("w") as log:
        try:
            proc = subprocess.run(
                argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return collect(out_dir, None).with_status(
                RunStatus.FAILED, f"timeout after {timeout_s} s"
            )
    return collect(out_dir, proc.returncode)
