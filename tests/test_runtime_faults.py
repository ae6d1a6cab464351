"""Runtime faults the other fault tests leave out, each with what the user sees: a job killed
from outside (SIGKILL), a corrupt shard under the real trainer, a full disk (a sweep run
under a file-size limit, `ulimit -f`, the way a full file system refuses a write), a
database from a newer jepardy, a second Ctrl-C, and `cancel` after the orchestrator died."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from jobs import FakeRun
from test_faults import (
    alive,
    assert_none_left,
    cleanup,
    job_pids,
    run_programs,
    stubborn_sweep,
    the_row,
)
from test_sweep_e2e import wait_for
from test_trainer_run import corpus, run_trainer, tiny_params  # noqa: F401 (corpus: fixture)

from jepardy.launch.local_executor import KILL_AFTER_S
from jepardy.store.states import SCHEMA_VERSION
from jepardy.store.transitions import open_store

KILLED = """import os, signal
print("step:1/10 train_loss:6.9", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_job_killed_from_outside_is_failed_with_its_signal(tmp_path: Path) -> None:
    rows = run_programs(
        tmp_path,
        [
            FakeRun("bare", params={"program": KILLED}),
            FakeRun("torchrun", params={"program": KILLED, "torchrun": True}),
        ],
    )
    assert {r: (row["status"], row["reason"]) for r, row in rows.items()} == {
        "bare": ("failed", "killed by SIGKILL (signal 9)"),
        # torchrun exits 1; the worker's signal is in its report in the log.
        "torchrun": ("failed", "a worker was killed by SIGKILL (signal 9); exit code 1"),
    }


def test_a_corrupt_shard_fails_the_run_naming_the_file(corpus, tmp_path: Path) -> None:  # noqa: F811
    data = Path(shutil.copytree(corpus.sp1024_dir, tmp_path / "sp1024"))
    shard = data / "fineweb_train_000000.bin"
    with shard.open("ab") as f:
        f.write(b"\0")  # one byte more than its header says

    proc, result = run_trainer(tmp_path / "run", tiny_params(corpus, data_dir=str(data)))

    assert proc.returncode == 1
    assert result["status"] == "failed"
    count = corpus.sp1024_tokens["train"]
    assert result["reason"] == (
        f"error: {shard}: size {1024 + 2 * count + 1} bytes, expected 1024 + 2*{count} = "
        f"{1024 + 2 * count} from header token count {count}"
    )
    assert "\n" not in result["reason"] and "Traceback" not in proc.stderr


WRITER = """import os
print("step:1/10 train_loss:6.9", flush=True)
with open("final_model.int8.ptz", "wb") as f:
    f.write(os.urandom(4_000_000))
print("final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.2", flush=True)
"""


@pytest.mark.slow
def test_a_full_disk_fails_the_run_with_the_write_error(cli, tmp_path: Path) -> None:
    (tmp_path / "writer.py").write_text(WRITER)
    spec = tmp_path / "disk.toml"
    spec.write_text(
        '[sweep]\nname = "disk"\nseeds = [1]\n\n'
        f'[trainer]\nkind = "script"\npath = "{tmp_path / "writer.py"}"\n\n'
        "[lanes.main]\ncontrol = {}\n"
    )
    # 2 MiB per file for the whole sweep: the store and the logs fit, the 4 MB artifact not.
    sweep = f"ulimit -f 2048 && exec {cli.script} sweep {spec} --db {tmp_path / 'r.db'}"
    proc = subprocess.run(
        ["bash", "-c", sweep], cwd=tmp_path, env=cli.env(), capture_output=True, text=True
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    [row] = open_store(tmp_path / "r.db").runs_frame().to_dict("records")
    assert row["status"] == "failed"
    assert row["reason"].endswith("OSError: [Errno 27] File too large"), row["reason"]
    assert "Traceback" not in proc.stderr


def test_a_database_from_a_newer_jepardy_is_refused_in_one_line(cli, tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    open_store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_info SET version = 99")
    for command in ("runs", "status"):
        line = cli.refused(command, "--db", db, cwd=tmp_path)
        assert line == (
            f"error: database {db} has schema version 99; this jepardy reads version "
            f"{SCHEMA_VERSION} (a newer jepardy wrote it; upgrade jepardy)"
        )
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_info").fetchall() == [(99,)]


@pytest.mark.slow
def test_a_second_ctrl_c_kills_at_once(cli, tmp_path: Path) -> None:
    # The worker ignores SIGTERM: one Ctrl-C waits the 10 s grace before SIGKILL, two do not.
    sweep = cli.popen(*stubborn_sweep(tmp_path, "twice"), cwd=tmp_path)
    with cleanup(tmp_path, sweep):
        pids = wait_for(lambda: job_pids(tmp_path), timeout_s=120, what="the worker")
        started = time.monotonic()
        sweep.send_signal(signal.SIGINT)
        time.sleep(1)
        sweep.send_signal(signal.SIGINT)
        output, _ = sweep.communicate(timeout=60)
        stopped_s = time.monotonic() - started
    assert stopped_s < KILL_AFTER_S, (stopped_s, output)
    assert the_row(tmp_path)["status"] == "interrupted", output
    assert_none_left(tmp_path, pids)


@pytest.mark.slow
def test_cancel_kills_what_a_killed_orchestrator_left(cli, tmp_path: Path) -> None:
    args = stubborn_sweep(tmp_path, "orphans")
    sweep = cli.popen(*args, cwd=tmp_path)
    with cleanup(tmp_path, sweep):
        pids = wait_for(lambda: job_pids(tmp_path), timeout_s=120, what="the worker")
        sweep.kill()
        sweep.wait()
        assert alive(pids[1]) and alive(pids[2])  # the worker and its child ignore SIGTERM
        cancelled = cli.run("cancel", "orphans", "--db", tmp_path / "r.db", cwd=tmp_path)
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert_none_left(tmp_path, pids)  # by the time `cancel` returns
    assert the_row(tmp_path)["status"] == "cancelled"
