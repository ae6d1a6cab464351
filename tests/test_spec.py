"""Spec loading, expansion and run identity, on real TOML files and the real trainer schema."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jepardy.errors import UserError
from jepardy.spec.expand import describe_plan, expand_runs
from jepardy.spec.identity import RunIdentity, run_id, trainer_code_digest
from jepardy.spec.model import Spec
from jepardy.spec.parse import load_spec
from jepardy.trainer.config import schema

SCHEMA = schema()

TWO_LANES = """
[sweep]
name = "smoke"
description = "two lanes"
seeds = [1, 2]

[trainer]
nproc = 2

[params]
n_layers = 2
lr = 0.003

[axes]
ema = [false, true]

[lanes.isolation]
params = { vocab_size = 260 }
axes = { wallclock_s = [180, 600] }
control = { jepa_weight = 0.0 }

[lanes.isolation.arms.jepa]
jepa_weight = [0.05, 0.1]

[lanes.isolation.arms.wide]
d_model = 128

[lanes.stack]
control = {}

[lanes.stack.arms.deep]
n_layers = 4
"""

# The smallest valid spec; error cases below are small edits of it.
MINIMAL = """
[sweep]
name = "t"
seeds = [1]

[lanes.main]
control = {}

[lanes.main.arms.jepa]
jepa_weight = 0.1
"""


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> Spec:
    return load_spec(write(tmp_path, text), SCHEMA)


def plan(tmp_path: Path, text: str) -> list[RunIdentity]:
    return expand_runs(load(tmp_path, text))


def keys(runs: list[RunIdentity]) -> list[tuple[str, str, str, str, int]]:
    return [(r.lane, r.arm, r.variant, r.match, r.seed) for r in runs]


# --- expansion ---------------------------------------------------------------------------


def test_two_lane_counts_and_order(tmp_path: Path) -> None:
    runs = plan(tmp_path, TWO_LANES)
    # isolation: (control 1 + jepa 2 + wide 1) variants x ema 2 x wallclock 2 x seeds 2 = 32;
    # stack: (control + deep) x ema 2 x seeds 2 = 8.
    assert len(runs) == 40
    assert describe_plan(runs)["arms"] == {
        "isolation": {"control": 8, "jepa": 16, "wide": 8},
        "stack": {"control": 4, "deep": 4},
    }
    assert keys(runs)[:9] == [
        ("isolation", "control", "", "ema=false,wallclock_s=180.0", 1),
        ("isolation", "control", "", "ema=false,wallclock_s=180.0", 2),
        ("isolation", "control", "", "ema=false,wallclock_s=600.0", 1),
        ("isolation", "control", "", "ema=false,wallclock_s=600.0", 2),
        ("isolation", "control", "", "ema=true,wallclock_s=180.0", 1),
        ("isolation", "control", "", "ema=true,wallclock_s=180.0", 2),
        ("isolation", "control", "", "ema=true,wallclock_s=600.0", 1),
        ("isolation", "control", "", "ema=true,wallclock_s=600.0", 2),
        ("isolation", "jepa", "jepa_weight=0.05", "ema=false,wallclock_s=180.0", 1),
    ]
    assert [r.arm for r in runs[16:25]] == ["jepa"] * 8 + ["wide"]
    assert runs[16].variant == "jepa_weight=0.1"
    assert keys(runs)[32:34] == [
        ("stack", "control", "", "ema=false", 1),
        ("stack", "control", "", "ema=false", 2),
    ]
    assert {(r.nproc, r.kind, r.sweep) for r in runs} == {(2, "jepardy", "smoke")}
    assert len({r.run_id for r in runs}) == 40
    assert len(set(runs)) == 40  # hashable: params (a dict) is left out of the hash


def test_every_arm_run_has_exactly_one_matched_control(tmp_path: Path) -> None:
    runs = plan(tmp_path, TWO_LANES)
    controls = Counter((r.lane, r.match, r.seed) for r in runs if r.arm == "control")
    assert set(controls.values()) == {1}
    for run in runs:
        assert controls[(run.lane, run.match, run.seed)] == 1


def test_precedence_params_lane_axis_arm_seed(tmp_path: Path) -> None:
    text = """
[sweep]
name = "p"
seeds = [7]

[params]
n_layers = 1
d_model = 32
lr = 0.001
vocab_size = 512

[axes]
d_model = [48]

[lanes.main]
params = { n_layers = 3, vocab_size = 260 }
control = {}

[lanes.main.arms.a]
lr = 0.01
"""
    control, arm = plan(tmp_path, text)
    # Only the keys the spec sets (plus seed): the trainer fills in its own defaults.
    assert control.params == {
        "d_model": 48,
        "lr": 0.001,
        "n_layers": 3,
        "seed": 7,
        "vocab_size": 260,
    }
    assert arm.params == {**control.params, "lr": 0.01}
    assert (arm.match, arm.variant, arm.seed) == ("d_model=48", "", 7)


def test_zip_groups_advance_together(tmp_path: Path) -> None:
    text = """
[sweep]
name = "z"
seeds = [1]
zip = [["wallclock_s", "iterations"]]

[axes]
wallclock_s = [60, 120, 240]
ema = [false, true]

[lanes.main]
axes = { iterations = [50, 100, 200] }
control = {}
"""
    runs = plan(tmp_path, text)
    assert [r.match for r in runs] == [
        "ema=false,iterations=50,wallclock_s=60.0",
        "ema=true,iterations=50,wallclock_s=60.0",
        "ema=false,iterations=100,wallclock_s=120.0",
        "ema=true,iterations=100,wallclock_s=120.0",
        "ema=false,iterations=200,wallclock_s=240.0",
        "ema=true,iterations=200,wallclock_s=240.0",
    ]


def test_float_grid_is_exact_and_inclusive(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "jepa_weight = 0.1", 'jepa_weight = { start = "0.00", stop = "1.00", step = "0.05" }'
    )
    spec = load(tmp_path, text)
    values = spec.lanes[0].arms[0].axes["jepa_weight"]
    assert len(values) == 21
    assert values[0] == 0.0 and values[-1] == 1.0
    assert 0.15 in values and 0.15000000000000002 not in values
    assert all(isinstance(v, float) for v in values)
    # 0.0 equals the control, which has no jepa_weight: different params, so no duplicate.
    assert len(expand_runs(spec)) == 22


def test_float_grid_from_numbers_on_a_sweep_axis(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "[lanes.main]", "[axes]\nlr = { start = 0.1, stop = 0.3, step = 0.1 }\n\n[lanes.main]"
    )
    runs = plan(tmp_path, text)
    assert [r.match for r in runs[:3]] == ["lr=0.1", "lr=0.2", "lr=0.3"]


def test_hand_written_schema(tmp_path: Path) -> None:
    small = {"alpha": {"type": "float", "default": 0.0}, "mode": {"type": "str", "default": "a"}}
    text = """
[sweep]
name = "h"
seeds = [3, 1]

[lanes.l]
control = { mode = "a" }

[lanes.l.arms.b]
mode = "b"
alpha = [1, 2.5]
"""
    # Not the jepardy trainer's schema, so not its rules either.
    runs = expand_runs(load_spec(write(tmp_path, text), small, trainer_rules=False))
    assert [(r.arm, r.variant, r.seed) for r in runs] == [
        ("control", "", 3),
        ("control", "", 1),
        ("b", "alpha=1.0", 3),
        ("b", "alpha=1.0", 1),
        ("b", "alpha=2.5", 3),
        ("b", "alpha=2.5", 1),
    ]
    assert runs[2].params == {"alpha": 1.0, "mode": "b", "seed": 3}


def test_describe_plan_counts(tmp_path: Path) -> None:
    summary = describe_plan(plan(tmp_path, TWO_LANES))
    assert summary["runs"] == 40
    assert summary["lanes"] == {"isolation": 32, "stack": 8}
    axes = summary["axes"]
    assert axes["ema"] == {"false": 20, "true": 20}
    assert axes["seed"] == {"1": 20, "2": 20}
    # Control params belong to the control only: arm "wide" and lane "stack" leave it unset.
    assert axes["jepa_weight"] == {"0.0": 8, "0.05": 8, "0.1": 8, "(default)": 16}
    assert "lr" not in axes  # the same in every run


# --- identity ----------------------------------------------------------------------------


def test_ids_are_stable_across_loads_and_processes(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_LANES)
    first = [r.run_id for r in expand_runs(load_spec(path, SCHEMA))]
    second = [r.run_id for r in expand_runs(load_spec(path, SCHEMA))]
    assert first == second
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in first)
    code = (
        "import sys; from pathlib import Path;"
        "from jepardy.spec.parse import load_spec, expand_runs;"
        "from jepardy.trainer.config import schema;"
        "print(' '.join(r.run_id for r in expand_runs(load_spec(Path(sys.argv[1]), schema()))))"
    )
    env = {"PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.split() == first


def test_ids_change_when_a_param_changes(tmp_path: Path) -> None:
    before = plan(tmp_path, TWO_LANES)
    after = plan(tmp_path, TWO_LANES.replace("lr = 0.003", "lr = 0.004"))
    assert keys(before) == keys(after)
    assert not {r.run_id for r in before} & {r.run_id for r in after}


def test_run_id_is_the_documented_hash() -> None:
    params: dict[str, Any] = {"seed": 1, "ema": True}
    args = {"sweep": "s", "lane": "l", "arm": "control", "kind": "jepardy", "code": "abc"}
    # Canonical JSON, computed by hand: sorted keys, no whitespace.
    canonical = (
        '{"arm":"control","code":"abc","kind":"jepardy","lane":"l",'
        '"params":{"ema":true,"seed":1},"sweep":"s"}'
    )
    assert run_id(params=params, **args) == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert run_id(params=params, **{**args, "code": "abd"}) != run_id(params=params, **args)


def test_trainer_code_digest_tracks_py_files_only(tmp_path: Path) -> None:
    package = tmp_path / "jepardy"
    (package / "trainer").mkdir(parents=True)
    (package / "data").mkdir()
    (package / "trainer" / "train.py").write_text("x = 1\n")
    (package / "data" / "shards.py").write_text("y = 2\n")
    before = trainer_code_digest(package)
    (package / "trainer" / "notes.txt").write_text("not code")
    (package / "cli.py").write_text("outside the trainer")
    assert trainer_code_digest(package) == before
    (package / "data" / "shards.py").write_text("y = 3\n")
    assert trainer_code_digest(package) != before
    assert len(trainer_code_digest()) == 64


def test_spec_keeps_path_text_and_hash(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_LANES)
    spec = load_spec(path, SCHEMA)
    assert (spec.path, spec.text) == (path, TWO_LANES)
    assert spec.sha256 == hashlib.sha256(TWO_LANES.encode()).hexdigest()
    assert (spec.name, spec.description, spec.seeds, spec.nproc) == (
        "smoke",
        "two lanes",
        (1, 2),
        2,
    )


# --- errors ------------------------------------------------------------------------------

LANE = "\n[lanes.main]\ncontrol = {}\n"
SWEEP = '[sweep]\nname = "t"\nseeds = [1]\n'


ERRORS = [
    pytest.param(
        MINIMAL.replace("jepa_weight = 0.1", "jepa_wieght = 0.1"),
        "lanes.main.arms.jepa.jepa_wieght: unknown trainer param; did you mean jepa_weight?",
        id="typo-suggestion",
    ),
    pytest.param(
        MINIMAL.replace("jepa_weight = 0.1", "zzz = 0.1"),
        "lanes.main.arms.jepa.zzz: unknown trainer param; "
        "`python -m jepardy.trainer.config` lists them",
        id="unknown-param-no-suggestion",
    ),
    pytest.param(
        SWEEP + "[params]\nn_layer = 3\n" + LANE,
        "params.n_layer: unknown trainer param; did you mean n_layers?",
        id="unknown-param-in-params",
    ),
    pytest.param(
        SWEEP + "[axes]\nemma = [true]\n" + LANE,
        "axes.emma: unknown trainer param; did you mean ema?",
        id="unknown-param-in-axes",
    ),
    pytest.param(
        SWEEP + "[params]\nseed = 3\n" + LANE,
        "params.seed: seed is set by sweep.seeds; not allowed as a param",
        id="seed-as-param",
    ),
    pytest.param(
        SWEEP + "[sweeps]\nx = 1\n" + LANE,
        "sweeps: unknown table; did you mean sweep?",
        id="unknown-top-level-table",
    ),
    pytest.param(
        "budget = 1\n" + SWEEP + LANE,
        "budget: unknown key; allowed: sweep, trainer, params, axes, lanes, slurm",
        id="unknown-top-level-key",
    ),
    pytest.param(
        SWEEP + "sedes = [2]\n" + LANE,
        "sweep.sedes: unknown key; did you mean seeds?",
        id="unknown-sweep-key",
    ),
    pytest.param(
        SWEEP + "[trainer]\ngpus = 2\n" + LANE,
        "trainer.gpus: unknown key; allowed: kind, nproc, path",
        id="unknown-trainer-key",
    ),
    pytest.param(
        SWEEP + LANE + "axis = { ema = [true] }\n",
        "lanes.main.axis: unknown table; did you mean axes?",
        id="unknown-lane-key",
    ),
    pytest.param(
        SWEEP + "[params]\nn_layers = 2.5\n" + LANE,
        "params.n_layers: 2.5 is a float; expected int",
        id="float-for-int",
    ),
    pytest.param(
        SWEEP + "[params]\nema = 1\n" + LANE,
        "params.ema: 1 is a int; expected bool",
        id="int-for-bool",
    ),
    pytest.param(
        SWEEP + "[params]\nlr = true\n" + LANE,
        "params.lr: True is a bool; expected float",
        id="bool-for-float",
    ),
    pytest.param(
        SWEEP + "[params]\nlr = [0.1, 0.2]\n" + LANE,
        "params.lr: [0.1, 0.2] is a list; expected one float (lists go in axes or arms)",
        id="list-in-params",
    ),
    pytest.param(
        SWEEP + '[axes]\nema = [true, "no"]\n' + LANE,
        "axes.ema[1]: 'no' is a str; expected bool",
        id="wrong-type-in-axis",
    ),
    pytest.param(
        SWEEP + "[axes]\nema = []\n" + LANE,
        "axes.ema: [] is empty; an axis needs at least one value",
        id="empty-axis",
    ),
    pytest.param(
        SWEEP + "[axes]\nlr = [0.1, 0.2, 0.1]\n" + LANE,
        "axes.lr[2]: 0.1 appears twice; axis values must be distinct",
        id="repeated-axis-value",
    ),
    pytest.param(
        SWEEP + "[axes]\nema = true\n" + LANE,
        "axes.ema: True is a bool; expected a list of values or a float grid",
        id="scalar-axis",
    ),
    pytest.param(
        SWEEP + '[axes]\nlr = { start = "0.0", stop = "1.0", step = "0.3" }\n' + LANE,
        "axes.lr.step: 0.3 does not divide stop - start = 1.0; the grid must land exactly on stop",
        id="grid-step-does-not-divide",
    ),
    pytest.param(
        SWEEP + '[axes]\nlr = { start = "0.1", stop = "0.5", step = "0" }\n' + LANE,
        "axes.lr.step: 0 is not positive; step must be > 0",
        id="grid-step-zero",
    ),
    pytest.param(
        SWEEP + '[axes]\nlr = { start = "0.5", stop = "0.1", step = "0.1" }\n' + LANE,
        "axes.lr.stop: 0.1 is below start 0.5; stop must be >= start",
        id="grid-stop-below-start",
    ),
    pytest.param(
        SWEEP + '[axes]\nlr = { start = "0.1", stop = "0.5" }\n' + LANE,
        "axes.lr.step: missing; a float grid needs start, stop and step",
        id="grid-missing-step",
    ),
    pytest.param(
        SWEEP + '[axes]\nlr = { start = "0.1", stop = "0.5", step = "0.1", num = 3 }\n' + LANE,
        "axes.lr.num: unknown key; allowed: start, stop, step",
        id="grid-unknown-key",
    ),
    pytest.param(
        SWEEP + '[axes]\nlr = { start = "zero", stop = "0.5", step = "0.1" }\n' + LANE,
        "axes.lr.start: 'zero' is not a number; expected a decimal string like \"0.05\"",
        id="grid-not-a-number",
    ),
    pytest.param(
        SWEEP + '[axes]\nlr = { start = "0", stop = "1", step = "0.00001" }\n' + LANE,
        "axes.lr.step: 0.00001 gives too many points; at most 10000",
        id="grid-too-many-points",
    ),
    pytest.param(
        SWEEP + '[axes]\nn_layers = { start = "1", stop = "3", step = "1" }\n' + LANE,
        "axes.n_layers: a float grid on a int param; use a list of values",
        id="grid-on-int-param",
    ),
    pytest.param(
        '[sweep]\nname = "t"\n' + LANE,
        "sweep.seeds: missing; expected a non-empty list of distinct ints",
        id="seeds-missing",
    ),
    pytest.param(
        '[sweep]\nname = "t"\nseeds = []\n' + LANE,
        "sweep.seeds: [] is empty; expected a non-empty list of distinct ints",
        id="seeds-empty",
    ),
    pytest.param(
        '[sweep]\nname = "t"\nseeds = [1, "2"]\n' + LANE,
        "sweep.seeds[1]: '2' is not an int >= 0; expected a non-empty list of distinct ints",
        id="seeds-non-int",
    ),
    pytest.param(
        '[sweep]\nname = "t"\nseeds = 1\n' + LANE,
        "sweep.seeds: 1 is a int; expected a non-empty list of distinct ints",
        id="seeds-not-a-list",
    ),
    pytest.param(
        '[sweep]\nname = "t"\nseeds = [1, 2, 1]\n' + LANE,
        "sweep.seeds[2]: 1 appears twice; expected a non-empty list of distinct ints",
        id="seeds-duplicated",
    ),
    pytest.param(
        '[sweep]\nname = "Smoke Test"\nseeds = [1]\n' + LANE,
        "sweep.name: 'Smoke Test' is not a valid name; names match [a-z0-9][a-z0-9_.-]*",
        id="bad-sweep-name",
    ),
    pytest.param(
        "[sweep]\nseeds = [1]\n" + LANE,
        "sweep.name: missing; a name matching [a-z0-9][a-z0-9_.-]* is required",
        id="missing-sweep-name",
    ),
    pytest.param(
        SWEEP + LANE.replace("main", "Main"),
        "lanes.Main: 'Main' is not a valid name; names match [a-z0-9][a-z0-9_.-]*",
        id="bad-lane-name",
    ),
    pytest.param(
        SWEEP + '[trainer]\nkind = "slurm"\n' + LANE,
        "trainer.kind: 'slurm' is not supported; allowed: jepardy, script",
        id="trainer-kind",
    ),
    pytest.param(
        SWEEP + "[trainer]\nnproc = 0\n" + LANE,
        "trainer.nproc: 0 is not an int >= 1; expected processes per run",
        id="nproc-zero",
    ),
    pytest.param(
        SWEEP.replace("seeds", 'zip = [["ema", "lr"]]\nseeds') + "[axes]\nema = [true]\n" + LANE,
        "sweep.zip[0][1]: 'lr' is not a sweep or lane axis; "
        "zip names axes from [axes] or lanes.<name>.axes",
        id="zip-unknown-axis",
    ),
    pytest.param(
        SWEEP.replace("seeds", 'zip = [["ema", "lr"]]\nseeds')
        + "[axes]\nema = [true, false]\nlr = [0.1]\n"
        + LANE,
        "sweep.zip[0]: axes of different lengths (ema: 2, lr: 1); "
        "zipped axes must have equal lengths",
        id="zip-different-lengths",
    ),
    pytest.param(
        SWEEP.replace("seeds", 'zip = [["ema", "lr"]]\nseeds')
        + "[axes]\nema = [true, false]\n"
        + LANE
        + "axes = { lr = [0.1, 0.2, 0.3] }\n",
        "sweep.zip[0]: axes of different lengths (ema: 2, lr: 3) in lane main; "
        "zipped axes must have equal lengths",
        id="zip-different-lengths-in-lane",
    ),
    pytest.param(
        SWEEP.replace("seeds", 'zip = [["ema", "lr"], ["d_model", "lr"]]\nseeds')
        + "[axes]\nema = [true, false]\nlr = [0.1, 0.2]\nd_model = [32, 64]\n"
        + LANE,
        "sweep.zip[1]: lr is also in sweep.zip[0]; an axis may be in one zip group",
        id="zip-axis-in-two-groups",
    ),
    pytest.param(
        SWEEP.replace("seeds", 'zip = [["ema"]]\nseeds') + "[axes]\nema = [true]\n" + LANE,
        "sweep.zip[0]: ['ema'] is a list; expected a list of two or more distinct axis names",
        id="zip-group-of-one",
    ),
    pytest.param(
        SWEEP.replace("seeds", 'zip = [["ema", "lr"]]\nseeds')
        + "[axes]\nema = [true, false]\n"
        + LANE
        + "axes = { lr = [0.1, 0.2] }\n"
        + "\n[lanes.other]\ncontrol = {}\n",
        "lanes.other.axes: lacks lr of zip group sweep.zip[0]; "
        "a zip group's axes must all be defined for the lane",
        id="zip-partly-in-lane",
    ),
    pytest.param(
        MINIMAL.replace("[lanes.main]", "[axes]\njepa_weight = [0.1, 0.2]\n\n[lanes.main]"),
        "lanes.main.arms.jepa.jepa_weight: also an axis (axes.jepa_weight); "
        "set a field in one place",
        id="sweep-axis-and-arm-param",
    ),
    pytest.param(
        SWEEP + LANE + "axes = { ema = [true, false] }\n\n[lanes.main.arms.e]\nema = [true]\n",
        "lanes.main.arms.e.ema: also an axis (lanes.main.axes.ema); set a field in one place",
        id="lane-axis-and-arm-axis",
    ),
    pytest.param(
        SWEEP + "\n[lanes.main]\naxes = { ema = [true, false] }\ncontrol = { ema = false }\n",
        "lanes.main.control.ema: also an axis (lanes.main.axes.ema); set a field in one place",
        id="lane-axis-and-control-param",
    ),
    pytest.param(
        SWEEP + "[axes]\nema = [true]\n" + LANE + "axes = { ema = [false] }\n",
        "lanes.main.axes.ema: also a sweep axis (axes.ema); define an axis at one level",
        id="axis-at-two-levels",
    ),
    pytest.param(
        SWEEP + "\n[lanes.main]\ndescription = 'no control'\n",
        "lanes.main: no control arm; add control = { ... } (it may be empty: {})",
        id="lane-without-control",
    ),
    pytest.param(
        SWEEP + "\n[lanes.main]\ncontrol = { lr = [0.1, 0.2] }\n",
        "lanes.main.control.lr: [0.1, 0.2] is a list; "
        "expected one float (lists go in axes or arms)",
        id="control-with-axis",
    ),
    pytest.param(
        SWEEP + LANE + "\n[lanes.main.arms.control]\nlr = 0.1\n",
        "lanes.main.arms.control: 'control' is the lane's control arm; give this arm another name",
        id="arm-named-control",
    ),
    pytest.param(
        SWEEP,
        "lanes: missing; at least one [lanes.<name>] table is required",
        id="no-lanes",
    ),
    pytest.param(
        SWEEP + "\n[lanes.main]\ncontrol = { lr = 0.1 }\n\n[lanes.main.arms.same]\nlr = 0.1\n",
        "lanes.main.arms.same: arm same (seed=1) resolves to the same params as "
        "arm control (seed=1); every run in a lane must differ",
        id="arm-equals-control",
    ),
    pytest.param(
        SWEEP
        + "[axes]\nema = [true]\n"
        + LANE
        + "\n[lanes.main.arms.a]\nlr = [0.1, 0.2]\n\n[lanes.main.arms.b]\nlr = 0.2\n",
        "lanes.main.arms.b: arm b (ema=true, seed=1) resolves to the same params as "
        "arm a (lr=0.2, ema=true, seed=1); every run in a lane must differ",
        id="two-arms-equal",
    ),
    pytest.param(
        SWEEP + "[params]\nlr = 0.1\nn_layers = \n" + LANE,
        "line 6, column 12: Invalid value; expected valid TOML",
        id="toml-syntax",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors_are_one_line_naming_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text, "smoke.toml")
    with pytest.raises(UserError) as caught:
        load_spec(path, SCHEMA)
    assert str(caught.value) == f"{path}: {message}"
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(UserError, match=r"nope\.toml: file not found; expected a TOML spec file$"):
        load_spec(path, SCHEMA)


def test_message_uses_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "experiments").mkdir()
    write(tmp_path / "experiments", MINIMAL.replace("jepa_weight", "jepa_wieght"), "smoke.toml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as caught:
        load_spec(Path("experiments/smoke.toml"), SCHEMA)
    assert str(caught.value) == (
        "experiments/smoke.toml: lanes.main.arms.jepa.jepa_wieght: unknown trainer param; "
        "did you mean jepa_weight?"
    )
