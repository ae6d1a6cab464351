"""`jepardy sweep` end to end: the real CLI, real torchrun trainers, a real SQLite file.

Every run is a tiny model on the embedded corpus (a few seconds, most of it torchrun and
torch start-up), so the module keeps its run count small.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.slow

ITERATIONS = 15
RUN_FILES = ("result.json", "metrics.jsonl", "train.log", "stdout.log", "run.json")
SP1024 = "datasets/embedded_sp1024"
TOKENIZER = "tokenizers/embedded_1024_bpe.model"


def tiny_spec(
    name: str,
    data: Path,
    arms: str = "[lanes.main.arms.jepa]\njepa_weight = 0.1\n",
    data_dir: str | None = None,
) -> str:
    """A one-lane spec of a model small enough to train in about a second on a CPU."""
    return f"""\
[sweep]
name = "{name}"
seeds = [1]

[params]
data_dir = "{data_dir or data / SP1024}"
tokenizer_path = "{data / TOKENIZER}"
vocab_size = 1024
d_model = 32
n_layers = 1
n_heads = 4
n_kv_heads = 2
seq_len = 64
train_batch_tokens = 2048
val_max_tokens = 4096
iterations = {ITERATIONS}
warmup_steps = 2
log_every = 5

[axes]
ema = [false]

[lanes.main]
control = {{ jepa_weight = 0.0 }}

{arms}"""


def runs_rows(db: Path, sweep: str) -> dict[str, dict[str, Any]]:
    """The sweep's rows of the runs table, by arm (a plain sqlite3 read of the file)."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM runs WHERE sweep = ? ORDER BY seq", (sweep,))
        return {row["arm"]: dict(row) for row in rows}


def counts(output: str) -> dict[str, int]:
    """The counts of the `sweep NAME: 2 done, 0 failed, 1 skipped (...), of 3, in ...` line
    that ends every sweep, e.g. {"done": 2, "failed": 0, "skipped": 1, "of": 3}."""
    lines = re.findall(r"^sweep \S+: .*$", output, re.MULTILINE)
    assert len(lines) == 1, output
    found = {word: int(n) for n, word in re.findall(r"(\d+) (done|failed|skipped)", lines[0])}
    found["of"] = int(re.search(r"\bof (\d+)", lines[0])[1])
    return found


def processes_mentioning(text: str) -> dict[int, str]:
    """pid -> command line of the live processes whose command line mentions `text`
    (a zombie has an empty one)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found[int(entry.name)] = cmdline
    return found


def trainer_ranks(runs_dir: str) -> list[int]:
    """The trainer rank processes (not their torchrun launcher) of the jobs under runs_dir."""
    return [
        pid
        for pid, cmdline in processes_mentioning(runs_dir).items()
        if "-m jepardy.trainer" in cmdline and "torch.distributed.run" not in cmdline
    ]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(
    condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


@pytest.fixture(scope="module")
def corpus(cli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded corpus, built once by `jepardy data build`."""
    root = tmp_path_factory.mktemp("corpus") / "embedded"
    proc = cli.run("data", "build", "--root", root, cwd=root.parent)
    assert proc.returncode == 0, proc.stderr
    return root


# --- a sweep that succeeds -----------------------------------------------------------------


@pytest.fixture(scope="module")
def done_sweep(cli, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory in which `jepardy sweep` ran a control and a JEPA arm to completion."""
    work = tmp_path_factory.mktemp("sweep")
    (work / "spec.toml").write_text(tiny_spec("e2e", corpus))
    proc = cli.run("sweep", "spec.toml", "--db", "results.db", "--runs-dir", "runs", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert counts(proc.stdout) == {"done": 2, "failed": 0, "skipped": 0, "of": 2}
    return work


def test_every_run_is_recorded_done_with_its_results(done_sweep: Path) -> None:
    rows = runs_rows(done_sweep / "results.db", "e2e")
    assert list(rows) == ["control", "jepa"]
    assert rows["control"]["jepa_weight"] == 0.0
    assert rows["jepa"]["jepa_weight"] == 0.1
    for row in rows.values():
        assert row["status"] == "done"
        assert row["reason"] == ""
        assert row["exit_code"] == 0
        assert row["match"] == "ema=false"
        assert 0 < row["val_bpb"] < 10
        assert 0 < row["val_loss"] < 10
        assert 0 < row["artifact_bytes"] < 16_000_000
        assert row["under_cap"] == 1
        assert row["steps"] == ITERATIONS
        assert row["train_time_s"] > 0
        assert row["started_at"] <= row["finished_at"]
        assert json.loads(row["result"])["status"] == "done"


def test_run_dirs_hold_the_trainers_files(done_sweep: Path) -> None:
    for row in runs_rows(done_sweep / "results.db", "e2e").values():
        run_dir = done_sweep / row["run_dir"]
        assert run_dir == done_sweep / "runs" / "e2e" / row["id"]
        for name in RUN_FILES:
            assert (run_dir / name).is_file(), f"{run_dir}/{name}"
        assert json.loads((run_dir / "run.json").read_text())["run_id"] == row["id"]
        result = json.loads((run_dir / "result.json").read_text())
        assert result["val_bpb"] == pytest.approx(row["val_bpb"])
        assert "val_bpb" in (run_dir / "stdout.log").read_text()  # the trainer's own output


def test_metrics_are_in_the_metrics_table(done_sweep: Path) -> None:
    with sqlite3.connect(done_sweep / "results.db") as conn:
        for row in runs_rows(done_sweep / "results.db", "e2e").values():
            jsonl = (done_sweep / row["run_dir"] / "metrics.jsonl").read_text().splitlines()
            stored = conn.execute(
                "SELECT step, name, value FROM metrics WHERE run_id = ?", (row["id"],)
            ).fetchall()
            assert len(stored) == len(jsonl) > 0
            names = {name for _, name, _ in stored}
            assert "train_loss" in names
            assert {step for step, name, _ in stored if name == "train_loss"} == {5, 10, 15}
            if row["arm"] == "jepa":
                assert "jepa_loss" in names


def test_pandas_reads_the_runs_table(done_sweep: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{done_sweep / 'results.db'}")
    try:
        frame = pd.read_sql("runs", engine)
    finally:
        engine.dispose()
    assert list(frame["arm"]) == ["control", "jepa"]
    assert frame["val_bpb"].dtype == "float64"
    assert frame["val_bpb"].notna().all()
    assert list(frame["jepa_weight"]) == [0.0, 0.1]


def test_report_markdown_has_control_arm_and_delta(cli, done_sweep: Path) -> None:
    proc = cli.run("report", "--db", "results.db", "--format", "markdown", cwd=done_sweep)
    assert proc.returncode == 0, proc.stderr
    assert "### e2e / main" in proc.stdout
    table = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in proc.stdout.splitlines()
        if line.startswith("|")
    ]
    header, _rule, *body = table
    shown = {row["arm"]: row for row in (dict(zip(header, cells, strict=True)) for cells in body)}
    assert list(shown) == ["control", "jepa"]
    runs = runs_rows(done_sweep / "results.db", "e2e")
    delta = runs["jepa"]["val_bpb"] - runs["control"]["val_bpb"]
    assert shown["control"]["delta_bpb"] == "+0.0000"
    assert shown["jepa"]["delta_bpb"] == f"{delta:+.4f}"
    assert shown["jepa"]["val_bpb"] == f"{runs['jepa']['val_bpb']:.4f}"
    assert shown["jepa"]["n"] == "1"
    assert shown["jepa"]["match"] == "ema=false"


def test_show_prints_provenance_and_same_code_shares_its_hash(cli, done_sweep: Path) -> None:
    runs = runs_rows(done_sweep / "results.db", "e2e")
    control, arm = runs["control"], runs["jepa"]
    # Control and arm ran the same trainer code: one code hash, as compare requires.
    assert control["code_sha256"] == arm["code_sha256"] is not None
    proc = cli.run("show", control["id"][:8], "--db", "results.db", cwd=done_sweep)
    assert proc.returncode == 0, proc.stderr
    for expected in (
        control["id"],
        control["code_sha256"],
        "jepardy/trainer/train.py",
        "python_version",
        "torch_version",
        "header_sha256",
        "git_commit",
    ):
        assert expected in proc.stdout, expected
    health = cli.run("report", "--health", "--db", "results.db", cwd=done_sweep)
    assert health.returncode == 0, health.stderr
    # 15 steps train every group and keep the gradients alive (a JEPA prediction may still
    # sit below its std target this early: that flag is allowed here).
    assert "frozen" not in health.stdout and "gradients silenced" not in health.stdout


def test_diff_of_control_and_arm_shows_what_the_arm_changed(cli, done_sweep: Path) -> None:
    runs = runs_rows(done_sweep / "results.db", "e2e")
    control, arm = runs["control"], runs["jepa"]
    args = ("diff", control["id"][:8], arm["id"][:8], "--db", "results.db")
    proc = cli.run(*args, cwd=done_sweep)
    assert proc.returncode == 0, proc.stderr
    fields = [line.split() for line in proc.stdout.splitlines()]
    weights = [cells for cells in fields if "jepa_weight" in cells]
    assert len(weights) == 2  # as the spec gave it, and in the trainer's resolved config
    assert ["arm", "control", "jepa"] in [cells[-3:] for cells in fields]
    assert f"{control['val_bpb']:.4f}" in proc.stdout and f"{arm['val_bpb']:.4f}" in proc.stdout
    # One trainer, one machine: code, runtime and data are the same, so not shown.
    for same in ("code_sha256", "python_version", "torch_version", "lane"):
        assert same not in proc.stdout, same


def test_logs_prints_the_end_of_the_jobs_log(cli, done_sweep: Path) -> None:
    rows = runs_rows(done_sweep / "results.db", "e2e")
    run_id = rows["jepa"]["id"]
    proc = cli.run("logs", run_id[:6], "--db", "results.db", "-n", "400", cwd=done_sweep)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"==> {rows['jepa']['run_dir']}/stdout.log <=="
    assert any(line.startswith("model_params:") for line in lines), proc.stdout
    assert len(cli.run("logs", run_id, "--db", "results.db", "-n", "3", cwd=done_sweep)
               .stdout.splitlines()) == 4  # fmt: skip


def test_a_second_sweep_launches_nothing(cli, done_sweep: Path) -> None:
    db = done_sweep / "results.db"
    before = {row["id"]: row for row in runs_rows(db, "e2e").values()}
    result_mtimes = {
        run_id: (done_sweep / row["run_dir"] / "result.json").stat().st_mtime_ns
        for run_id, row in before.items()
    }

    proc = cli.run("sweep", "spec.toml", "--db", "results.db", "--runs-dir", "runs", cwd=done_sweep)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = {row["id"]: row for row in runs_rows(db, "e2e").values()}
    assert set(after) == set(before), (
        "new run ids: the trainer code digest changed during the test "
        "(an edit under jepardy/trainer/ or jepardy/data/ gives every run a new identity)"
    )
    assert counts(proc.stdout) == {"done": 0, "failed": 0, "skipped": 2, "of": 2}
    for run_id, row in after.items():
        assert row["status"] == "done"
        assert row["started_at"] == before[run_id]["started_at"]
        assert row["finished_at"] == before[run_id]["finished_at"]
        mtime = (done_sweep / row["run_dir"] / "result.json").stat().st_mtime_ns
        assert mtime == result_mtimes[run_id]


# --- failures ------------------------------------------------------------------------------


def test_a_crashing_arm_is_recorded_failed_and_retried_once_fixed(
    cli, corpus: Path, tmp_path: Path
) -> None:
    # The jepa arm reads a copy of the data whose train shard is truncated. (A config the
    # trainer would refuse, such as d_model 30 with 4 heads, never launches: the spec is
    # refused at plan time by the same rules, tests/test_validate.py.)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(corpus / SP1024, corrupt)
    shard = corrupt / "fineweb_train_000000.bin"
    shard.write_bytes(shard.read_bytes()[:5000])
    jepa_arm = f'[lanes.main.arms.jepa]\njepa_weight = 0.1\ndata_dir = "{corrupt}"\n'
    # A RoPE base of 1e-300 passes the rules (> 0) but is 0 in float32, so the rotary
    # frequencies are infinite and the loss is NaN from the first step: the trainer ends the
    # run as failed with reason "nan".
    nan_arm = "[lanes.main.arms.nan]\nrope_base = 1e-300\n"
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec("crash", corpus, arms=f"{jepa_arm}\n{nan_arm}"))
    sweep = ("sweep", "spec.toml", "--db", "results.db", "--runs-dir", "runs")

    proc = cli.run(*sweep, cwd=tmp_path)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert counts(proc.stdout) == {"done": 1, "failed": 2, "skipped": 0, "of": 3}
    rows = runs_rows(tmp_path / "results.db", "crash")
    assert rows["control"]["status"] == "done"
    jepa = rows["jepa"]
    assert jepa["status"] == "failed"
    assert jepa["exit_code"] == 1
    assert str(shard) in jepa["reason"]
    assert "size 5000 bytes" in jepa["reason"]
    assert str(shard) in jepa["log_tail"]
    assert jepa["val_bpb"] is None
    assert f"failed {jepa['id']} main/jepa" in proc.stdout
    nan = rows["nan"]
    assert (nan["status"], nan["reason"], nan["exit_code"]) == ("failed", "nan", 1)
    assert "failed: nan" in nan["log_tail"]

    # Repair the shard and drop the impossible arm. A plain sweep leaves the failed run be;
    # --retry-failed runs it again, under the same id.
    shutil.copy2(corpus / SP1024 / shard.name, shard)
    spec.write_text(tiny_spec("crash", corpus, arms=jepa_arm))
    proc = cli.run(*sweep, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert counts(proc.stdout) == {"done": 0, "failed": 0, "skipped": 2, "of": 2}
    assert runs_rows(tmp_path / "results.db", "crash")["jepa"]["status"] == "failed"

    proc = cli.run(*sweep, "--retry-failed", cwd=tmp_path)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert counts(proc.stdout) == {"done": 1, "failed": 0, "skipped": 1, "of": 2}
    retried = runs_rows(tmp_path / "results.db", "crash")["jepa"]
    assert retried["id"] == jepa["id"]
    assert retried["status"] == "done"
    assert retried["reason"] == ""
    assert retried["val_bpb"] > 0
    assert retried["started_at"] > jepa["finished_at"]


def test_a_missing_data_dir_is_refused_before_launching(cli, corpus: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec("nodata", corpus, data_dir="missing/embedded_sp1024"))

    line = cli.refused("sweep", spec, "--db", "results.db", "--runs-dir", "runs", cwd=tmp_path)

    assert str(spec) in line
    assert "lanes.main.control (run ema=false,seed=1): data_dir = 'missing/embedded_sp1024'" in line
    assert "not found" in line
    # Refused before the database is opened: nothing is created.
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "results.db").exists()


# --- Ctrl-C --------------------------------------------------------------------------------


def test_sigint_interrupts_the_run_and_kills_its_processes(
    cli, corpus: Path, tmp_path: Path
) -> None:
    # One control run. Its trainer rank has seconds of torch start-up ahead of it when it
    # is first seen, and the sweep answers Ctrl-C within one poll (20 ms).
    (tmp_path / "spec.toml").write_text(tiny_spec("ctrlc", corpus, arms=""))
    # An absolute runs dir, so that it names this test's processes in their command lines.
    runs_dir = str(tmp_path / "runs")
    sweep = ("sweep", "spec.toml", "--db", "results.db", "--runs-dir", runs_dir)
    proc = cli.popen(*sweep, cwd=tmp_path)
    try:
        wait_for(
            lambda: trainer_ranks(runs_dir) or proc.poll() is not None,
            timeout_s=120,
            what="the trainer process",
        )
        assert proc.poll() is None, proc.communicate()[0]
        running = runs_rows(tmp_path / "results.db", "ctrlc")["control"]
        assert running["status"] == "running"

        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_mentioning(runs_dir):  # only if the test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    assert proc.returncode != 0, output
    row = runs_rows(tmp_path / "results.db", "ctrlc")["control"]
    assert row["status"] == "interrupted", output
    assert row["pid"] == proc.pid
    # Nothing the job started outlives the orchestrator: not the torchrun launcher (whose
    # pid the store recorded), not its trainer rank.
    assert not pid_alive(int(running["job_id"]))
    assert processes_mentioning(runs_dir) == {}

    done = cli.run(*sweep, cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert counts(done.stdout) == {"done": 1, "failed": 0, "skipped": 0, "of": 1}
    row = runs_rows(tmp_path / "results.db", "ctrlc")["control"]
    assert row["status"] == "done"
    assert row["steps"] == ITERATIONS
