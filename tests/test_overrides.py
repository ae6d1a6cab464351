"""`--set key=value` on plan and sweep: a trainer param for every run, checked like the
spec's own, part of each run's id and match label; and `jepardy diff` on stored runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from demo_store import SMOKE, demo_result, write_demo

from jepardy.errors import UserError
from jepardy.launch.command import trainer_schema
from jepardy.spec.expand import expand_runs
from jepardy.spec.parse import load_spec
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import open_store

LEDGER_SCRIPT = Path(__file__).parent / "ledger_train_gpt.py"


def runs_with(*sets: str) -> list:
    return expand_runs(load_spec(SMOKE, trainer_schema(), overrides=list(sets)))


def test_a_set_param_reaches_every_run_and_its_identity() -> None:
    plain, fast, faster = runs_with(), runs_with("lr=0.01"), runs_with("lr=0.02")
    assert all(run.params["lr"] == 0.01 for run in fast)
    assert all("lr=0.01" in run.match.split(",") for run in fast)
    ids = [{run.run_id for run in runs} for runs in (plain, fast, faster)]
    assert len(set().union(*ids)) == 24  # three --set values: three sets of 8 runs
    assert [r.run_id for r in runs_with("lr=0.01")] == [r.run_id for r in fast]  # resumes
    # The spec's own value changes nothing: the same runs, the same labels.
    same = runs_with("lr=3e-3", "n_layers=2")
    assert [(r.run_id, r.match) for r in same] == [(r.run_id, r.match) for r in plain]
    # Control and arm keep their pairing: both carry the --set in their match label.
    by_match = {(r.arm, r.match, r.seed) for r in fast}
    assert ("control", "ema=false,lr=0.01", 1) in by_match
    assert ("jepa", "ema=false,lr=0.01", 1) in by_match


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("lr=abc", "--set lr=abc: 'abc' is a str; expected float"),
        ("lrr=0.1", "--set lrr=0.1: unknown trainer param; did you mean lr?"),
        ("lr", "--set 'lr': expected KEY=VALUE"),
        ("seed=3", "--set seed=3: seeds come from the spec's sweep.seeds"),
        ("ema=1", "--set ema=1: 1 is a int; expected bool"),
        (
            "jepa_weight=0.2",
            f"--set jepa_weight=0.2: jepa_weight is set by lanes.main.control.jepa_weight in "
            f"{SMOKE}; --set sets params every run shares ([params])",
        ),
        (
            "lr=-1",
            f"--set lr=-1.0: {SMOKE}: lanes.main.control (run ema=false,lr=-1.0,seed=1): "
            "lr = -1.0: must be >= 0",
        ),
        (
            "n_heads=5",
            f"--set n_heads=5: {SMOKE}: lanes.main.control (run ema=false,n_heads=5,seed=1): "
            "n_heads = 5: must divide d_model = 64",
        ),
    ],
)
def test_a_bad_set_is_one_line_naming_it(item: str, message: str) -> None:
    with pytest.raises(UserError) as refused:
        runs_with(item)
    assert str(refused.value) == message


def test_plan_refuses_a_bad_set_in_one_line(cli, tmp_path: Path) -> None:
    line = cli.refused("plan", SMOKE, "--set", "warmup_steps=-5", cwd=tmp_path)
    assert line.startswith("error: --set warmup_steps=-5: ")


def _script_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'[sweep]\nname = "sets"\nseeds = [1]\n\n[trainer]\nkind = "script"\n'
        f'path = "{LEDGER_SCRIPT}"\n\n[params]\nSLEEP_S = 0.1\n'
        f'LEDGER = "{tmp_path / "ledger.txt"}"\n\n[lanes.main]\ncontrol = {{}}\n'
    )
    return spec


@pytest.mark.slow
def test_a_sweep_with_set_records_it_and_resumes(cli, tmp_path: Path) -> None:
    spec = _script_spec(tmp_path)
    args = ("sweep", spec, "--db", "results.db", "--set", "SLEEP_S=0.2")
    first = cli.run(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    again = cli.run(*args, cwd=tmp_path)
    assert "0 done, 0 failed, 1 skipped" in again.stdout, again.stdout
    other = cli.run("sweep", spec, "--db", "results.db", "--set", "SLEEP_S=0.3", cwd=tmp_path)
    assert "1 done" in other.stdout, other.stdout + other.stderr
    with sqlite3.connect(tmp_path / "results.db") as connection:
        rows = connection.execute("SELECT match, params, status FROM runs").fetchall()
    assert sorted((m, json.loads(p)["SLEEP_S"], s) for m, p, s in rows) == [
        ("SLEEP_S=0.2", 0.2, "done"),
        ("SLEEP_S=0.3", 0.3, "done"),
    ]
    assert len((tmp_path / "ledger.txt").read_text().split()) == 2  # each ran once


# --- jepardy diff ---


def _demo_with_a_rerun(tmp_path: Path) -> tuple[Path, list[str]]:
    """The demo's store; its first run (left running) then finishes on other trainer code
    and data, so it differs from its second seed in code, data, seed and outcome."""
    db = tmp_path / "results.db"
    ids = write_demo(db, running=1)
    result = demo_result(0)
    result |= {"code_sha256": "b" * 64, "data": {**result["data"], "train_shards": 2}}
    open_store(str(db)).record_result(ids[0], RunOutcome(status="done", result=result))
    return db, ids


def test_diff_shows_only_what_differs(cli, tmp_path: Path) -> None:
    db, ids = _demo_with_a_rerun(tmp_path)
    proc = cli.run("diff", ids[0][:6], ids[1][:6], "--db", db, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {tuple(line.split()[-3:]) for line in proc.stdout.splitlines()}
    text = proc.stdout
    assert ids[0] in text and ids[1] in text
    assert ("seed", "1", "2") in rows
    assert ("code_sha256", "b" * 64, "a" * 64) in rows
    assert ("train_shards", "2", "1") in rows
    first, second = demo_result(0), demo_result(1)
    assert ("val_bpb", f"{first['val_bpb']:.4f}", f"{second['val_bpb']:.4f}") in rows
    for same in ("arm", "lane", "python_version", "val_tokens", "jepa_weight", "steps"):
        assert f" {same} " not in text, same


def test_diff_all_and_identical_runs(cli, tmp_path: Path) -> None:
    db, ids = _demo_with_a_rerun(tmp_path)
    every = cli.run("diff", ids[2], ids[4], "--db", db, "--all", cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert " python_version " in every.stdout and " lane " in every.stdout
    assert "fields differ," in every.stdout and " differs" in every.stdout
    same = cli.run("diff", ids[2], ids[2], "--db", db, cwd=tmp_path)
    assert same.returncode == 0 and len(same.stdout.strip().splitlines()) == 1
    assert same.stdout.startswith(f"runs {ids[2]} and {ids[2]} do not differ")
    line = cli.refused("diff", ids[2], "zz", "--db", db, cwd=tmp_path)
    assert line == f"error: diff: no run with id or id prefix 'zz' in {db}"
