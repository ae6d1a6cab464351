"""Runs that cannot run are refused at plan time, in one short line, with nothing written.

The battery runs the real `jepardy plan` on hostile specs; the trainer-side tests check that
the spec layer and the trainer refuse a config through the same rules (trainer/config.py).
The sweep tests check what is tried before any run is claimed: the run directories and
whether the database can be written.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import fields
from pathlib import Path

import pytest

from jepardy.errors import UserError
from jepardy.launch.command import trainer_schema
from jepardy.spec.expand import count_runs, expand_runs
from jepardy.spec.model import DEFAULT_MAX_RUNS
from jepardy.spec.parse import load_spec
from jepardy.store.transitions import open_store
from jepardy.trainer.config import BOUNDS, CHOICES, TrainConfig, check_params, config_from_params

# A valid spec of 4 runs (control and jepa, 2 seeds) that each case below breaks one way.
BASE = """\
[sweep]
name = "hostile"
seeds = [1, 2]
{sweep}
[trainer]
nproc = {nproc}

[params]
n_layers = 2
d_model = 64
{params}
[lanes.main]
control = {{}}

[lanes.main.arms.jepa]
jepa_weight = 0.1
{arm}"""

MAX_LINE = 300


def spec_text(params: str = "", arm: str = "", sweep: str = "", nproc: int = 1) -> str:
    return BASE.format(params=params, arm=arm, sweep=sweep, nproc=nproc)


def grid(name: str) -> str:
    return f'{name} = {{ start = "0.001", stop = "0.100", step = "0.001" }}\n'  # 100 points


# (id, spec text, what the one line must say)
HOSTILE = [
    ("unknown-preset", spec_text('preset = "gpt5"'), ["preset = 'gpt5'", "not a preset"]),
    ("device-tpu", spec_text('device = "tpu"'), ["device = 'tpu'", "'cuda'"]),
    ("iterations-0", spec_text("iterations = 0"), ["iterations = 0", ">= 1"]),
    (
        "n-layers-negative",
        spec_text("n_layers = -1").replace("n_layers = 2\n", ""),
        ["n_layers = -1"],
    ),
    ("warmdown-1.5", spec_text("warmdown_frac = 1.5"), ["warmdown_frac = 1.5", "in [0, 1]"]),
    ("quant-bits-1", spec_text("quant_bits = 1"), ["quant_bits = 1", "in [2, 8]"]),
    ("quant-bits-9", spec_text("quant_bits = 9"), ["quant_bits = 9"]),
    ("heads-not-dividing", spec_text("n_heads = 3"), ["n_heads = 3", "divide d_model = 64"]),
    ("heads-zero", spec_text("n_heads = 0"), ["n_heads = 0", ">= 1"]),
    ("kv-heads-not-dividing", spec_text("n_kv_heads = 3"), ["n_kv_heads = 3", "n_heads = 4"]),
    (
        "kv-heads-zero-in-lane",
        spec_text().replace("control = {}", "params = { n_kv_heads = 0 }\ncontrol = {}"),
        ["n_kv_heads = 0"],
    ),
    (
        "odd-head-dim",
        spec_text("d_model = 36").replace("d_model = 64\n", ""),
        ["d_model = 36", "even"],
    ),
    ("lr-inf", spec_text("lr = inf"), ["lr = inf", "finite"]),
    ("lr-minus-inf", spec_text("lr = -inf"), ["lr = -inf", "finite"]),
    ("lr-nan", spec_text("lr = nan"), ["lr = nan", "finite"]),
    ("lr-negative", spec_text("lr = -0.5"), ["lr = -0.5", ">= 0"]),
    ("lr-axis-inf", spec_text("[axes]\nlr = [0.001, inf]\n"), ["lr = inf", "lr=inf"]),
    (
        "lr-grid-negative",
        spec_text(arm='embed_lr = { start = "-0.1", stop = "0.1", step = "0.1" }'),
        ["embed_lr = -0.1"],
    ),
    (
        "jepa-weight-negative-arm-axis",
        spec_text(arm="").replace("jepa_weight = 0.1", "jepa_weight = [0.1, -0.1]"),
        ["jepa_weight = -0.1", "jepa_weight=-0.1"],
    ),
    (
        "int-past-int64",
        spec_text("iterations = 9223372036854775808"),
        ["iterations = 9223372036854775808", "64-bit"],
    ),
    (
        "int-far-past-int64",
        spec_text("val_max_tokens = " + "9" * 400),
        ["val_max_tokens = 999", "64-bit"],
    ),
    (
        "seed-past-int64",
        spec_text().replace("seeds = [1, 2]", "seeds = [1, 9223372036854775808]"),
        ["sweep.seeds[1]", "2^63"],
    ),
    (
        "grid-times-seeds",
        spec_text(arm='lr = { start = "0.0001", stop = "1.0000", step = "0.0001" }').replace(
            "seeds = [1, 2]", f"seeds = {list(range(100))}"
        ),
        ["sweep.max_runs", "1,000,100 runs", "10,000"],
    ),
    (
        "product-of-grids",
        spec_text(
            "[axes]\n"
            + "".join(
                grid(n)
                for n in (
                    "lr",
                    "embed_lr",
                    "scalar_lr",
                    "jepa_lr",
                    "grad_clip",
                    "init_std",
                    "beta1",
                    "beta2",
                )
            )
        ),
        ["sweep.max_runs", "4.00e+16 runs"],
    ),
    (
        "max-runs-under-count",
        spec_text(sweep="max_runs = 3"),
        ["sweep.max_runs", "4 runs", "limit of 3"],
    ),
    ("max-runs-zero", spec_text(sweep="max_runs = 0"), ["sweep.max_runs", "0 is a int", ">= 1"]),
    (
        "seq-len-not-patches",
        spec_text("seq_len = 100\ntrain_batch_tokens = 4000"),
        ["seq_len = 100", "jepa_patch_size = 8", "lanes.main.arms.jepa"],
    ),
    (
        "seq-len-one-patch",
        spec_text("seq_len = 8\njepa_patch_size = 8"),
        ["seq_len = 8", "2 patches"],
    ),
    ("patch-size-zero", spec_text("jepa_patch_size = 0"), ["jepa_patch_size = 0", ">= 1"]),
    ("batch-not-split-over-nproc", spec_text(nproc=3), ["train_batch_tokens = 4096", "3 rank(s)"]),
    (
        "batch-not-whole-sequences",
        spec_text("train_batch_tokens = 1000"),
        ["train_batch_tokens = 1000", "seq_len = 128"],
    ),
    (
        "micro-batch-not-sequences",
        spec_text("micro_batch_tokens = 100"),
        ["micro_batch_tokens = 100"],
    ),
    ("rope-dims-odd", spec_text("rope_dims = 3"), ["rope_dims = 3", "head_dim = 16"]),
    ("rope-dims-past-head", spec_text("rope_dims = 64"), ["rope_dims = 64"]),
    ("rope-base-zero", spec_text("rope_base = 0.0"), ["rope_base = 0.0", "> 0"]),
    ("xsa-past-layers", spec_text("xsa_last_n = 3"), ["xsa_last_n = 3", "n_layers = 2"]),
    ("value-embed-negative", spec_text("value_embed_last_n = -1"), ["value_embed_last_n = -1"]),
    ("bigram-one-bucket", spec_text("bigram_hash_buckets = 1"), ["bigram_hash_buckets = 1"]),
    ("beta2-one", spec_text("beta2 = 1.0"), ["beta2 = 1.0", "in [0, 1)"]),
    ("ema-decay-one", spec_text("ema = true\nema_decay = 1.0"), ["ema_decay = 1.0"]),
    ("muon-momentum-1.5", spec_text("muon_momentum = 1.5"), ["muon_momentum = 1.5"]),
    ("optimizer-sgd", spec_text('optimizer = "sgd"'), ["optimizer = 'sgd'", "'muon'"]),
    ("jepa-target-unknown", spec_text('jepa_target = "teacher"'), ["jepa_target = 'teacher'"]),
    ("activation-unknown", spec_text('mlp_activation = "gelu"'), ["mlp_activation = 'gelu'"]),
    ("init-unknown", spec_text('matrix_init = "xavier"'), ["matrix_init = 'xavier'"]),
    (
        "eval-stride-past-seq",
        spec_text("eval_stride = 256"),
        ["eval_stride = 256", "seq_len = 128"],
    ),
    ("log-every-zero", spec_text("log_every = 0"), ["log_every = 0"]),
    ("init-std-negative", spec_text("init_std = -0.02"), ["init_std = -0.02"]),
    ("zstd-level-23", spec_text("zstd_level = 23"), ["zstd_level = 23"]),
    ("vocab-one", spec_text("vocab_size = 1"), ["vocab_size = 1", ">= 2"]),
    ("wallclock-negative", spec_text("wallclock_s = -1.0"), ["wallclock_s = -1.0"]),
    ("val-batch-zero", spec_text("val_batch_tokens = 0"), ["val_batch_tokens = 0"]),
    (
        "preset-then-bad-width",
        spec_text('preset = "naive_baseline"\nd_model = 500').replace("d_model = 64\n", ""),
        ["n_heads = 8", "d_model = 500"],
    ),
    ("megabyte-preset-name", spec_text(f'preset = "{"x" * 1_000_000}"'), ["preset = 'xxxx", "..."]),
    (
        "megabyte-string-for-float",
        spec_text(f'lr = "{"x" * 1_000_000}"'),
        ["params.lr", "is a str; expected float"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in HOSTILE])
def test_plan_refuses_a_run_that_cannot_run_in_one_short_line(
    cli, tmp_path: Path, text: str, expected: list[str]
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(text)

    started = time.perf_counter()
    line = cli.refused("plan", spec, cwd=tmp_path)

    assert time.perf_counter() - started < 30  # seconds, even on a busy 2-core machine
    assert len(line) < MAX_LINE, line
    assert line.startswith(f"error: {spec}: "), line
    for part in expected:
        assert part in line, line
    assert [p.name for p in tmp_path.iterdir()] == ["spec.toml"]  # no results.db, no runs/


def test_the_battery_is_at_least_forty_specs() -> None:
    assert len(HOSTILE) >= 40


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
    assert "cannot open database sqlite:///a_file/results.db: unable to open" in line
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
