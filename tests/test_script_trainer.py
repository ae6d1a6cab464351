"""External trainers: a `kind = "script"` spec runs a challenge-style script under torchrun
with its params as the challenge's environment variables, and its log becomes the run's row.

The fast tests check the spec, the environment and the result built from a log; the one
slow test runs `tests/fake_train_gpt.py` (no training, the challenge's lines) through
`jepardy sweep` under real torchrun and reads the store.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from jepardy.errors import UserError
from jepardy.launch.command import script_argv, script_environment, write_run_config
from jepardy.launch.rundir import STDOUT_LOG
from jepardy.launch.torchrun import write_script_result
from jepardy.spec.challenge_env import PARAMS, script_env
from jepardy.spec.expand import expand_runs
from jepardy.spec.parse import load_spec
from jepardy.trainer.config import schema

FAKE = Path(__file__).parent / "fake_train_gpt.py"
FAKE_BYTES = FAKE.read_bytes()
LOGS = Path(__file__).parent / "fixtures" / "logs"

SPEC = f"""\
[sweep]
name = "fake-golf"
seeds = [1]

[trainer]
kind = "script"
path = "{FAKE}"

[params]
iterations = 20
wallclock_s = 600
ema = true
data_dir = "data/fineweb/datasets/fineweb10B_sp1024"
QK_GAIN_INIT = 1.5

[lanes.main]
control = {{ jepa_weight = 0.0 }}

[lanes.main.arms.jepa]
jepa_weight = 0.1

[lanes.crash]
control = {{ FAKE_CRASH = 1 }}
"""


def write_spec(directory: Path, text: str = SPEC) -> Path:
    path = directory / "spec.toml"
    path.write_text(text)
    return path


def refused(directory: Path, text: str) -> str:
    with pytest.raises(UserError) as err:
        load_spec(write_spec(directory, text), schema())
    return str(err.value).split(": ", 1)[1]


def test_a_script_spec_takes_mapped_names_and_upper_case_variables(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path), schema())
    assert spec.kind == "script" and spec.script == FAKE.resolve()
    assert spec.code_digest == hashlib.sha256(FAKE_BYTES).hexdigest()
    runs = expand_runs(spec)
    assert [(r.lane, r.arm) for r in runs] == [
        ("main", "control"),
        ("main", "jepa"),
        ("crash", "control"),
    ]
    control = runs[0]
    assert control.kind == "script" and control.script == str(FAKE.resolve())
    assert control.params == {
        "QK_GAIN_INIT": 1.5,
        "data_dir": "data/fineweb/datasets/fineweb10B_sp1024",
        "ema": True,
        "iterations": 20,
        "jepa_weight": 0.0,
        "seed": 1,
        "wallclock_s": 600.0,  # typed by the table: 600 in the file
    }
    # a relative path is the spec's folder's; an edited script makes new run ids
    (tmp_path / "train_gpt.py").write_bytes(FAKE_BYTES)
    relative = load_spec(write_spec(tmp_path, SPEC.replace(str(FAKE), "train_gpt.py")), schema())
    assert relative.script == (tmp_path / "train_gpt.py").resolve()
    assert [r.run_id for r in expand_runs(relative)] == [r.run_id for r in runs]
    (tmp_path / "train_gpt.py").write_bytes(FAKE_BYTES + b"\n# edited\n")
    edited = load_spec(write_spec(tmp_path, SPEC.replace(str(FAKE), "train_gpt.py")), schema())
    assert expand_runs(edited)[0].run_id != control.run_id


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("iterations = 20", "iteratons = 20", "params.iteratons: not a mapped param; use one of"),
        ("iterations = 20", "SEED = 3", "params.SEED: seed is set by sweep.seeds"),
        ("iterations = 20", "JEPA_LOSS_WEIGHT = 0.1", "params.JEPA_LOSS_WEIGHT: JEPA_LOSS_WEIGHT"),
        ("iterations = 20", "RUN_ID = 'x'", "params.RUN_ID: RUN_ID is set by the launcher"),
        ("iterations = 20", 'iterations = "20"', "params.iterations: '20' is a str; expected int"),
        ("QK_GAIN_INIT = 1.5", "QK_GAIN_INIT = [1]", "params.QK_GAIN_INIT: [1] is a list;"),
        (f'path = "{FAKE}"', 'path = "nope.py"', "trainer.path: 'nope.py': "),
        (f'path = "{FAKE}"\n', "", 'trainer.path: None: kind "script" needs the path'),
    ],
)
def test_script_spec_mistakes_are_one_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = refused(tmp_path, SPEC.replace(old, new))
    assert text.startswith(message) and "\n" not in text


def test_path_is_only_for_scripts(tmp_path: Path) -> None:
    text = SPEC.replace('kind = "script"', 'kind = "jepardy"').replace("QK_GAIN_INIT = 1.5", "")
    assert refused(tmp_path, text).startswith("trainer.path: ")
    assert 'only kind "script" takes a path' in refused(tmp_path, text)


def test_params_become_the_challenge_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = expand_runs(load_spec(write_spec(tmp_path), schema()))[1]
    env = script_environment(run)
    assert env == {
        "DATA_PATH": str(tmp_path / "data/fineweb/datasets/fineweb10B_sp1024"),
        "EMA_ENABLED": "1",
        "ITERATIONS": "20",
        "JEPA_LOSS_WEIGHT": "0.1",
        "MAX_WALLCLOCK_SECONDS": "600.0",
        "QK_GAIN_INIT": "1.5",
        "RUN_ID": run.run_id,
        "SEED": "1",
    }
    argv = script_argv(run, tmp_path / "run")
    assert argv[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m"]
    assert argv[6:] == ["jepardy.launch.script_entry", str(tmp_path / "run"), str(FAKE.resolve())]
    assert script_env({"VAL_DIR": "v", "TOKENIZER_PATH": "/abs/t.model"}, tmp_path) == {
        "VAL_DIR": str(tmp_path / "v"),
        "TOKENIZER_PATH": "/abs/t.model",
    }
    assert len({p.env for p in PARAMS}) == len(PARAMS) == len({p.name for p in PARAMS})


def test_a_script_log_becomes_the_run_result(tmp_path: Path) -> None:
    run = expand_runs(load_spec(write_spec(tmp_path), schema()))[0]
    run_dir = tmp_path / "run"
    write_run_config(run, run_dir)
    (run_dir / STDOUT_LOG).write_bytes((LOGS / "baseline_crlf.log").read_bytes())
    result = write_script_result(run_dir)
    assert json.loads((run_dir / "result.json").read_text()) == result
    assert result["status"] == "done" and result["val_bpb"] == 1.22512345
    assert result["artifact_bytes"] == 15_863_400  # as the script printed it
    assert result["code_sha256"] == hashlib.sha256(FAKE_BYTES).hexdigest()
    assert result["code_bytes"] == len(FAKE_BYTES) and result["printed_code_bytes"] == 47_600
    assert any("printed a code size of 47600 bytes" in f for f in result["flags"])
    points = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 1, "name": "train_loss", "value": 6.9412} in points
    (run_dir / STDOUT_LOG).write_bytes((LOGS / "truncated_seed7.log").read_bytes())
    failed = write_script_result(run_dir)
    assert failed["status"] == "failed" and failed["reason"].startswith("no final metric line")


@pytest.mark.slow
def test_a_fake_challenge_script_runs_through_sweep_under_torchrun(cli, tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = cli.run("sweep", spec, "--db", "results.db", "--runs-dir", "runs", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr  # the crash lane fails, by design
    assert "sweep fake-golf: 2 done, 1 failed" in out.stdout
    rows = _rows(tmp_path / "results.db")
    size = len(FAKE_BYTES)
    control, jepa, crash = rows["main/control"], rows["main/jepa"], rows["crash/control"]
    assert control["status"] == "done" and jepa["status"] == "done"
    # val_bpb = 1.2 + SEED/1e4 - JEPA_LOSS_WEIGHT/10, printed to 8 decimals
    assert control["val_bpb"] == 1.2001 and jepa["val_bpb"] == 1.1901
    assert control["val_loss"] == pytest.approx(1.2001 * 1.69, abs=5e-9)
    assert control["artifact_bytes"] == 15_000_020 + size  # model + the script's size
    assert control["model_bytes"] == 15_000_020 and control["code_bytes"] == size
    assert control["code_sha256"] == hashlib.sha256(FAKE_BYTES).hexdigest()
    assert control["steps"] == 20 and control["train_time_s"] == 0.8
    assert control["kind"] == "script" and control["wallclock_s"] == 600.0
    assert control["jepa_weight"] == 0.0 and jepa["jepa_weight"] == 0.1 and control["ema"] == 1
    result = json.loads(jepa["result"])
    assert result["provenance"]["val_bpb"]["label"] == "final_int8_zlib_roundtrip_exact"
    # what the script read from its environment, as it printed it back
    assert result["settings"]["jepa_loss_weight"] == 0.1
    assert result["settings"]["ema_enabled"] is True
    assert result["settings"]["max_wallclock_seconds"] == 600.0
    assert result["settings"]["iterations"] == 20 and result["settings"]["seed"] == 1
    assert crash["status"] == "failed"
    assert crash["reason"].startswith("crashed (line ")
    assert "torch.OutOfMemoryError: CUDA out of memory during export" in crash["reason"]
    # each script ran in its own run directory: its artifact is there, not in the cwd
    run_dir = tmp_path / control["run_dir"]  # relative to the cwd of `jepardy sweep`
    assert (run_dir / "final_model.int8.ptz").is_file()
    assert not (tmp_path / "final_model.int8.ptz").exists()
    assert (
        json.loads((run_dir / "run.json").read_text())["script"]["sha256"]
        == (control["code_sha256"])
    )
    again = cli.run("sweep", spec, "--db", "results.db", "--runs-dir", "runs", cwd=tmp_path)
    assert "0 done, 0 failed, 3 skipped" in again.stdout, again.stdout


def _rows(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM runs ORDER BY seq").fetchall()
    return {f"{row['lane']}/{row['arm']}": dict(row) for row in rows}
