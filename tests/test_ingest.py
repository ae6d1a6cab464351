"""`jepardy ingest` into a real SQLite store: a record folder, log files with several runs
and failures, results tables; ingesting twice adds nothing; mistakes are one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from jepardy.cli.app import app
from jepardy.errors import UserError
from jepardy.ingest.batch import IngestReport
from jepardy.ingest.ingest import ingest
from jepardy.ingest.labels import Labels, arm_from_path, parse_assignments, seed_from_path
from jepardy.store.transitions import Store, open_store

FIXTURES = Path(__file__).parent / "fixtures"
RECORD = FIXTURES / "records" / "2026-03-20_Fake Record"
LOGS = FIXTURES / "logs"
CSV = FIXTURES / "tables" / "jepa_weight_grid.csv"
SWEEP = "ingested:2026-03-20_Fake Record"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "results.db")


def frame(store: Store, sweep: str) -> pd.DataFrame:
    return store.runs_frame(sweep).set_index("seed", drop=False)


def test_record_folder_becomes_done_runs_with_provenance(store: Store) -> None:
    report = ingest([RECORD], store)
    assert report.sweeps == [SWEEP]
    assert sorted(r.source for r in report.added) == [
        "train_seed1.log run 1",
        "train_seed2.log run 1",
    ]
    notes = "\n".join(report.notes)
    assert "logs/8f3a0c.txt run 1: a copy of train_seed1.log run 1" in notes
    assert "requirements.txt: not a train log" in notes
    assert "README.md: 1 results table(s) not ingested" in notes
    runs = frame(store, SWEEP)
    assert list(runs["seed"]) == [1, 2]
    assert set(runs["status"]) == {"done"} and set(runs["kind"]) == {"ingested"}
    assert set(runs["lane"]) == {"logs"} and set(runs["arm"]) == {"train"}
    assert runs.loc[1, "val_bpb"] == 1.20011111 and runs.loc[2, "val_bpb"] == 1.20033333
    assert runs.loc[1, "val_loss"] == 2.02611111
    assert runs.loc[1, "artifact_bytes"] == 15_863_489 and runs.loc[2, "steps"] == 13791
    assert runs.loc[1, "code_bytes"] == 47_600 and bool(runs.loc[1, "under_cap"])
    # printed settings are params under jepardy's names, in the typed columns
    assert set(runs["jepa_weight"]) == {0.1} and set(runs["wallclock_s"]) == {600.0}
    assert set(runs["nproc"]) == {8}
    params = json.loads(runs.loc[2, "params"])
    assert params["seed"] == 2 and params["seq_len"] == 1024
    result = json.loads(runs.loc[2, "result"])
    assert result["metric"] == "final_int8_zlib_roundtrip_exact"
    assert result["provenance"]["val_bpb"] == {
        "line": 15,
        "label": "final_int8_zlib_roundtrip_exact",
    }
    assert result["source"]["relpath"] == "train_seed2.log"
    assert result["source"]["lines"] == [1, 15]
    # submission.json's number is kept beside the log's, and the disagreement flagged
    assert result["submission"]["val_bpb"] == 1.2004
    assert result["flags"] == ["submission.json seed 2 val_bpb 1.2004 != log 1.20033333 (line 15)"]
    assert json.loads(runs.loc[1, "result"])["flags"] == []


def test_record_folder_checks_submission_against_its_logs(store: Store) -> None:
    report = ingest([RECORD], store)
    assert [(c.ok, c.text.split(": ", 1)[1]) for c in report.checks] == [
        (
            False,
            "val_bpb 1.20011111 is the best seed (train_seed1.log), not the mean of 2 log(s), "
            "1.20022222",
        )
    ]
    sweep = pd.read_sql("sweeps", store.engine).set_index("name").loc[SWEEP]
    (described,) = json.loads(sweep["spec_text"])
    assert described["submission"]["p_value"] == "<0.001"
    assert described["checks"][0]["ok"] is False
    assert sorted(described["files"]) == ["logs/8f3a0c.txt", "train_seed1.log", "train_seed2.log"]


def test_ingesting_twice_adds_nothing(store: Store, tmp_path: Path) -> None:
    first = ingest([RECORD, LOGS / "appended_runs.log"], store)
    before = store.runs_frame()
    second = ingest([RECORD, LOGS / "appended_runs.log"], store)
    assert second.added == [] and len(second.existing) == len(first.added) == 5
    after = store.runs_frame()
    pd.testing.assert_frame_equal(before, after)
    # a copy of the folder elsewhere is the same runs (paths are relative to the folder)
    copy = tmp_path / "elsewhere" / RECORD.name
    shutil.copytree(RECORD, copy)
    assert ingest([copy], store).added == []


def test_log_files_with_several_runs_truncations_and_crashes(store: Store) -> None:
    files = ["appended_runs.log", "truncated_seed7.log", "crash_seed3.log"]
    report = ingest([LOGS / f for f in files], store, Labels(sweep="imported"))
    assert report.sweeps == ["imported"]
    runs = store.runs_frame("imported")
    got = [
        (r.arm, r.variant, r.seed, r.status, r.reason.split(" (line")[0]) for r in runs.itertuples()
    ]
    assert got == [
        ("appended_runs", "attempt:1", 42, "done", ""),
        ("appended_runs", "attempt:2", 42, "failed", "no final metric line: the log ends at step 300/20000"),  # noqa: E501
        ("appended_runs", "", 43, "done", ""),
        ("truncated", "", 7, "failed", "no final metric line: the log ends at step 3000/20000"),
        ("crash", "", 3, "failed", "crashed"),
    ]  # fmt: skip
    assert list(runs["val_bpb"].round(8).fillna(-1)) == [1.19773674, -1, 1.2325, -1, -1]
    crash = runs[runs["arm"] == "crash"].iloc[0]
    assert "torch.OutOfMemoryError" in crash["reason"]
    assert crash["log_tail"].endswith("Tried to allocate 2.00 GiB")
    metrics = pd.read_sql("metrics", store.engine)
    truncated = runs[runs["arm"] == "truncated"].iloc[0]["id"]
    mine = metrics[metrics["run_id"] == truncated]
    assert set(mine["step"]) == {1, 2500, 3000} and set(mine["name"]) == {
        "train_loss",
        "train_time_ms",
        "tokens_per_s",
    }


def test_csv_table_becomes_runs_reportable_like_a_sweep(store: Store, tmp_path: Path) -> None:
    report = ingest(
        [CSV], store, Labels(sweep="paper", lane="grid", sets={"ema": "true", "arm": "jepa"})
    )
    assert len(report.added) == 5
    runs = store.runs_frame("paper")
    assert list(runs["variant"]) == [
        "jepa_weight=0.0",
        "jepa_weight=0.05",
        "jepa_weight=0.1",
        "jepa_weight=0.1",
        "jepa_weight=1.0",
    ]
    assert set(runs["lane"]) == {"grid"} and set(runs["arm"]) == {"jepa"}
    assert list(runs["seed"]) == [1, 1, 1, 2, 1]
    assert list(runs["status"]) == ["done"] * 4 + ["failed"]
    assert runs.iloc[4]["reason"] == "line 6: no val_bpb or val_loss value"
    assert list(runs["ema"]) == [True] * 5  # --set fills what the table leaves out
    assert list(runs["wallclock_s"]) == [180.0] * 5
    assert list(runs["artifact_bytes"])[:2] == [15_100_000, 15_100_100]
    result = json.loads(runs.iloc[2]["result"])
    assert result["columns"] == {"notes": "best"}
    assert result["provenance"]["val_bpb"] == {"line": 4, "column": "val_bpb"}
    out = CliRunner().invoke(
        app, ["report", "--db", str(tmp_path / "results.db"), "--sweep", "paper", "--format", "csv"]
    )
    assert out.exit_code == 0, out.output
    assert "jepa_weight=0.05" in out.output and "1.2961" in out.output


def test_readme_tables_ingest_through_the_cli(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    args = ["ingest", str(RECORD / "README.md"), "--db", db, "--map", "TTT gain=-"]
    out = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert out.exit_code == 0, out.output
    assert "ingested 2 new runs (0 failed)" in out.output
    assert "table 1 (line 7): no val_bpb or val_loss column" in out.output
    assert "summary row 'Mean'; skipped" in out.output
    runs = open_store(db).runs_frame(SWEEP)
    assert list(runs["seed"]) == [1, 2] and set(runs["lane"]) == {"table"}
    assert list(runs["val_bpb"]) == [1.20011111, 1.20033333]
    again = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert "ingested 0 new runs (0 failed), 2 already in the store" in again.output


def test_mistakes_are_one_line_at_the_command_line(cli, tmp_path: Path) -> None:
    line = cli.refused("ingest", "missing.log", cwd=tmp_path)
    assert line == (
        "error: missing.log: not found; expected a log (.log, .txt), a table (.csv, .tsv, "
        ".md) or a record folder"
    )


@pytest.mark.parametrize(
    ("paths", "labels", "message"),
    [
        (["spec.toml"], {}, "spec.toml: unknown file type .toml; expected a log"),
        (["submission.json"], {}, "submission.json: ingest the record folder that holds it"),
        ([LOGS / "crash_seed3.log"], {"maps": {"a": "val_bpb"}}, "--map: applies to tables"),
        ([LOGS / "crash_seed3.log"], {"sets": {"seed": "x"}}, "--set seed=x: 'x' is not a int"),
        ([LOGS / "crash_seed3.log"], {"sets": {"seed": "-3"}}, "--set seed=-3: a seed is an"),
        ([CSV], {"maps": {"nope": "val_bpb"}}, "--map nope: no column of that name"),
        ([CSV], {"sets": {"jepa_weight": "heavy"}}, "--set jepa_weight=heavy: 'heavy' is not"),
        ([CSV], {"sweep": "x" * 201}, "sweep 'xxxx"),
        ([CSV], {"sets": {"lane": "x"}}, "--set lane=x: use --lane for the lane"),
    ],
)
def test_mistakes_are_user_errors(
    tmp_path: Path, paths: list, labels: dict, message: str, store: Store
) -> None:
    (tmp_path / "spec.toml").write_text("")
    (tmp_path / "submission.json").write_text("{}")
    paths = [p if isinstance(p, Path) else tmp_path / p for p in paths]
    with pytest.raises(UserError) as err:
        ingest(paths, store, Labels(**labels))
    text = str(err.value).replace(f"{tmp_path}/", "")
    assert text.startswith(message) and "\n" not in text
    assert store.runs_frame().empty


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", " b = x=y "], "--set") == {"a": "1", "b": "x=y"}
    with pytest.raises(UserError, match=r"^--set 'jepa_weight': expected KEY=VALUE$"):
        parse_assignments(["jepa_weight"], "--set")


def test_seeds_and_arms_from_file_names() -> None:
    assert seed_from_path(Path("train_seed42.log")) == 42
    assert seed_from_path(Path("runs/seed_1337/wd_0/train.log")) == 1337
    assert seed_from_path(Path("train_s7.log")) == 7
    assert seed_from_path(Path("hybrid_600s_seq8192.txt")) is None
    assert arm_from_path(Path("train_seed314_rerun_gptq8s.log")) == "train_rerun_gptq8s"
    assert arm_from_path(Path("runs/seed_1337/wd_0p1/train.log")) == "runs/wd_0p1/train"
    assert arm_from_path(Path("seed42.log")) == "run"


def test_report_type_is_plain_data() -> None:
    assert IngestReport().added == []
