"""Whether runs make a submission to the challenge's 10min_16mb track: trained on 8xH100
within 600 s, with the train_gpt.py that ran and each seed's log shipped beside it.

`export-submission` refuses runs that do not (a smoke test on a laptop is no record), unless
--force, and then says why in the submission itself. The cap on artifact bytes is checked
where the runs are chosen (analysis/submission.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

TRACK_WORLD_SIZE = 8
TRACK_DEVICE = "H100"
TRACK_TRAIN_S = 600.0
# A run's own log, as the challenge's records ship one per seed: the jepardy trainer's
# train.log, else the job's stdout.log (a challenge script's log; launch/rundir.py).
RUN_LOGS = ("train.log", "stdout.log")


@dataclass(frozen=True)
class TrackCheck:
    """What keeps the runs out of the track (none: they fit), and each seed's log."""

    problems: list[str]
    logs: dict[int, Path]  # seed -> the log to ship as train_seed<seed>.log


def check_track(chosen: pd.DataFrame, script: Path | None) -> TrackCheck:
    """The runs against the track's rules: their hardware (from result.json), their
    wallclock budget and measured training time, the script shipped (`--script`), and a
    log per seed."""
    problems = [*_hardware_problems(chosen), *_time_problems(chosen)]
    if script is None:
        problems.append("no train_gpt.py to ship (--script)")
    logs = {int(row.seed): log for row in chosen.itertuples() if (log := _run_log(row.run_dir))}
    if missing := sorted(int(s) for s in chosen["seed"] if int(s) not in logs):
        problems.append(f"no log for {_seeds(missing)}")
    return TrackCheck(problems, logs)


def _hardware_problems(chosen: pd.DataFrame) -> list[str]:
    found: dict[str, list[int]] = {}
    for row in chosen.itertuples():
        result = json.loads(row.result) if isinstance(row.result, str) else {}
        device, world = str(result.get("device") or ""), result.get("world_size")
        if world == TRACK_WORLD_SIZE and TRACK_DEVICE in device:
            continue
        shown = f"{world}x {device}" if device and world else "unrecorded hardware"
        found.setdefault(shown, []).append(int(row.seed))
    wanted = f"{TRACK_WORLD_SIZE}x {TRACK_DEVICE}"
    return [f"ran on {hw}, not {wanted} ({_seeds(s)})" for hw, s in found.items()]


def _time_problems(chosen: pd.DataFrame) -> list[str]:
    budgets = pd.to_numeric(chosen["wallclock_s"], errors="coerce")
    problems = []
    if no_cap := [int(s) for s, b in zip(chosen["seed"], budgets, strict=True) if not b > 0]:
        problems.append(
            f"no wallclock_s budget, the track's cap is {TRACK_TRAIN_S:.0f} s ({_seeds(no_cap)})"
        )
    if over := [int(s) for s, b in zip(chosen["seed"], budgets, strict=True) if b > TRACK_TRAIN_S]:
        problems.append(f"wallclock_s over {TRACK_TRAIN_S:.0f} s ({_seeds(over)})")
    trained = pd.to_numeric(chosen["train_time_s"], errors="coerce")
    if long := [int(s) for s, t in zip(chosen["seed"], trained, strict=True) if t > TRACK_TRAIN_S]:
        problems.append(f"trained over {TRACK_TRAIN_S:.0f} s ({_seeds(long)})")
    return problems


def _run_log(run_dir: object) -> Path | None:
    if not isinstance(run_dir, str):
        return None
    return next((p for name in RUN_LOGS if (p := Path(run_dir) / name).is_file()), None)


def _seeds(seeds: list[int]) -> str:
    """`seed 2`, `seeds 1, 2`."""
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, sorted(seeds)))
