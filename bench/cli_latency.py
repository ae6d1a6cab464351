"""CLI latency benchmark: `jepardy status`, `runs` and `report` on a store like the demo's.

The store is built in a temporary directory without training: experiments/smoke.toml
expanded as `jepardy sweep` would (8 runs), each registered and recorded done with a
result.json and metrics like the trainer's. Each command runs as a fresh process (what a
user waits for: interpreter start, imports, the database, printing), `--repeat` times, beside
the floor of any typer + rich command line, a bare `python -c "import typer, rich"`.

Prints min and median wall time per command, the median as a multiple of the floor's, and
whether each command meets its goal (status and runs < 0.6 s, report < 1.2 s; issue 17);
beside it the median CPU time (user + system) of the process, which on a machine shared with
other work says more than its wall time.

    python bench/cli_latency.py [--repeat 7] [--db PATH]  # --db: time an existing store
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jepardy.launch.command import trainer_schema
from jepardy.spec.expand import expand_runs
from jepardy.spec.parse import load_spec
from jepardy.store.states import RunOutcome, RunStatus
from jepardy.store.transitions import open_store

SPEC = Path(__file__).resolve().parent.parent / "experiments" / "smoke.toml"
GOALS_S = {"status": 0.6, "runs": 0.6, "report": 1.2}
FLOOR = [sys.executable, "-c", "import typer, rich"]


def build_store(db: Path) -> int:
    """The demo's store, without training: smoke.toml's runs, all done. Returns the run count."""
    spec = load_spec(SPEC, trainer_schema())
    runs = expand_runs(spec)
    store = open_store(db)
    store.upsert_sweep(spec.name, str(SPEC), SPEC.read_text())
    store.register_runs(runs, git_commit="0" * 40)
    rng = random.Random(0)
    for run in runs:
        bpb = 3.2 - 0.02 * float(run.params.get("jepa_weight", 0.0)) + rng.gauss(0.0, 0.01)
        result = {
            "status": "done",
            "val_bpb": bpb,
            "val_loss": bpb * math.log(2),
            "prequant_val_bpb": bpb - 0.001,
            "prequant_val_loss": (bpb - 0.001) * math.log(2),
            "artifact_bytes": 180_000 + rng.randrange(1000),
            "model_bytes": 120_000,
            "code_bytes": 60_000,
            "under_cap": True,
            "steps": 150,
            "train_time_s": 40.0 + rng.random(),
            "tokens_per_s": 15_000.0,
            "code_sha256": "c0de" * 16,
        }
        metrics = [
            {"step": step, "name": name, "value": value}
            for step in range(0, 151, 25)
            for name, value in (("train_loss", 6.0 - step / 50), ("val_bpb", bpb + 1 / (1 + step)))
        ]
        outcome = RunOutcome(status=RunStatus.DONE, result=result, metrics=metrics)
        store.record_result(run.run_id, outcome)
    store.close()
    return len(runs)


def timed_runs(argv: list[str], repeat: int, env: dict[str, str]) -> list[tuple[float, float]]:
    """(wall, cpu) seconds of `repeat` runs of `argv`, each to completion (exit status 0
    required); cpu is the child's user + system time."""
    times = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        times.append((wall, cpu))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--db", type=Path, help="an existing store to time instead")
    args = parser.parse_args()
    # The commands import this tree's jepardy, whatever the venv's editable install says.
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "120"}
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db
        if db is None:
            db = Path(tmp) / "results.db"
            print(f"store: {build_store(db)} done runs of {SPEC.name} in {db}")
        jepardy = [sys.executable, "-m", "jepardy.cli.app"]
        commands = {
            "floor": FLOOR,
            "status": [*jepardy, "status", "--db", str(db)],
            "runs": [*jepardy, "runs", "--db", str(db)],
            "report": [*jepardy, "report", "--db", str(db)],
        }
        timed_runs(FLOOR, 1, env)  # warm the file cache
        timings = {name: timed_runs(argv, args.repeat, env) for name, argv in commands.items()}
    floor = statistics.median(wall for wall, _ in timings["floor"])
    print(f"{os.cpu_count()} cores; {args.repeat} runs each; seconds")
    for name, times in timings.items():
        walls = [wall for wall, _ in times]
        median = statistics.median(walls)
        cpu = statistics.median(cpu for _, cpu in times)
        line = (
            f"{name:<7} wall min {min(walls):6.3f}  median {median:6.3f}  "
            f"= {median / floor:5.2f}x floor  (cpu median {cpu:6.3f})"
        )
        if name in GOALS_S:
            verdict = "met" if median < GOALS_S[name] else "NOT met"
            line += f"  goal < {GOALS_S[name]} s: {verdict}"
        print(line)


if __name__ == "__main__":
    main()
