"""A comparison whose arms were scored differently (test-time training, sliding window, plain
round trip) says so first, before any table, in every format of `jepardy report`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from jepardy.cli.app import app
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import open_store

TITLE = "WARNING: arms scored differently; their deltas compare evaluations, not only arms"


def _db(tmp_path: Path, scoring: dict[str, dict]) -> Path:
    """Lane `main`: control and jepa, 2 seeds each; each arm's results carry `scoring`."""
    store = open_store(tmp_path / "results.db")
    store.upsert_sweep("golf", "golf.toml", "")
    runs = []
    for arm, variant in (("control", ""), ("jepa", "jepa_weight=0.1")):
        for seed in (1, 2):
            run_id = hashlib.sha256(f"{arm}{seed}".encode()).hexdigest()[:16]
            runs.append(RunIdentity(run_id, "golf", "main", arm, variant, "", seed, {"seed": seed}))
    store.register_runs(runs, git_commit=None)
    for run in runs:
        store.mark_running(run.run_id, "node1", 1, f"runs/{run.run_id}", ["torchrun"])
        result = {"val_bpb": 1.2 + run.seed / 100, "val_loss": 2.0, **scoring[run.arm]}
        store.record_result(run.run_id, RunOutcome(status="done", result=result, metrics=[]))
    store.close()
    return tmp_path / "results.db"


def _report(db: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["report", "--db", str(db), *args], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return result.stdout


MIXED = {
    "control": {"metric_tier": "sliding window"},
    "jepa": {"metric_tier": "test-time training"},
}


def test_arms_scored_differently_are_named_before_the_table(tmp_path: Path) -> None:
    db = _db(tmp_path, MIXED)
    text = _report(db)
    assert " ".join(text.split()).startswith(TITLE), text  # a title wraps at the table's width
    first_table = text.index("golf / main")
    assert text.index("test-time training") < first_table
    assert text.index("sliding window") < first_table

    markdown = _report(db, "--format", "markdown")
    assert markdown.startswith(f"### {TITLE}")
    data = json.loads(_report(db, "--format", "json"))
    assert next(iter(data)) == "scored_differently"
    assert {(r["arm"], r["scored by"]) for r in data["scored_differently"]} == {
        ("control", "sliding window"),
        ("jepa", "test-time training"),
    }


def test_a_jepardy_run_is_scored_by_its_eval_stride(tmp_path: Path) -> None:
    db = _db(tmp_path, {"control": {"eval_stride": 0}, "jepa": {"eval_stride": 64}})
    data = json.loads(_report(db, "--format", "json"))
    assert {(r["arm"], r["scored by"]) for r in data["scored_differently"]} == {
        ("control", "round trip"),
        ("jepa", "sliding window"),
    }


def test_arms_scored_alike_get_no_warning(tmp_path: Path) -> None:
    alike = {arm: {"metric_tier": "sliding window"} for arm in ("control", "jepa")}
    db = _db(tmp_path, alike)
    assert "WARNING" not in _report(db)
    assert list(json.loads(_report(db, "--format", "json"))) == ["compare"]
