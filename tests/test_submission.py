"""`jepardy export-submission`: submission.json and the README results table; runs outside
the 10min_16mb track refused unless --force, and then said so."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import runsets
from runsets import R
from typer.testing import CliRunner

from jepardy.analysis.submission import SubmissionInfo, export_submission
from jepardy.cli.app import app
from jepardy.errors import UserError
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import open_store

VALUES = {1: 1.1228, 2: 1.1232, 3: 1.1230, 4: 1.1300}
# The result sets record no hardware, budget, script or logs: forced (see the track tests).
INFO = SubmissionInfo(
    name="JEPA aux loss", author="A. Golfer", github_id="golfer", date="2026-04-01", force=True
)


@pytest.fixture
def ids(tmp_path: Path) -> dict[str, str]:
    runs = [R("final", "jepa", s, v, {"jepa_weight": 0.1}) for s, v in VALUES.items()]
    runs.append(R("final", "jepa", 5, None, {"jepa_weight": 0.1}, status="failed"))
    runs.append(R("final", "control", 1, 1.13, artifact_bytes=16_000_001))
    runs.append(R("final", "control", 2, 1.13))
    names = ["s1", "s2", "s3", "s4", "s5", "big", "c2"]
    store = open_store(tmp_path / "results.db")
    return dict(zip(names, runsets.write(store, runs), strict=True))


def test_three_seeds_json_and_readme(tmp_path: Path, ids: dict[str, str]) -> None:
    chosen = [ids["s3"], ids["s1"], ids["s2"]]
    out = export_submission(tmp_path / "results.db", chosen, tmp_path / "sub", INFO)
    data = json.loads(out.submission_json.read_text())
    assert data["name"] == "JEPA aux loss" and data["track"] == "10min_16mb"
    assert data["date"] == "2026-04-01" and data["github_id"] == "golfer"
    assert data["seeds"] == [1, 2, 3]
    assert data["val_bpb"] == pytest.approx(1.1230)
    assert data["val_bpb_std"] == pytest.approx(0.0002)  # 1.1228, 1.1230, 1.1232
    assert data["val_loss"] == pytest.approx(1.1230 * math.log(2))
    assert data["seed_results"]["2"] == {
        "val_bpb": 1.1232,
        "val_loss": pytest.approx(1.1232 * math.log(2)),
        "artifact_bytes": 15_000_000,
        "run_id": ids["s2"],
    }
    assert data["bytes_total"] == 15_000_000 and data["artifact_under_cap"] is True
    # Seed 4 is done but left out, seed 5 failed: the mean is over a subset, and it says so.
    assert out.selection_note == (
        "mean over 3 of 5 registered seeds (done seeds left out: 4; registered seeds not done: 5)"
    )
    assert data["jepardy"]["selection"] == out.selection_note
    readme = out.readme.read_text().splitlines()
    assert readme[0] == "# JEPA aux loss"
    assert "| seed | val_bpb | val_loss | artifact bytes | run |" in readme
    assert f"| 1 | 1.12280 | {1.1228 * math.log(2):.5f} | 15,000,000 | {ids['s1']} |" in readme
    assert any(line.startswith("| mean | 1.12300 |") for line in readme)
    assert any(line.startswith("| std | 0.00020 |") for line in readme)
    assert f"Selection: {out.selection_note}." in readme


def test_readme_text_outside_the_block_is_kept(tmp_path: Path, ids: dict[str, str]) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "README.md").write_text("# My record\n\nHow it works.\n")
    db = tmp_path / "results.db"
    export_submission(db, [ids["s1"], ids["s2"]], sub, INFO)
    export_submission(db, [ids["s1"], ids["s2"], ids["s3"]], sub, INFO)
    text = (sub / "README.md").read_text()
    assert text.startswith("# My record\n\nHow it works.\n\n## Results\n")
    assert text.count("<!-- jepardy:results -->") == 1 and "| 3 | 1.12300 |" in text


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["s1", "nope"], r"^export-submission: unknown run ids: nope$"),
        (["s1", "s5"], r"^export-submission: runs not done: \w+ \(failed\)$"),
        (["s1", "c2"], r"^export-submission: the runs are different variants"),
        (["big"], r"^export-submission: artifacts over the 16,000,000-byte cap .*16,000,001"),
    ],
)
def test_refusals(tmp_path: Path, ids: dict[str, str], names: list[str], message: str) -> None:
    chosen = [ids.get(name, name) for name in names]
    with pytest.raises(UserError, match=message):
        export_submission(tmp_path / "results.db", chosen, tmp_path / "sub", INFO)
    assert not (tmp_path / "sub").exists()


def test_cli(tmp_path: Path, ids: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app,
        [
            "export-submission",
            ids["s1"],
            ids["s2"],
            ids["s3"],
            ids["s4"],
            "--db",
            str(tmp_path / "results.db"),
            "--out",
            str(tmp_path / "sub"),
            "--name",
            "JEPA",
            "--force",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "val_bpb 1.12475 ± 0.00350 over 4 seeds" in result.output
    assert "selection: mean over 4 of 5 registered seeds" in result.output
    assert json.loads((tmp_path / "sub" / "submission.json").read_text())["name"] == "JEPA"


# --- the track ---

H100_RESULT = {"device": "NVIDIA H100 80GB HBM3", "world_size": 8, "train_time_s": 599.2}


def _track_runs(tmp_path: Path, result: dict, wallclock_s: float | None) -> tuple[Path, list[str]]:
    """Two seeds as a sweep records them: a run directory with its train.log, result.json
    fields (`result`) and the code of tmp_path/train_gpt.py."""
    script = tmp_path / "train_gpt.py"
    script.write_text("print('the script that ran')\n")
    code = hashlib.sha256(script.read_bytes()).hexdigest()
    store = open_store(tmp_path / "results.db")
    store.upsert_sweep("track", "track.toml", "")
    ids = []
    for seed in (1, 2):
        params = {"seed": seed, **({"wallclock_s": wallclock_s} if wallclock_s else {})}
        run = RunIdentity(f"run{seed}", "track", "main", "jepa", "", "", seed, params, 8, "jepardy")
        store.register_runs([run], git_commit=None)
        run_dir = tmp_path / "runs" / run.run_id
        run_dir.mkdir(parents=True)
        (run_dir / "train.log").write_text(f"seed:{seed}\n")
        store.mark_running(run.run_id, "host", 1, str(run_dir), ["torchrun"])
        done = {"status": "done", "val_bpb": 1.12 + seed / 1e4, "val_loss": 0.78}
        done |= {"artifact_bytes": 15_000_000, "code_sha256": code, **result}
        store.record_result(run.run_id, RunOutcome(status="done", result=done, metrics=[]))
        ids.append(run.run_id)
    return script, ids


def test_runs_that_meet_the_track_ship_their_script_and_logs(tmp_path: Path) -> None:
    script, ids = _track_runs(tmp_path, H100_RESULT, wallclock_s=600.0)
    info = SubmissionInfo("JEPA", script=script)
    done = export_submission(tmp_path / "results.db", ids, tmp_path / "sub", info)
    assert done.track_problems == []
    assert (tmp_path / "sub" / "train_gpt.py").read_bytes() == script.read_bytes()
    assert (tmp_path / "sub" / "train_seed2.log").read_text() == "seed:2\n"
    data = json.loads(done.submission_json.read_text())
    assert data["hardware"] == "8x NVIDIA H100 80GB HBM3"
    assert data["jepardy"]["track_problems"] == []
    assert "Not a 10min_16mb" not in done.readme.read_text()


def test_runs_outside_the_track_are_refused_unless_forced(tmp_path: Path) -> None:
    cpu = {"device": "cpu", "world_size": 1, "train_time_s": 50.3}
    _, ids = _track_runs(tmp_path, cpu, wallclock_s=None)
    (tmp_path / "runs" / ids[1] / "train.log").unlink()
    why = (
        "ran on 1x cpu, not 8x H100 (seeds 1, 2); no wallclock_s budget, the track's cap is "
        "600 s (seeds 1, 2); no train_gpt.py to ship (--script); no log for seed 2"
    )
    with pytest.raises(UserError) as refused:
        export_submission(tmp_path / "results.db", ids, tmp_path / "sub", SubmissionInfo("x"))
    assert str(refused.value) == (
        f"export-submission: not a 10min_16mb submission: {why}; --force writes it anyway, "
        "saying so"
    )
    assert not (tmp_path / "sub").exists()
    args = ["export-submission", *ids, "--db", str(tmp_path / "results.db")]
    forced = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "sub"), "--force"])
    assert forced.exit_code == 0, forced.output
    assert forced.stderr == f"warning: not a 10min_16mb submission: {why}\n"
    data = json.loads((tmp_path / "sub" / "submission.json").read_text())
    assert data["jepardy"]["track_problems"] == why.split("; ")
    readme = (tmp_path / "sub" / "README.md").read_text()
    assert f"Not a 10min_16mb submission: {why}." in readme
    assert (tmp_path / "sub" / "train_seed1.log").exists()


def test_a_budget_or_training_over_600_s_is_outside_the_track(tmp_path: Path) -> None:
    script, ids = _track_runs(tmp_path, {**H100_RESULT, "train_time_s": 612.0}, 900.0)
    with pytest.raises(UserError, match=r"submission: wallclock_s over 600 s \(seeds 1, 2\); "):
        export_submission(tmp_path / "results.db", ids, tmp_path / "sub", SubmissionInfo("x"))
    with pytest.raises(UserError, match=r"; trained over 600 s \(seeds 1, 2\); --force"):
        export_submission(
            tmp_path / "results.db", ids, tmp_path / "sub", SubmissionInfo("x", script=script)
        )
