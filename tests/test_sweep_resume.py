"""A sweep killed with SIGKILL at random moments and resumed each time ends with every run
done exactly once: none lost, none run twice, none duplicated in the store."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "ledger_train_gpt.py"
N_RUNS = 8


def _spec(tmp_path: Path) -> Path:
    seeds = ", ".join(str(s) for s in range(1, N_RUNS + 1))
    path = tmp_path / "spec.toml"
    path.write_text(f"""\
[sweep]
name = "resume"
seeds = [{seeds}]

[trainer]
kind = "script"
path = "{SCRIPT}"

[params]
SLEEP_S = 1.5
LEDGER = "{tmp_path / "ledger.txt"}"

[lanes.main]
control = {{}}
""")
    return path


def _rows(db: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, status, attempts FROM runs").fetchall()


def test_sigkill_at_random_moments_then_resume(tmp_path: Path, cli) -> None:
    spec, db = _spec(tmp_path), tmp_path / "results.db"
    args = ("sweep", spec, "--db", db, "--runs-dir", tmp_path / "runs", "--slots", "2")
    rng = random.Random(20261125)
    for _ in range(3):
        proc = cli.popen(*args, cwd=tmp_path)
        time.sleep(rng.uniform(1.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = cli.run(*args, cwd=tmp_path, timeout=240)
    assert final.returncode == 0, final.stdout + final.stderr
    rows = _rows(db)
    assert len(rows) == N_RUNS == len({run_id for run_id, _, _ in rows})
    assert {status for _, status, _ in rows} == {"done"}
    # The kills did hit running jobs: some runs were claimed again after one.
    assert sum(attempts for _, _, attempts in rows) > N_RUNS
    ledger = Counter((tmp_path / "ledger.txt").read_text().split())
    assert set(ledger) == {run_id for run_id, _, _ in rows}
    assert set(ledger.values()) == {1}, f"runs completed more than once: {ledger}"
    again = cli.run(*args, cwd=tmp_path, timeout=120)
    assert "0 done, 0 failed" in again.stdout and f"of {N_RUNS}" in again.stdout
