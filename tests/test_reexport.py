"""The storage-only pass: a finished run's final weights exported again with other settings,
by the trainer (`export_run`) and as a new run row linked to its source (`jepardy export`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from jobs import FakeRun

from jepardy.data.corpus import EmbeddedCorpus, build_embedded
from jepardy.store.states import RunOutcome, RunStatus
from jepardy.store.transitions import open_store
from jepardy.trainer import export_run
from jepardy.trainer import train as trainer
from jepardy.trainer.checkpoint import CHECKPOINT_FILE
from jepardy.trainer.scoring import MODEL_FILE


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedCorpus:
    return build_embedded(tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="module")
def source_run(corpus, tmp_path_factory) -> tuple[Path, dict]:
    """A real (in-process) run of the trainer's entry point: run.json in, result.json out."""
    run_dir = tmp_path_factory.mktemp("runs") / "source0000000001"
    run_dir.mkdir()
    params = {
        "data_dir": str(corpus.sp1024_dir),
        "tokenizer_path": str(corpus.tokenizer_model),
        "n_layers": 2,
        "d_model": 32,
        "seq_len": 64,
        "train_batch_tokens": 512,
        "val_max_tokens": 1024,
        "iterations": 4,
        "eval_stride": 32,
        "zstd_level": 3,
        "device": "cpu",
        "seed": 1,
    }
    config = run_dir / "run.json"
    config.write_text(json.dumps({"run_id": run_dir.name, "params": params}))
    assert trainer.main(["--config", str(config), "--out", str(run_dir)]) == 0
    return run_dir, json.loads((run_dir / "result.json").read_text())


def reexport(run_dir: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code = export_run.main(["--run-dir", str(run_dir), "--out", str(out), *extra])
    return code, json.loads((out / "result.json").read_text())


def test_reexport_with_the_runs_settings_reproduces_its_artifact(source_run, tmp_path):
    run_dir, source = source_run
    assert (run_dir / CHECKPOINT_FILE).is_file()
    code, again = reexport(run_dir, tmp_path / "same")
    assert code == 0 and again["status"] == "done", again
    # The same bytes and the same scores as the training run's own export.
    assert (tmp_path / "same" / MODEL_FILE).read_bytes() == (run_dir / MODEL_FILE).read_bytes()
    for field in ("val_bpb", "val_loss", "sliding_val_bpb", "model_bytes", "artifact_bytes"):
        assert again[field] == source[field], field
    assert again["parent_run"] == run_dir.name
    assert again["code_bytes"] == source["code_bytes"]  # the code that trained the weights
    assert again["code_sha256"] == source["code_sha256"]
    assert again["prequant_val_bpb"] == source["prequant_val_bpb"]
    assert "prequant_val_bpb" in again["copied_from_parent"]
    assert again["code_changed_since_run"] == []
    assert again["export_code_files"]["jepardy/trainer/export_run.py"]["bytes"] > 0

    # Twice: the same bytes again.
    _, twice = reexport(run_dir, tmp_path / "twice")
    assert (tmp_path / "twice" / MODEL_FILE).read_bytes() == (
        tmp_path / "same" / MODEL_FILE
    ).read_bytes()
    assert twice["val_bpb"] == again["val_bpb"]


def test_int8_changes_the_bytes_and_the_score(source_run, tmp_path):
    run_dir, source = source_run
    code, int8 = reexport(run_dir, tmp_path / "int8", "--quant-bits", "8", "--zstd-level", "5")
    assert code == 0, int8
    assert (int8["quant_bits"], int8["zstd_level"]) == (8, 5)
    assert int8["model_bytes"] == (tmp_path / "int8" / MODEL_FILE).stat().st_size
    assert int8["model_bytes"] > source["model_bytes"]  # 8 bits per weight, not 6
    assert int8["artifact_bytes"] == source["code_bytes"] + int8["model_bytes"]
    assert int8["val_bpb"] != source["val_bpb"]
    assert math.isfinite(int8["sliding_val_bpb"])


def test_target_bytes_fits_the_artifact_to_a_budget(source_run, tmp_path):
    """--target-bytes below what the run's export took: a coarser scale floor, the bytes
    within the budget, a worse round-trip error; recorded in result.json."""
    run_dir, source = source_run
    budget = int(source["model_bytes"] * 0.95)  # at toy size most bytes are float16
    code, fitted = reexport(run_dir, tmp_path / "fit", "--target-bytes", str(budget))
    assert code == 0, fitted
    assert fitted["export_budget_bytes"] == budget == fitted["export_target_bytes"]
    assert fitted["model_bytes"] <= budget
    assert fitted["export_floor_unit"] > source["export_floor_unit"] == 0.0
    assert fitted["roundtrip_mse"] > source["roundtrip_mse"]


def test_an_impossible_target_fails_in_one_line(source_run, tmp_path):
    run_dir, _ = source_run
    code, result = reexport(run_dir, tmp_path / "tiny", "--target-bytes", "1000")
    assert code == 1 and result["status"] == "failed"
    assert result["reason"].startswith("error: export: no quantization fits")


def test_a_run_without_final_weights_fails_in_one_line(source_run, tmp_path):
    run_dir, _ = source_run
    empty = tmp_path / "old_run"
    empty.mkdir()
    (empty / "result.json").write_text((run_dir / "result.json").read_text())
    code, result = reexport(empty, tmp_path / "out")
    assert code == 1 and result["status"] == "failed"
    assert "final.pt: not found" in result["reason"] and "\n" not in result["reason"]


@pytest.mark.slow
def test_jepardy_export_records_a_linked_run(cli, source_run, tmp_path):
    """`jepardy export RUN_ID --quant-bits 8`: a new run row with the source's sweep, lane,
    arm, match and seed, variant export=int8+zstd3, parent_run = the source; its own
    config.json, data and runtime; `diff` of the two shows what the export changed."""
    run_dir, source = source_run
    db = tmp_path / "results.db"
    store = open_store(db)

    planned = FakeRun(
        run_dir.name,
        sweep="toy",
        arm="jepa",
        variant="jepa_weight=0.1",
        match="ema=False",
        kind="jepardy",
        params={"seed": 1, "jepa_weight": 0.1},
    )
    store.upsert_sweep("toy", "toy.toml", "")
    store.register_runs([planned], git_commit=None)
    store.mark_running(planned.run_id, "host", 1, str(run_dir), ["train"])
    store.record_result(
        planned.run_id, RunOutcome(status=RunStatus.DONE, result=source, metrics=[])
    )

    args = ("export", planned.run_id, "--quant-bits", "8", "--zstd-level", "3", "--db", db)
    proc = cli.run(*args, "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(jepa_weight=0.1,export=int8+zstd3): done: val_bpb" in proc.stdout

    runs = store.runs_frame("toy").set_index("id")
    assert len(runs) == 2
    new = runs[runs["parent_run"] == planned.run_id].iloc[0]
    assert (new["lane"], new["arm"], new["match"], new["seed"]) == ("main", "jepa", "ema=False", 1)
    assert (new["variant"], new["kind"], new["status"]) == (
        "jepa_weight=0.1,export=int8+zstd3",
        "export",
        "done",
    )
    assert json.loads(new["params"]) == {
        "seed": 1,
        "jepa_weight": 0.1,
        "quant_bits": 8,
        "zstd_level": 3,
    }
    assert new["artifact_bytes"] > source["artifact_bytes"]
    assert new["code_bytes"] == source["code_bytes"]
    assert pd.isna(runs.loc[planned.run_id, "parent_run"])
    out = Path(new["run_dir"])
    assert json.loads((out / "config.json").read_text())["quant_bits"] == 8
    exported = json.loads((out / "result.json").read_text())
    assert exported["data"]["shards"] and exported["python_version"]

    # What differs from its source: the export's own settings and outcome, nothing else.
    diff = cli.run("diff", planned.run_id, new.name, "--db", db, cwd=tmp_path)
    shown = [line.split() for line in diff.stdout.splitlines()]
    assert ["config", "quant_bits", "6", "8"] in shown, diff.stdout
    assert "(unset)" not in diff.stdout.split("config", 1)[1], diff.stdout
    assert f"{new.name} is a re-export of {planned.run_id}" in diff.stdout

    again = cli.run(*args, "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert again.returncode == 0 and ": exists: val_bpb" in again.stdout
    assert len(store.runs_frame("toy")) == 2

    line = cli.refused("export", "nosuchrun0000000", "--db", db, cwd=tmp_path)
    assert line == f"error: export: no run with id or id prefix 'nosuchrun0000000' in {db}"
