"""`jepardy plan` answers cost and power: GPU-hours (CPU-hours where the sweep would run on
CPU) and wall time on the slots the sweep would use, from the budget plus the overhead
earlier runs of the same preset measured (or a stated default), and per comparison
the smallest difference its seeds detect, from the seed sd of earlier runs of the same
preset and budget (or --seed-std), and with --detect the seeds each arm needs."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import runsets
import sqlalchemy as sa
from runsets import R
from typer.testing import CliRunner

from jepardy.analysis.planning import pack_wall_s
from jepardy.analysis.power import detectable_difference, seeds_needed
from jepardy.analysis.rules import make_rule
from jepardy.cli.app import app
from jepardy.cli.plan_view import duration
from jepardy.launch.command import trainer_schema
from jepardy.spec.expand import expand_runs
from jepardy.spec.identity import RunIdentity
from jepardy.spec.parse import load_spec
from jepardy.store.models import Run
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import open_store

PRESET = {"preset": "isolation_byte"}  # a 180 s budget
SPEC = """\
[sweep]
name = "planned"
seeds = [1, 2, 3]

[trainer]
nproc = 1

[params]
preset = "isolation_byte"

[lanes.main]
control = { jepa_weight = 0.0 }

[lanes.main.arms.jepa]
jepa_weight = [0.05, 0.1]
"""
# Earlier runs of the same preset and budget: walls of 180 s + these overheads.
HISTORY = {
    "control": ((1.300, 1.302, 1.3015), (61.0, 75.0, 80.0)),
    "jepa": ((1.297, 1.2995, 1.296), (70.0, 90.0, 72.0)),
}


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store holding the sweep "past": 6 done runs of isolation_byte at 180 s, their
    start and end times set to walls of 180 s plus HISTORY's overheads."""
    store = open_store(tmp_path / "results.db")
    runs = [
        R("main", arm, seed, value, {"jepa_weight": 0.1} if arm == "jepa" else {}, extra=PRESET)
        for arm, (values, _) in HISTORY.items()
        for seed, value in enumerate(values, start=1)
    ]
    ids = runsets.write(store, runs, sweep="past")
    overheads = [o for _, (_, over) in HISTORY.items() for o in over]
    start = datetime(2026, 4, 1, tzinfo=UTC)
    with store.engine.begin() as connection:
        for run_id, overhead in zip(ids, overheads, strict=True):
            finished = start + timedelta(seconds=180.0 + overhead)
            update = sa.update(Run).where(Run.id == run_id)
            connection.execute(update.values(started_at=start, finished_at=finished))
    return tmp_path / "results.db"


def _plan(spec: Path, db: Path, *args: str, visible_gpus: str = "") -> str:
    """`plan`'s output on a machine whose GPUs are `visible_gpus` (CUDA_VISIBLE_DEVICES;
    "": none, the sweep would run on CPU)."""
    env = {"COLUMNS": "300", "CUDA_VISIBLE_DEVICES": visible_gpus}
    out = CliRunner().invoke(app, ["plan", str(spec), "--db", str(db), *args], env=env)
    assert out.exit_code == 0, out.output
    return out.output


def _pooled_sd() -> float:
    variances = [np.var(values, ddof=1) for values, _ in HISTORY.values()]
    return float(np.sqrt(np.mean(variances)))  # equal n: the mean of the variances


def test_cost_from_measured_overhead(spec: Path, db: Path) -> None:
    text = _plan(spec, db, "--gpus", "0,1")
    overhead = float(np.median([o for _, over in HISTORY.values() for o in over]))
    wall_s = 180.0 + overhead
    # 9 runs, one slot each, two at a time: 5 rounds.
    gpu_hours = 9 * wall_s / 3600
    assert f"cost: 9 of 9 runs still to run: {gpu_hours:.2f} GPU-hours" in text
    minutes, seconds = divmod(round(5 * wall_s), 60)
    assert f"{minutes} min {seconds:02d} s wall on 2 GPUs (--gpus)" in text
    assert (
        "9 runs x 1 GPU, preset isolation_byte, budget wallclock_s = 180 s: "
        f"4 min {round(wall_s) - 240:02d} s "
        f"each; overhead {overhead:.0f} s measured: median of 6 earlier runs of preset "
        "isolation_byte (wall minus budget; runs "
    ) in text


def test_power_from_the_seed_sd_of_earlier_runs(spec: Path, db: Path) -> None:
    text = _plan(spec, db, "--detect", "0.002")
    sd = _pooled_sd()
    rule = make_rule(alpha=0.01, margin_nats=0.0)
    detectable = detectable_difference(sd, 3, rule, family=2)
    needed = seeds_needed(0.002, sd, rule, family=2)
    cells = [f"{sd:.5f}", f"{detectable:.5f} ({detectable / sd:.2f} sd)", str(needed)]
    for weight in ("0.05", "0.1"):  # 3 seeds each, 2 arms on one control
        rows = [line for line in text.splitlines() if f"jepa_weight={weight} " in line]
        [line] = [row for row in rows if " sd)" in row]
        assert all(f" {cell} " in f"{line} " for cell in cells), line
    notes = " ".join(text.split())  # notes wrap at the table's width
    assert "seed sd: pooled over 6 runs of preset isolation_byte, wallclock_s 180: " in notes
    assert "past/main/control, past/main/jepa/jepa_weight=0.1" in notes
    assert "one-sided Welch, p < 0.01 divided over the arms sharing a control" in notes


def test_given_seed_std_and_stated_overhead(spec: Path, tmp_path: Path) -> None:
    text = _plan(
        spec, tmp_path / "none.db", "--seed-std", "0.001", "--overhead-s", "120", "--slots", "1"
    )
    assert "overhead 120 s stated (--overhead-s; no earlier run of preset isolation_byte)" in text
    assert "seed sd: --seed-std (given)" in text
    detectable = detectable_difference(0.001, 3, make_rule(margin_nats=0.0), family=2)
    assert " 0.00100 " in text and f" {detectable:.5f} " in text
    # 9 runs of 300 s on the one slot asked for, on CPU (no GPU here).
    assert "9 of 9 runs still to run: 0.75 GPU-hours" not in text
    assert (
        "9 of 9 runs still to run: 0.75 CPU-hours, 45 min 00 s wall on 1 CPU slot (--slots)" in text
    )


def test_without_any_sd_the_difference_is_in_seed_sds(spec: Path, tmp_path: Path) -> None:
    text = _plan(spec, tmp_path / "none.db")
    notes = " ".join(text.split())  # notes wrap at the table's width
    assert (
        "no seeds of preset isolation_byte, wallclock_s 180 in the store; pass --seed-std" in notes
    )
    in_sds = detectable_difference(1.0, 3, make_rule(margin_nats=0.0), family=2)
    assert f"{in_sds:.2f} sd" in text


def test_packing_follows_spec_order_and_after_lanes() -> None:
    def run(lane: str, nproc: int, i: int) -> RunIdentity:
        return RunIdentity(f"{lane}{i}", "s", lane, "control", "", "", i, {}, nproc, "jepardy")

    screen = [run("screen", 1, i) for i in range(4)]
    final = [run("final", 2, i) for i in range(2)]
    # 4 one-GPU screens of 100 s on 2 GPUs end at 200 s; the final lane waits for them.
    assert pack_wall_s([*screen, *final], [100.0] * 4 + [50.0] * 2, 2, {}) == 300.0
    # On 4 GPUs one screen takes 100 s, three take 10 s: without `after` the finals start
    # as GPUs free up (at 10 s, then at 60 s, each on two free GPUs); with it, at 100 s.
    walls = [100.0, 10.0, 10.0, 10.0, 50.0, 50.0]
    assert pack_wall_s([*screen, *final], walls, 4, {}) == 110.0
    assert pack_wall_s([*screen, *final], walls, 4, {"final": ["screen"]}) == 150.0
    assert math.isclose(pack_wall_s([], [], 4, {}), 0.0)


def test_done_runs_cost_nothing_and_measure_the_rest(spec: Path, tmp_path: Path) -> None:
    """After the control's three runs: six still to run, at the overhead they measured."""
    store = open_store(tmp_path / "after.db")
    done = [run for run in expand_runs(load_spec(spec, trainer_schema())) if run.arm == "control"]
    store.upsert_sweep("planned", str(spec), SPEC)
    store.register_runs(done, git_commit=None)
    start = datetime(2026, 4, 2, tzinfo=UTC)
    for run, overhead in zip(done, (40.0, 50.0, 90.0), strict=True):
        result = {"status": "done", "val_bpb": 1.3 + run.seed / 1000, "val_loss": 0.9}
        store.record_result(run.run_id, RunOutcome(status="done", result=result, metrics=[]))
        with store.engine.begin() as connection:
            ended = start + timedelta(seconds=180.0 + overhead)
            update = sa.update(Run).where(Run.id == run.run_id)
            connection.execute(update.values(started_at=start, finished_at=ended))
    text = _plan(spec, tmp_path / "after.db", visible_gpus="0")
    assert "cost: 6 of 9 runs still to run: 0.38 GPU-hours" in text  # 6 x 230 s
    assert "on 1 GPU (detected; --gpus to choose)" in text
    assert "6 runs x 1 GPU, preset isolation_byte, budget wallclock_s = 180 s: 3 min 50 s" in text
    assert "overhead 50 s measured: median of 3 earlier runs of preset isolation_byte" in text
    assert "seed sd: pooled over 3 runs of preset isolation_byte, wallclock_s 180: " in text


def test_without_gpus_plan_costs_cpu_hours_on_the_sweeps_own_slots(
    spec: Path, tmp_path: Path
) -> None:
    """No GPU: one CPU slot per core (the sweep's default), each run one single-threaded
    core per rank; a two-rank run holds one slot, as the sweep runs it."""
    cores = len(os.sched_getaffinity(0))
    text = _plan(spec, tmp_path / "none.db", "--overhead-s", "120")
    # 9 runs of 300 s, `cores` at a time.
    wall = duration(300.0 * math.ceil(9 / cores))
    slots = f"{cores} CPU slot{'s' if cores > 1 else ''}"
    assert (
        f"cost: 9 of 9 runs still to run: 0.75 CPU-hours, {wall} wall on {slots} "
        "(no GPU found: one per CPU core; --slots to choose)"
    ) in text
    assert "9 runs x 1 CPU core, preset isolation_byte, budget wallclock_s = 180 s: " in text
    assert "GPU-hours" not in text and "x 1 GPU" not in text
    wide = tmp_path / "wide.toml"
    wide.write_text(
        SPEC.replace("nproc = 1", "nproc = 2").replace("preset = ", "iterations = 150\npreset = ")
    )
    text = _plan(wide, tmp_path / "none.db", "--slots", "2", "--overhead-s", "120")
    # Two ranks: two cores each, one slot each, two runs at a time.
    assert f"1.50 CPU-hours, {duration(300.0 * 5)} wall on 2 CPU slots (--slots)" in text
    assert "9 runs x 2 CPU cores, preset isolation_byte, budget wallclock_s = 180 s" in text


def test_an_iteration_cap_is_the_budget_plan_names(spec: Path, tmp_path: Path) -> None:
    capped = tmp_path / "capped.toml"
    capped.write_text(SPEC.replace('preset = "isolation_byte"', "iterations = 150"))
    text = _plan(capped, tmp_path / "none.db", visible_gpus="0,1")
    assert "wall on 2 GPUs (detected; --gpus to choose)" in text
    assert "9 runs x 1 GPU, jepardy, no preset, budget iterations = 150 (no wallclock_s): " in text


def test_plan_help_shows_the_sweeps_slots_default() -> None:
    out = CliRunner().invoke(app, ["plan", "--help"])
    text = " ".join(out.output.split())
    block = text[text.index("--slots") : text.index("--seed-std")]
    assert "default: one per CPU core" in block and "[default: 1" not in block, block


def test_the_hidden_columns_hint_names_what_plan_has(spec: Path, db: Path) -> None:
    """plan has no --format: on a narrow terminal its power table's hint asks for a wider one."""
    env = {"COLUMNS": "60", "CUDA_VISIBLE_DEVICES": ""}
    args = ["plan", str(spec), "--db", str(db), "--detect", "0.002"]
    out = CliRunner().invoke(app, args, env=env)
    assert out.exit_code == 0, out.output
    said = " ".join(out.output.split())  # the hint wraps at the table's width
    assert (
        "4 columns hidden: lane, seeds, arms/control, seed sd; a wider terminal shows them" in said
    )
    assert "--format" not in said
