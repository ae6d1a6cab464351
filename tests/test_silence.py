"""Nothing is silent: a name that selects nothing says why (the closest name suggested), a
one-value curve or one-budget horizon says what is missing, an empty valid selection says
so, a dead orchestrator's runs show as stale, a lock wait is announced, and every command
that takes run ids resolves them one way (exact id or unique prefix, candidates listed)."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import runsets
from conftest import Cli
from runsets import R

from jepardy.errors import UserError
from jepardy.store import engine
from jepardy.store.show import resolve_run_id
from jepardy.store.states import STALE_AFTER_S
from jepardy.store.transitions import open_store
from jepardy.store.views import resume_command, running_table

SWEEP = "smoke"
LANE = "isolation"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep with a control and one JEPA weight, at one wallclock_s; ids chosen so that
    "ab" names three runs and "abc" one."""
    path = tmp_path_factory.mktemp("silence") / "results.db"
    store = open_store(path)
    match = {"wallclock_s": 180}
    runs = [R(LANE, "control", s, 1.30 + s / 100, match=match) for s in (1, 2)]
    runs += [R(LANE, "jepa", s, 1.29 + s / 100, {"jepa_weight": 0.1}, match) for s in (1, 2)]
    ids = ["ab" + "0" * 14, "abc" + "1" * 13, "ab" + "2" * 14, "ff" + "3" * 14]
    plans = [
        dataclasses.replace(runsets.planned(run, SWEEP), run_id=run_id)
        for run, run_id in zip(runs, ids, strict=True)
    ]
    store.upsert_sweep(SWEEP, "experiments/smoke.toml", "[sweep]\nname = 'smoke'\n")
    store.register_runs(plans, git_commit="abc123")
    for run, plan in zip(runs, plans, strict=True):
        outcome = runsets.RunOutcome(status="done", result=runsets.result(run), metrics=[])
        store.record_result(plan.run_id, outcome)
    return path


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["report", "--sweep", "smok"],
            "error: no sweep 'smok' in {db}; did you mean 'smoke'? sweeps: smoke",
        ),
        (
            ["runs", "--sweep", "smok"],
            "error: no sweep 'smok' in {db}; did you mean 'smoke'? sweeps: smoke",
        ),
        (
            ["runs", "--status", "faild"],
            "error: no status 'faild' in jepardy's run states; did you mean 'failed'? "
            "statuses: pending, running, done, failed, timeout, interrupted, cancelled",
        ),
        (["runs", "--lane", "iso"], "error: no lane 'iso' in the store; lanes: isolation"),
        (
            ["report", "--no-compare", "--curve", "wallclock_s", "--sweep", "smoke"],
            "error: --curve wallclock_s: one value (180) in sweep smoke; a curve needs two or more",
        ),
        (
            ["report", "--horizons", "wallclock_s"],
            "error: --horizons wallclock_s: one value (180) in sweep smoke; horizons need two "
            "or more budgets",
        ),
    ],
)
def test_nothing_to_show_says_why(cli: Cli, db: Path, args: list[str], said: str) -> None:
    assert cli.refused(*args, "--db", db, cwd=db.parent) == said.format(db=db)


def test_a_curve_joined_by_the_control_draws(cli: Cli, db: Path) -> None:
    # One arm value, but the control joins the curve at its own (jepa_weight 0).
    proc = cli.run("report", "--curve", "jepa_weight", "--db", db, cwd=db.parent)
    assert proc.returncode == 0 and "best: 0.1" in proc.stdout, proc.stderr


def test_an_empty_valid_selection_says_so(cli: Cli, db: Path) -> None:
    proc = cli.run("runs", "--status", "failed", "--sweep", SWEEP, "--db", db, cwd=db.parent)
    assert proc.returncode == 0 and proc.stdout == "no failed runs in sweep smoke\n"


def test_a_report_without_done_runs_says_so(cli: Cli, tmp_path: Path) -> None:
    runsets.write(open_store(tmp_path / "r.db"), [R(LANE, "control", 1, None, status="pending")])
    said = cli.refused("report", "--db", "r.db", cwd=tmp_path)
    assert said == "error: report: no done runs in r.db (1 pending); nothing to report yet"


# --- run ids ---


def test_resolver_exact_prefix_ambiguous_unknown(store_url: str) -> None:
    store = open_store(store_url)
    runs = [R(LANE, "control", s, 1.3) for s in (1, 2, 3)]
    plans = [runsets.planned(run) for run in runs]
    ids = ["ab" + "0" * 14, "ab", "ab_" + "1" * 13]  # "ab" is an id and a prefix; "_" literal
    plans = [dataclasses.replace(p, run_id=i) for p, i in zip(plans, ids, strict=True)]
    store.upsert_sweep(runsets.SWEEP, "s.toml", "")
    store.register_runs(plans, git_commit="abc123")
    assert resolve_run_id(store, "ab", "show") == "ab"
    assert resolve_run_id(store, "ab0", "show") == ids[0]
    assert resolve_run_id(store, "ab_", "show") == ids[2]
    with pytest.raises(UserError, match=r"no run with id or id prefix 'a%'"):
        resolve_run_id(store, "a%", "show")
    with pytest.raises(UserError, match=r"ambiguous run id 'a': 3 runs: ab \(isolation"):
        resolve_run_id(store, "a", "show")


AMBIGUOUS = (
    "error: {command}: ambiguous run id 'ab': 3 runs: "
    "ab00000000000000 (isolation/control seed 1), "
    "ab22222222222222 (isolation/jepa/jepa_weight=0.1 seed 1), "
    "abc1111111111111 (isolation/control seed 2); give more of the id"
)


@pytest.mark.parametrize(
    "command", ["show", "logs", "rerun", "export", "export-submission"], ids=str
)
def test_every_command_resolves_run_ids_one_way(cli: Cli, db: Path, command: str) -> None:
    said = cli.refused(command, "ab", "--db", db, cwd=db.parent)
    assert said == AMBIGUOUS.format(command=command)
    said = cli.refused(command, "zz", "--db", db, cwd=db.parent)
    assert said == f"error: {command}: no run with id or id prefix 'zz' in {db}"


@pytest.mark.parametrize("count", ["-3", "0"])
def test_logs_refuses_a_count_below_one(cli: Cli, db: Path, count: str) -> None:
    said = cli.refused("logs", "abc", "-n", count, "--db", db, cwd=db.parent)
    assert said == f"error: logs: --lines {count}: must be >= 1 (the lines from each log's end)"
    shown = cli.run("logs", "abc", "-n", "1", "--db", db, cwd=db.parent)
    assert shown.returncode == 0, shown.stderr


def test_a_unique_prefix_is_the_run(cli: Cli, db: Path, tmp_path: Path) -> None:
    shown = cli.run("show", "abc", "--db", db, cwd=db.parent)
    assert shown.returncode == 0 and "abc1111111111111" in shown.stdout
    # export-submission gets the full id: the submission lists it.
    out = tmp_path / "sub"
    done = cli.run("export-submission", "ff", "--out", out, "--db", db, "--force", cwd=db.parent)
    assert done.returncode == 0, done.stderr
    assert "ff33333333333333" in (out / "submission.json").read_text()
    # export resolves before it looks at the run (a run without a directory is refused).
    said = cli.refused("export", "abc", "--db", db, cwd=db.parent)
    assert said == "error: run abc1111111111111: no run directory recorded"


# --- a dead orchestrator's runs ---


def test_stale_running_runs_say_so() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    beats = [now - timedelta(seconds=5), now - timedelta(seconds=STALE_AFTER_S + 15), None]
    blank = ("lane", "arm", "variant", "match", "seed", "host", "pid", "executor", "job_id")
    rows = [
        {
            "id": run_id,
            "sweep": sweep,
            **dict.fromkeys((*blank, "job_state", "job_nodes", "devices")),
            # As SQLite keeps them: naive UTC text.
            "started_at": now.replace(tzinfo=None).isoformat(" "),
            "heartbeat_at": beat and beat.replace(tzinfo=None).isoformat(" "),
        }
        for run_id, sweep, beat in zip("abc", ["smoke", "smoke", "other"], beats, strict=True)
    ]
    states = running_table(rows, now, {"smoke": "/srv/experiments/smoke.toml"})["state"]
    assert states == [
        "running",
        "running (stale: no heartbeat for 75 s; resume with jepardy sweep "
        "/srv/experiments/smoke.toml)",
        "running (stale: no heartbeat; resume with jepardy sweep SPEC)",
    ]


def test_status_shows_a_dead_orchestrators_run_as_stale(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    store = open_store(path)
    [run_id] = runsets.write(store, [R(LANE, "control", 1, None, status="pending")])
    store.mark_running(run_id, "gone-host", 1, f"runs/{runsets.SWEEP}/{run_id}", ["torchrun"])
    old = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (old, run_id))
    proc = cli.run("status", "--db", "results.db", cwd=tmp_path)
    assert proc.returncode == 0
    assert "running (stale: no heartbeat for 30" in proc.stdout
    # The default store and run directories: no --db, no --runs-dir. The spec path was
    # recorded relative (as older sweeps did) and is not found here: said so.
    said = " ".join(proc.stdout.split())
    assert (
        "resume with jepardy sweep study.toml (from where that sweep ran: its spec path was "
        "recorded relative))"
    ) in said, proc.stdout


def test_the_resume_command_names_the_store_the_run_directories_and_the_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = "/srv/specs/smoke.toml"
    assert resume_command(spec, None, str(tmp_path / "runs/smoke/abc"), "local") == (
        "jepardy sweep /srv/specs/smoke.toml"
    )
    assert resume_command(spec, "/data/my store.db", "/scratch/runs/smoke/abc", "slurm") == (
        "jepardy sweep /srv/specs/smoke.toml --db '/data/my store.db' --runs-dir /scratch/runs "
        "--executor slurm"
    )
    (tmp_path / "here.toml").write_text("")
    assert resume_command("here.toml", None, None, None) == "jepardy sweep here.toml"


# --- the write lock ---


def test_a_long_lock_wait_is_announced_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(engine, "_LOCK_NOTICE_S", 0.2)
    path = tmp_path / "results.db"
    store = open_store(path)
    caplog.set_level(logging.WARNING, logger=engine.__name__)
    for name in ("one", "two"):  # two waits, one line
        holder = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.6, holder.execute, ["ROLLBACK"])
        release.start()
        store.upsert_sweep(name, f"{name}.toml", "")
        release.join()
        holder.close()
    said = [r.getMessage() for r in caplog.records if r.name == engine.__name__]
    assert said == [f"waiting for the write lock on {path}, held by another process..."]
    store.upsert_sweep("three", "three.toml", "")  # no wait: nothing said
    assert len(caplog.records) == 1


def test_the_demos_curve_joins_the_control(cli: Cli, tmp_path: Path) -> None:
    # As experiments/smoke.toml: jepa_weight a scalar of the arm, not an arm axis. The arm
    # changed it, so the control joins its curve at its own value: two points.
    runs = [R(LANE, "control", s, 1.3, extra={"jepa_weight": 0.0, "lr": 0.003}) for s in (1, 2)]
    runs += [R(LANE, "jepa", s, 1.4, extra={"jepa_weight": 0.1, "lr": 0.003}) for s in (1, 2)]
    runsets.write(open_store(tmp_path / "results.db"), runs)
    proc = cli.run("report", "--no-compare", "--curve", "jepa_weight", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    points = [line.split()[:3] for line in proc.stdout.splitlines() if "  control  " in line]
    points += [line.split()[:3] for line in proc.stdout.splitlines() if "  jepa  " in line]
    assert points == [["0", "control", "2"], ["0.1", "jepa", "2"]]
    assert "best: 0 (1.3000)" in proc.stdout
    # A param the arm did not change is one value still, and says so.
    said = cli.refused("report", "--curve", "lr", cwd=tmp_path)
    assert said == "error: --curve lr: one value (0.003) in sweep study; a curve needs two or more"


def test_values_spread_over_arms_are_no_curve(tmp_path: Path) -> None:
    from jepardy.analysis.curves import curve_table
    from jepardy.store.frames import load_runs

    store = open_store(tmp_path / "results.db")
    runs = [R(LANE, arm, 1, 1.3, {"jepa_weight": w}) for arm, w in (("a", 0.1), ("b", 0.2))]
    runsets.write(store, [dataclasses.replace(run, seed=s) for run in runs for s in (1, 2)])
    with pytest.raises(UserError) as raised:
        curve_table(load_runs(store), "jepa_weight")
    assert str(raised.value) == (
        "--curve jepa_weight: no arm ran two or more of its values (0.1, 0.2) in sweep study; "
        "a curve needs two or more"
    )
