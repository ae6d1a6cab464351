"""The trainer as the orchestrator runs it: a real process, run.json in, result.json out."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import jepardy
from jepardy.data.corpus import EmbeddedCorpus, build_embedded

pytestmark = pytest.mark.slow

REPO_ROOT = Path(jepardy.__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).with_name("torchrun")
ITERATIONS = 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedCorpus:
    return build_embedded(tmp_path_factory.mktemp("embedded"))


def tiny_params(corpus: EmbeddedCorpus, **overrides) -> dict:
    return {
        "data_dir": str(corpus.sp1024_dir),
        "tokenizer_path": str(corpus.tokenizer_model),
        "vocab_size": 1024,
        "n_layers": 2,
        "d_model": 32,
        "n_heads": 4,
        "n_kv_heads": 2,
        "seq_len": 64,
        "train_batch_tokens": 512,  # 8 sequences: 4 per rank with 2 ranks
        "val_batch_tokens": 4096,
        "val_max_tokens": 4096,
        "iterations": ITERATIONS,
        "warmup_steps": 5,
        "log_every": 5,
        "zstd_level": 3,
        "device": "cpu",
        **overrides,
    }


def run_trainer(
    out: Path, params: dict, nproc: int = 0
) -> tuple[subprocess.CompletedProcess, dict]:
    """Write run.json, run the trainer (torchrun when nproc > 0), return (process, result)."""
    out.mkdir(parents=True)
    config = out / "run.json"
    config.write_text(json.dumps({"run_id": out.name, "params": params}))
    trainer = ["-m", "jepardy.trainer", "--config", str(config), "--out", str(out)]
    if nproc:
        argv = [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", *trainer]
    else:
        argv = [sys.executable, *trainer]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    result_path = out / "result.json"
    assert result_path.is_file(), proc.stdout + proc.stderr
    return proc, json.loads(result_path.read_text())


def metric_points(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def jepa_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "jepa"
    return out, *run_trainer(out, tiny_params(corpus, jepa_weight=0.1))


@pytest.fixture(scope="module")
def control_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "control"
    return out, *run_trainer(out, tiny_params(corpus, jepa_weight=0.0))


def test_jepa_run_result(jepa_run):
    out, proc, result = jepa_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["status"] == "done" and result["reason"] == ""
    assert result["run_id"] == "jepa"
    assert math.isfinite(result["val_bpb"]) and result["val_bpb"] > 0
    assert math.isfinite(result["prequant_val_bpb"]) and result["prequant_val_bpb"] > 0
    # A 1024-way model after 20 steps is still worse than 4 bits per token, but it learned:
    # below the uniform guess of ln(1024) nats per token.
    assert result["val_loss"] < math.log(1024)
    assert result["steps"] == ITERATIONS
    assert result["world_size"] == 1 and result["device"] == "cpu"

    assert result["model_bytes"] == (out / "model.intq.zst").stat().st_size
    assert result["artifact_bytes"] == result["code_bytes"] + result["model_bytes"]
    assert result["under_cap"] is True
    assert result["code_bytes"] == sum(f["bytes"] for f in result["code_files"].values())
    assert "jepardy/trainer/train.py" in result["code_files"]
    assert "jepardy/trainer/__main__.py" in result["code_files"]  # it ran too
    for path, entry in result["code_files"].items():
        data = (REPO_ROOT / path).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    assert math.isfinite(result["jepa_loss"]) and result["jepa_loss"] > 0
    assert math.isfinite(result["jepa_pred_std"])
    assert set(result["group_drift"]) == {"embed", "matrix", "scalar", "jepa_predictor"}
    for group, drift in result["group_drift"].items():
        assert drift > 0, f"optimizer group {group} did not move"

    points = metric_points(out)
    train_loss = [p for p in points if p["name"] == "train_loss"]
    assert [p["step"] for p in train_loss] == [5, 10, 15, 20]
    assert all(math.isfinite(p["value"]) for p in train_loss)
    # The training clock at each log step, for curves over time; the result's is the last.
    clock = [p for p in points if p["name"] == "train_time_ms"]
    assert [p["step"] for p in clock] == [5, 10, 15, 20]
    times_ms = [p["value"] for p in clock]
    assert 0 < times_ms[0] < times_ms[-1] <= result["train_time_s"] * 1000
    assert any(p["name"] == "jepa_loss" for p in points)
    assert json.loads((out / "config.json").read_text())["jepa_weight"] == 0.1


def test_control_run_has_no_jepa(control_run):
    out, proc, result = control_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["status"] == "done"
    assert result["jepa_loss"] is None and result["jepa_pred_std"] is None
    assert set(result["group_drift"]) == {"embed", "matrix", "scalar"}
    assert all(v > 0 for v in result["group_drift"].values())
    names = {p["name"] for p in metric_points(out)}
    assert "train_loss" in names and "jepa_loss" not in names


def test_torchrun_two_ranks_matches_one_process(corpus, control_run, tmp_path):
    """With the averaged gradient clipped (not each rank's own), 2 ranks = 1 process."""
    _, _, single = control_run
    params = tiny_params(corpus, jepa_weight=0.0, grad_clip_before_average=False)
    proc, result = run_trainer(tmp_path / "ddp", params, nproc=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["status"] == "done" and result["world_size"] == 2
    assert result["steps"] == single["steps"]
    assert result["val_tokens"] == single["val_tokens"]
    assert result["val_bytes"] == single["val_bytes"]
    assert result["val_bpb"] == pytest.approx(single["val_bpb"], abs=1e-4)


def test_clipping_each_rank_before_averaging_is_what_changes_a_two_rank_run(corpus, tmp_path):
    """The record clips each rank's gradient before the all-reduce. With clipping active
    (a low threshold), that run differs from clipping the average (which equals one
    process: test_torchrun_two_ranks_matches_one_process). Without clipping both orders are
    the same code path."""
    bpb = {}
    for first in (True, False):
        params = tiny_params(corpus, grad_clip=0.05, grad_clip_before_average=first)
        proc, result = run_trainer(tmp_path / f"first_{first}", params, nproc=2)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert result["status"] == "done"
        bpb[first] = result["val_bpb"]
    assert bpb[True] != pytest.approx(bpb[False], abs=1e-6)


def test_non_finite_loss_fails_with_reason_nan(corpus, tmp_path):
    # Block weights of 1e20: the MLP's squared activations overflow to inf, and the
    # zero-initialised output layer turns them into NaN at the first step.
    proc, result = run_trainer(tmp_path / "nan", tiny_params(corpus, init_std=1e20))
    assert proc.returncode == 1
    assert result["status"] == "failed" and result["reason"] == "nan"
    assert "val_bpb" not in result
    assert not (tmp_path / "nan" / "model.intq.zst").exists()


def test_missing_data_dir_fails_with_one_line_reason(corpus, tmp_path):
    missing = tmp_path / "no_such_dataset"
    proc, result = run_trainer(tmp_path / "missing", tiny_params(corpus, data_dir=str(missing)))
    assert proc.returncode == 1
    assert result["status"] == "failed"
    assert str(missing) in result["reason"]
    assert "\n" not in result["reason"]
    assert "Traceback" not in proc.stderr


def test_unknown_param_is_refused_by_name(corpus, tmp_path):
    params = tiny_params(corpus, jepa_wieght=0.1)
    proc, result = run_trainer(tmp_path / "unknown", params)
    assert proc.returncode == 1
    assert result["status"] == "failed"
    assert "jepa_wieght" in result["reason"] and "unknown" in result["reason"]
    assert "jepa_wieght" in proc.stdout
    assert not (tmp_path / "unknown" / "config.json").exists()


# --- presets, Muon under DDP, gradient accumulation -----------------------------------------


def preset_params(corpus: EmbeddedCorpus, name: str, **overrides) -> dict:
    from jepardy.trainer.presets import reduced

    return {
        **reduced(name),
        "data_dir": str(corpus.sp1024_dir),
        "tokenizer_path": str(corpus.tokenizer_model),
        "device": "cpu",
        "val_max_tokens": 2048,
        **overrides,
    }


def test_leader_stack_run_records_sliding_throughput_and_weights(corpus, tmp_path):
    out = tmp_path / "leader"
    proc, result = run_trainer(out, preset_params(corpus, "leader_stack", jepa_weight=0.1))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["status"] == "done"
    assert result["eval_stride"] == 16
    assert math.isfinite(result["sliding_val_bpb"]) and math.isfinite(result["sliding_val_loss"])
    assert result["tokens_per_s"] > 0 and result["mfu"] is None  # no MFU on a CPU
    assert result["flops_per_token"] > 0 and result["compiled"] is False
    assert result["checkpoint"] == "final.pt" and (out / "final.pt").is_file()
    assert set(result["group_drift"]) == {"embed", "matrix", "scalar", "jepa_predictor"}
    assert "jepardy/trainer/muon.py" in result["code_files"]
    assert json.loads((out / "config.json").read_text())["preset"] == "leader_stack"
    log = (out / "train.log").read_text()
    assert "compile_warmup_steps:2" in log and "throughput tokens_per_s:" in log
    assert "final_int6_zstd3_roundtrip_sliding_window" in log


def train_losses(out: Path) -> list[float]:
    return [p["value"] for p in metric_points(out) if p["name"] == "train_loss"]


def test_muon_global_batch_is_the_same_for_any_ranks_and_micro_steps(corpus, tmp_path):
    """naive_baseline (Muon + Adam) at toy size: 1 rank, 1 rank x 2 micro-steps and 2 gloo
    ranks (sharded Newton-Schulz) train on the same global batches to the same losses."""
    params = preset_params(corpus, "naive_baseline", iterations=4, log_every=1)
    runs = {
        "single": ({}, 0),
        "micro": ({"micro_batch_tokens": 512}, 0),
        "ddp": ({}, 2),
    }
    results = {}
    for name, (extra, nproc) in runs.items():
        proc, result = run_trainer(tmp_path / name, {**params, **extra}, nproc=nproc)
        assert proc.returncode == 0 and result["status"] == "done", proc.stdout + proc.stderr
        results[name] = (train_losses(tmp_path / name), result)
    base_losses, base = results["single"]
    assert base["micro_steps"] == 1 and results["micro"][1]["micro_steps"] == 2
    assert results["ddp"][1]["world_size"] == 2
    for name in ("micro", "ddp"):
        losses, result = results[name]
        assert losses == pytest.approx(base_losses, rel=1e-4), name
        assert result["val_bpb"] == pytest.approx(base["val_bpb"], abs=1e-4), name
