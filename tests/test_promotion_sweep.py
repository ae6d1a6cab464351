"""A two-lane spec with a promotion rule, run by `jepardy sweep` under torchrun: the screen
runs, the decision is made once from its results and recorded, the orchestrator is killed
with SIGKILL between the lanes, and the resumed sweep runs exactly the recorded winners
without deciding again. `plan` says what it knows before and after the first lane."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from scipy import stats

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "promote_train_gpt.py"
WEIGHTS = (0.05, 0.10, 0.15)


def _spec(tmp_path: Path) -> Path:
    path = tmp_path / "chain.toml"
    path.write_text(f"""\
[sweep]
name = "chain"
seeds = [1, 2]

[trainer]
kind = "script"
path = "{SCRIPT}"

[params]
LEDGER = "{tmp_path / "ledger.txt"}"

[lanes.screen]
control = {{ jepa_weight = 0.0 }}

[lanes.screen.arms.jepa]
jepa_weight = [{", ".join(map(str, WEIGHTS))}]

[lanes.long]
seeds = [3]
params = {{ SLEEP_S = 4.0 }}
control = {{ jepa_weight = 0.0 }}
promote = {{ from = "screen", top = 2, rule = "p < 0.25" }}
""")
    return path


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def _decision_rows(db: Path) -> list[tuple]:
    return _query(db, "SELECT * FROM promotions") + _query(
        db, "SELECT * FROM promotion_candidates ORDER BY position"
    )


def _wait_for_decision(db: Path, proc, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if _query(db, "SELECT count(*) FROM promotions")[0][0]:
                return
        except sqlite3.OperationalError:  # the database or its tables are not there yet
            pass
        time.sleep(0.05)
    pytest.fail("no decision recorded in time")


def _expected_winners(db: Path) -> list[str]:
    """The rule, computed here from the stored screen results: one-sided Welch p < 0.25,
    lowest delta first, at most 2."""
    rows = _query(
        db, "SELECT jepa_weight, val_bpb FROM runs WHERE lane = 'screen' AND status = 'done'"
    )
    values: dict[float, list[float]] = {}
    for weight, bpb in rows:
        values.setdefault(weight, []).append(bpb)
    control = values[0.0]
    passing = []
    for weight in WEIGHTS:
        p = stats.ttest_ind(values[weight], control, equal_var=False, alternative="less").pvalue
        if p < 0.25:
            delta = sum(values[weight]) / len(values[weight]) - sum(control) / len(control)
            passing.append((delta, f"jepa_weight={weight!r}"))
    return [variant for _, variant in sorted(passing)[:2]]


def test_promotion_survives_sigkill_between_lanes(tmp_path: Path, cli) -> None:
    spec, db = _spec(tmp_path), tmp_path / "results.db"
    args = ("--db", db, "--runs-dir", tmp_path / "runs")

    before = cli.run("plan", spec, *args, cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert "chain: 8 runs" in before.stdout
    assert (
        "lane long: pending, decided (p < 0.25, top 2) when lane screen is done: 0 of 8 runs "
        "done; then up to 3 runs"
    ) in before.stdout

    proc = cli.popen("sweep", spec, *args, "--slots", "2", cwd=tmp_path)
    _wait_for_decision(db, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    decided = _decision_rows(db)
    expected = _expected_winners(db)
    assert expected == ["jepa_weight=0.05", "jepa_weight=0.1"]  # the script's design
    selected = _query(db, "SELECT variant FROM promotion_candidates WHERE selected ORDER BY rank")
    assert [variant for (variant,) in selected] == expected
    reasons = dict(_query(db, "SELECT variant, reason FROM promotion_candidates"))
    assert reasons["jepa_weight=0.15"].startswith("fails p < 0.25: p = ")

    after = cli.run("plan", spec, *args, cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert "chain: 11 runs" in after.stdout
    line = "lane long: promoted 2 of 3 from lane screen (p < 0.25, top 2): jepa jepa_weight=0.05, "
    assert line + "jepa jepa_weight=0.1" in after.stdout

    resumed = cli.run("sweep", spec, *args, "--slots", "2", cwd=tmp_path, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _decision_rows(db) == decided  # read back, not decided again
    long = _query(db, "SELECT id, arm, variant, seed, status FROM runs WHERE lane = 'long'")
    assert sorted((arm, variant, seed) for _, arm, variant, seed, _ in long) == [
        ("control", "", 3),
        *(("jepa", variant, 3) for variant in expected),
    ]
    assert {status for *_, status in long} == {"done"}
    ledger = Counter((tmp_path / "ledger.txt").read_text().split())
    assert all(ledger[run_id] == 1 for run_id, *_ in long), ledger

    report = cli.run("report", "--db", db, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "chain / promotion: lane screen -> lane long (p < 0.25, top 2)" in report.stdout
    assert "ranking held? Kendall's tau of the promoted arms' deltas" in report.stdout
