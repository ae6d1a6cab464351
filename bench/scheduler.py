"""Local packing benchmark: the tracker over the local executor, 64 sleep jobs of known length
on 8 fake GPU slots.

Prints the sweep's wall time over the ideal packing time (goal <= 1.05), the orchestrator's
overhead per job, and the same figures for a reference measured in the same run: a bare
thread pool of 8 launching the same jobs with subprocess.run and no store.

    python bench/scheduler.py [--jobs 64] [--slots 8] [--sleep-s 2.0]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from jobs import FakeRun, SleepLauncher, register

from jepardy.launch.local_executor import LocalExecutor
from jepardy.launch.slots import DevicePool
from jepardy.launch.tracker import JobTracker
from jepardy.store.transitions import open_store


def jepardy_wall_s(root: Path, runs: list[FakeRun], slots: int) -> float:
    store = open_store(root / "results.db")
    register(store, runs)
    tracker = JobTracker(
        store=store,
        executor=LocalExecutor(DevicePool([str(i) for i in range(slots)], 0), SleepLauncher()),
        launcher=SleepLauncher(),
        runs_root=root / "runs",
    )
    start = time.perf_counter()
    tracker.run(runs)
    wall = time.perf_counter() - start
    assert all(o.status == "done" for o in tracker.outcomes.values()), "a bench job failed"
    return wall


def bare_pool_wall_s(root: Path, runs: list[FakeRun], slots: int) -> float:
    launcher = SleepLauncher()

    def one(run: FakeRun) -> None:
        run_dir = root / "bare" / run.run_id
        launcher.prepare(run, run_dir)
        subprocess.run(launcher.argv(run, run_dir), check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(slots) as pool:
        list(pool.map(one, runs))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--sleep-s", type=float, default=2.0)
    args = parser.parse_args()
    runs = [
        FakeRun(f"job{i:03d}", sweep="fake", params={"sleep_s": args.sleep_s})
        for i in range(args.jobs)
    ]
    ideal_s = math.ceil(args.jobs / args.slots) * args.sleep_s
    with tempfile.TemporaryDirectory() as tmp:
        ours = jepardy_wall_s(Path(tmp), runs, args.slots)
        bare = bare_pool_wall_s(Path(tmp), runs, args.slots)
    waves = math.ceil(args.jobs / args.slots)
    print(f"{args.jobs} jobs x {args.sleep_s:.1f}s on {args.slots} slots; ideal {ideal_s:.2f}s")
    for name, wall in (("jepardy local executor", ours), ("reference: bare thread pool", bare)):
        print(
            f"{name:28s} wall {wall:7.2f}s  wall/ideal {wall / ideal_s:.3f}  "
            f"overhead per job {(wall - ideal_s) / waves * 1000:6.1f} ms"
        )
    print(f"jepardy / reference wall ratio: {ours / bare:.3f}  (goal: wall/ideal <= 1.05)")


if __name__ == "__main__":
    main()
