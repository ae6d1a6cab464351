"""jepardy's own training log ingests as faithfully as a challenge log: sizes, steps, times
and seed read from its lines, no progress or optimizer-group lines taken for settings, and
an unknown artifact size shown as unknown, never as False."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_trainer_run import run_trainer, tiny_params
from typer.testing import CliRunner

import jepardy
from jepardy.analysis.compare import compare_table
from jepardy.cli.app import app
from jepardy.data.corpus import build_embedded
from jepardy.ingest.ingest import ingest
from jepardy.ingest.labels import Labels
from jepardy.store.show import describe_run
from jepardy.store.transitions import open_store

RUN = Path(__file__).parent / "fixtures" / "logs" / "jepardy_run"
REPO_ROOT = Path(jepardy.__file__).resolve().parent.parent
# What the trainer reports that its log also prints (result.json is the reference).
PRINTED = ("steps", "artifact_bytes", "model_bytes", "code_bytes")
# Printed rounded: 6 significant digits (times, rates) or 6 decimals (metrics).
ROUNDED = ("val_bpb", "val_loss", "prequant_val_bpb", "prequant_val_loss")
MEASURED = ("tokens_per_s",)
NOT_SETTINGS = ("grad_norm_embed", "optimizer_group", "params", "tokens_per_s", "train_loss")


def ingested(log: Path, db: Path) -> tuple[pd.Series, dict]:
    """The one run ingesting `log` into a new store at `db` adds: its row and params."""
    store = open_store(db)
    (run,) = ingest([log], store, Labels(sweep="own")).added
    row = store.runs_frame("own").iloc[0]
    return row, run.identity.params


def assert_faithful(row: pd.Series, params: dict, result: dict) -> None:
    assert row["status"] == "done"
    for name in PRINTED:
        assert row[name] == result[name], name
    for name in ROUNDED:
        assert row[name] == pytest.approx(result[name], abs=5e-7), name
    for name in MEASURED:
        assert row[name] == pytest.approx(result[name], rel=1e-4), name
    # The last step line's clock: the trainer stops its clock a moment later.
    assert row["train_time_s"] == pytest.approx(result["train_time_s"], rel=2e-2)
    assert bool(row["under_cap"]) is result["under_cap"]
    assert not set(NOT_SETTINGS) & params.keys(), params
    assert not [k for k in params if k.startswith("grad_norm")], params


def test_a_jepardy_log_gives_its_sizes_steps_and_times(tmp_path: Path) -> None:
    result = json.loads((RUN / "result.json").read_text())
    row, params = ingested(RUN / "train.log", tmp_path / "results.db")
    assert_faithful(row, params, result)
    assert params["seq_len"] == 128 and params["train_batch_tokens"] == 4096


@pytest.mark.slow
def test_a_fresh_jepardy_run_ingests_with_its_seed_and_budget(tmp_path: Path) -> None:
    corpus = build_embedded(tmp_path / "embedded")
    out = tmp_path / "run"
    params = tiny_params(corpus, iterations=10, wallclock_s=300.0, seed=7)
    proc, result = run_trainer(out, params)
    assert result["status"] == "done", proc.stdout + proc.stderr
    row, ingested_params = ingested(out / "train.log", tmp_path / "results.db")
    assert_faithful(row, ingested_params, result)
    assert row["seed"] == 7
    budget = {k: ingested_params[k] for k in ("iterations", "wallclock_s", "vocab_size")}
    assert budget == {"iterations": 10, "wallclock_s": 300.0, "vocab_size": 1024}


def test_an_unknown_artifact_size_reads_unknown(tmp_path: Path) -> None:
    """A size the source never gave is NULL in the store, <NA> in frames and the compare
    table, None in `show`: not under the cap, and not False either."""
    table = tmp_path / "sizes.csv"
    table.write_text(
        "arm,seed,val_bpb,val_loss,artifact_bytes\n"
        "control,1,1.20,2.02,15000000\n"
        "jepa,1,1.19,2.01,\n"
        "big,1,1.18,2.00,17000000\n"
    )
    db = tmp_path / "results.db"
    store = open_store(db)
    report = ingest([table], store, Labels(sweep="sizes"))
    runs = store.runs_frame("sizes").set_index("arm")
    assert runs.loc["jepa", "under_cap"] is pd.NA
    assert runs.loc["control", "under_cap"] and not runs.loc["big", "under_cap"]
    jepa = next(r.identity.run_id for r in report.added if r.identity.arm == "jepa")
    assert describe_run(store, jepa)["outcome"]["under_cap"] is None
    compared = compare_table(store.runs_frame("sizes")).set_index("arm")["under_cap"]
    assert compared["jepa"] is pd.NA and compared["control"] and not compared["big"]
    out = CliRunner().invoke(app, ["show", jepa, "--db", str(db)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "'under_cap': None" in out.output and "'under_cap': False" not in out.output
    shown = CliRunner().invoke(app, ["report", "--db", str(db), "--format", "json"])
    assert shown.exit_code == 0, shown.output
    caps = {c["arm"]: c["under_cap"] for c in json.loads(shown.output)["compare"]}
    assert caps == {"control": True, "jepa": None, "big": False}
