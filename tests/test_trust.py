"""The study's own defects, made loud: an arm compared with a control that ran other code,
other data or another budget is "unmatched", never "significant"; a submission ships only
the code its runs ran."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from jepardy.analysis.compare import compare_table
from jepardy.analysis.submission import SubmissionInfo, export_submission
from jepardy.errors import UserError
from jepardy.spec.identity import RunIdentity
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import Store, open_store

CODE_A = "a" * 64
CODE_B = "b" * 64


def _record(store: Store, arm: str, seed: int, val_bpb: float, code: str, **params) -> str:
    params = {"jepa_weight": 0.1 if arm == "jepa" else 0.0, **params, "seed": seed}
    run_id = hashlib.sha256(repr((arm, sorted(params.items()), code)).encode()).hexdigest()[:16]
    run = RunIdentity(run_id, "trust", "lane", arm, "", "", seed, params, 1, "jepardy")
    store.register_runs([run], git_commit=None)
    result = {
        "status": "done",
        "val_bpb": val_bpb,
        "val_loss": val_bpb * 0.6931,
        "artifact_bytes": 15_000_000,
        "code_sha256": code,
    }
    store.record_result(run_id, RunOutcome(status="done", result=result, metrics=[]))
    return run_id


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = open_store(tmp_path / "results.db")
    store.upsert_sweep("trust", "trust.toml", "")
    return store


def _verdicts(store: Store) -> dict[str, str]:
    table = compare_table(store.runs_frame())
    return dict(zip(table["arm"].astype(str), table["verdict"], strict=True))


def test_a_matched_arm_with_a_clear_gain_is_significant(store: Store) -> None:
    for seed, (control, arm) in enumerate([(1.30, 1.20), (1.31, 1.21), (1.29, 1.19)], 1):
        _record(store, "control", seed, control, CODE_A)
        _record(store, "jepa", seed, arm, CODE_A)
    assert _verdicts(store)["jepa"] == "beats margin"


def test_control_on_other_code_is_unmatched_however_large_the_gain(store: Store) -> None:
    for seed, (control, arm) in enumerate([(1.30, 1.20), (1.31, 1.21), (1.29, 1.19)], 1):
        _record(store, "control", seed, control, CODE_B)
        _record(store, "jepa", seed, arm, CODE_A)
    table = compare_table(store.runs_frame())
    arm = table[table["arm"] == "jepa"].iloc[0]
    assert arm["verdict"] == "unmatched: code_sha256"
    assert arm["unmatched"] == "code_sha256"
    assert not arm["beats_margin"]


def test_the_study_situation_other_code_other_seeds_and_budget(store: Store) -> None:
    # The headline: 3 JEPA seeds against the closest earlier runs, which ran other code,
    # other seeds and another budget. A verdict there would be a guess.
    for seed, value in zip((1337, 42, 2025), (1.1230, 1.1227, 1.1233), strict=True):
        _record(store, "jepa", seed, value, CODE_A, wallclock_s=600.0)
    for seed, value in zip((7, 8, 9), (1.1235, 1.1229, 1.1236), strict=True):
        _record(store, "control", seed, value, CODE_B, wallclock_s=590.0)
    verdict = _verdicts(store)["jepa"]
    assert verdict == "unmatched: code_sha256, wallclock_s"
    assert "significant" not in verdict


def test_data_and_budget_params_must_match(store: Store) -> None:
    for seed in (1, 2):
        _record(
            store, "control", seed, 1.30 + seed / 100, CODE_A, data_dir="data/a", iterations=100
        )
        _record(store, "jepa", seed, 1.20 + seed / 100, CODE_A, data_dir="data/b", iterations=200)
    assert _verdicts(store)["jepa"] == "unmatched: data_dir, iterations"


def test_a_group_mixing_code_versions_is_unmatched(store: Store) -> None:
    for seed in (1, 2, 3):
        _record(store, "control", seed, 1.30 + seed / 100, CODE_A)
        _record(store, "jepa", seed, 1.20 + seed / 100, CODE_A if seed < 3 else CODE_B)
    assert _verdicts(store)["jepa"] == "unmatched: code_sha256"


def test_export_submission_ships_only_the_code_that_ran(store: Store, tmp_path: Path) -> None:
    script = tmp_path / "train_gpt.py"
    script.write_text("print('the script that ran')\n")
    ran = hashlib.sha256(script.read_bytes()).hexdigest()
    ids = [_record(store, "jepa", seed, 1.2 + seed / 1000, ran) for seed in (1, 2, 3)]
    db = tmp_path / "results.db"
    done = export_submission(
        db, ids, tmp_path / "ok", SubmissionInfo("x", script=script, force=True)
    )
    assert done.n == 3
    other = tmp_path / "shipped.py"
    other.write_text("print('a later edit')\n")
    with pytest.raises(UserError, match=r"--script: .*shipped.py has sha256 .* but the runs ran"):
        export_submission(db, ids, tmp_path / "bad", SubmissionInfo("x", script=other, force=True))


def test_export_submission_refuses_runs_of_different_code(store: Store, tmp_path: Path) -> None:
    ids = [_record(store, "jepa", 1, 1.2, CODE_A), _record(store, "jepa", 2, 1.2, CODE_B)]
    with pytest.raises(UserError, match="the runs ran different or unrecorded code"):
        export_submission(tmp_path / "results.db", ids, tmp_path / "out", SubmissionInfo("x"))
