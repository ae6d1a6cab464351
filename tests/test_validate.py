"""Runs that cannot run are refused at plan time, in one short line, with nothing written.

The battery runs the real `jepardy plan` on hostile specs; the trainer-side tests check that
the spec layer and the trainer refuse a config through the same rules (trainer/rules.py).
The sweep tests check what is tried before any run is claimed: the run directories and
whether the database can be written.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import fields
from pathlib import Path

import pytest
from hostile_specs import HOSTILE, MAX_LINE, spec_text

from jepardy.errors import UserError
from jepardy.launch.command import trainer_schema
from jepardy.spec.expand import count_runs, expand_runs
from jepardy.spec.model import DEFAULT_MAX_RUNS
from jepardy.spec.parse import load_spec
from jepardy.store.transitions import open_store
from jepardy.trainer.config import TrainConfig, check_params, config_from_params
from jepardy.trainer.rules import BOUNDS, CHOICES


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in HOSTILE])
def test_plan_refuses_a_run_that_cannot_run_in_one_short_line(
    cli, tmp_path: Path, text: str | bytes, expected: list[str]
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())

    started = time.perf_counter()
    line = cli.refused("plan", spec, cwd=tmp_path)

    assert time.perf_counter() - started < 30  # seconds, even on a busy 2-core machine
    assert len(line) < MAX_LINE, line
    assert line.startswith(f"error: {spec}: "), line
    for part in expected:
        assert part in line, line
    assert [p.name for p in tmp_path.iterdir()] == ["spec.toml"]  # no results.db, no runs/


def test_the_battery_is_at_least_eighty_distinct_specs() -> None:
    assert len(HOSTILE) >= 80
    assert len({i for i, _, _ in HOSTILE}) == len({t for _, t, _ in HOSTILE}) == len(HOSTILE)


def test_a_run_error_names_lane_arm_and_run(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text("[axes]\nema = [false, true]\n", arm="lr = [0.001, -0.001]\n"))

    with pytest.raises(UserError) as caught:
        load_spec(spec, trainer_schema())

    assert str(caught.value) == (
        f"{spec}: lanes.main.arms.jepa (run lr=-0.001,ema=false,seed=1): lr = -0.001: must be >= 0"
    )


def test_max_runs_allows_exactly_its_count(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text(sweep="max_runs = 4"))
    loaded = load_spec(spec, trainer_schema())
    assert loaded.max_runs == 4
    assert count_runs(loaded) == len(expand_runs(loaded)) == 4


def test_the_default_limit_is_ten_thousand(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text())
    assert load_spec(spec, trainer_schema()).max_runs == DEFAULT_MAX_RUNS == 10_000


def test_a_spec_over_the_limit_is_refused_before_expansion(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(HOSTILE_BY_ID["product-of-grids"])  # 4e16 runs
    schema = trainer_schema()
    started = time.perf_counter()
    with pytest.raises(UserError, match=r"sweep\.max_runs: the spec expands to 4\.00e\+16 runs"):
        load_spec(spec, schema)
    assert time.perf_counter() - started < 1.0


def test_counting_matches_expansion_with_zip_groups_and_arm_axes(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    text = spec_text(
        "[axes]\nema = [false, true]\nwallclock_s = [0.0, 60.0]\n",
        arm="lr = [0.001, 0.002, 0.003]\n",
    )
    spec.write_text(
        text.replace("seeds = [1, 2]", 'seeds = [1, 2]\nzip = [["ema", "wallclock_s"]]')
    )
    loaded = load_spec(spec, trainer_schema())
    assert count_runs(loaded) == len(expand_runs(loaded)) == (1 + 3) * 2 * 2


def test_a_script_trainer_is_not_held_to_the_jepardy_trainer_rules(tmp_path: Path) -> None:
    (tmp_path / "train_gpt.py").write_text("print('hi')\n")
    text = spec_text(arm="").replace(
        "nproc = 1", 'kind = "script"\npath = "train_gpt.py"\nnproc = 1'
    )
    spec = tmp_path / "spec.toml"
    spec.write_text(text.replace("n_layers = 2", "n_layers = 2\niterations = 0"))
    assert len(expand_runs(load_spec(spec, trainer_schema()))) == 4


# --- one set of rules: the spec layer and the trainer agree -------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"n_heads": 3},
        {"n_layers": -1, "xsa_last_n": 1},
        {"lr": float("inf")},
        {"preset": "leader_stack", "d_model": 100},
        {"jepa_weight": 0.1, "seq_len": 100, "train_batch_tokens": 4000},
    ],
)
def test_the_trainer_refuses_what_the_spec_refuses_in_the_same_words(params: dict) -> None:
    problem = check_params(params)
    assert problem is not None
    with pytest.raises(UserError) as caught:
        config_from_params(params)  # what the trainer runs at start-up on run.json's params
    assert str(caught.value) == f"config: {problem}"


def test_n_layers_negative_is_blamed_on_n_layers() -> None:
    problem = check_params({"n_layers": -1, "xsa_last_n": 1})
    assert problem is not None and problem.field == "n_layers"


def test_every_preset_and_the_defaults_pass_the_rules() -> None:
    assert check_params({}) is None
    for name in CHOICES["preset"]:
        assert check_params({"preset": name}) is None, name


def test_jepa_patches_constrain_seq_len_only_when_jepa_is_on() -> None:
    off = {"seq_len": 100, "train_batch_tokens": 4000}
    assert check_params(off) is None
    assert check_params(off | {"jepa_weight": 0.1}) is not None


def test_every_numeric_param_has_declared_bounds() -> None:
    """A new int or float param must say which values the trainer can run with."""
    numeric = {f.name for f in fields(TrainConfig) if str(f.type) in ("int", "float")}
    assert numeric - set(BOUNDS) == set()


@pytest.mark.parametrize(
    ("bits", "level", "expected"),
    [
        (1, 3, "export: --quant-bits 1: must be in [2, 8]"),
        (8, 23, "export: --zstd-level 23: must be in [-131072, 22]"),
    ],
)
def test_export_flags_are_held_to_the_trainer_ranges(
    tmp_path: Path, bits: int, level: int, expected: str
) -> None:
    from jepardy.launch.reexport import reexport

    store = open_store(tmp_path / "r.db")
    with pytest.raises(UserError) as caught:
        reexport(store, "0123456789abcdef", bits, level)  # refused before the run is looked up
    assert str(caught.value) == expected


# --- sweep: what is tried before the database, and before any run is claimed --------------

RUNNABLE = spec_text('data_dir = "."\ntokenizer_path = ""')


def test_sweep_of_a_rejected_spec_creates_no_database(cli, tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(spec_text("iterations = 0"))
    line = cli.refused("sweep", spec, cwd=tmp_path)
    assert "iterations = 0" in line
    assert [p.name for p in tmp_path.iterdir()] == ["bad.toml"]


def test_sweep_over_max_runs_answers_at_once_and_creates_nothing(cli, tmp_path: Path) -> None:
    spec = tmp_path / "big.toml"
    spec.write_text(HOSTILE_BY_ID["grid-times-seeds"])
    line = cli.refused("sweep", spec, cwd=tmp_path)
    assert "sweep.max_runs" in line
    assert [p.name for p in tmp_path.iterdir()] == ["big.toml"]


@pytest.mark.parametrize(
    ("length", "why"),
    [(200, "not found"), (100_000, "cannot be looked up (File name too long)")],
)
def test_a_missing_data_dir_is_one_short_line(cli, tmp_path: Path, length: int, why: str) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text(f'data_dir = "{"d" * length}"'))
    line = cli.refused("sweep", spec, cwd=tmp_path)
    assert len(line) < MAX_LINE, line
    assert "lanes.main.control (run seed=1): data_dir = 'ddd" in line
    assert line.endswith(why), line
    assert [p.name for p in tmp_path.iterdir()] == ["spec.toml"]


def test_sweep_refuses_an_unwritable_runs_dir_before_claiming(cli, tmp_path: Path) -> None:
    # A folder under a regular file cannot be made, even by root (chmod does not stop root).
    (tmp_path / "a_file").write_text("")
    spec = tmp_path / "spec.toml"
    spec.write_text(RUNNABLE)
    line = cli.refused("sweep", spec, "--runs-dir", "a_file/runs", cwd=tmp_path)
    assert line == (
        "error: --runs-dir: a_file/runs/hostile: cannot be written (a_file is not a directory)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "spec.toml"]


def test_sweep_refuses_a_database_it_cannot_create(cli, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    spec = tmp_path / "spec.toml"
    spec.write_text(RUNNABLE)
    line = cli.refused("sweep", spec, "--db", "a_file/results.db", cwd=tmp_path)
    assert "cannot open database a_file/results.db: unable to open" in line
    assert not (tmp_path / "runs").exists()


def test_sweep_refuses_a_read_only_database_and_keeps_its_rows(cli, tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(RUNNABLE)
    db = tmp_path / "results.db"
    store = open_store(db)
    loaded = load_spec(spec, trainer_schema())
    store.upsert_sweep(loaded.name, str(spec), loaded.text)
    store.register_runs(expand_runs(loaded), None)
    store.close()
    before = _rows(db)
    # SQLite's mode=ro opens the file read-only whoever runs it (root ignores chmod).
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"

    line = cli.refused("sweep", spec, "--db", read_only, cwd=tmp_path)

    assert "cannot open database" in line and "readonly database" in line, line
    assert len(line) < MAX_LINE, line
    assert _rows(db) == before  # every run still pending, none claimed
    assert {row[1] for row in before} == {"pending"}
    assert not (tmp_path / "runs").exists()


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, status, host, pid FROM runs ORDER BY id").fetchall()


HOSTILE_BY_ID = {i: t for i, t, _ in HOSTILE}
