"""The challenge-log grammar and what a run reports, on log fixtures written in each shape of
design/challenge-logs.md: both step-line families, several runs in one file, truncated and
crashed logs, CRLF line ends, logs that start with the script's own source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jepardy.ingest.logparse import parse_log, split_lines
from jepardy.ingest.logresult import metric_series, run_params, run_result

LOGS = Path(__file__).parent / "fixtures" / "logs"


def text_of(name: str) -> str:
    # Decoded bytes keep CRLF as it is on disk: the parser must handle it, not Python.
    return (LOGS / name).read_bytes().decode()


def parse(name: str) -> list[Any]:
    return parse_log(text_of(name)).runs


def line_of(name: str, start: str) -> int:
    """The 1-based number of the one line that starts with `start` (a timestamp aside)."""
    lines = split_lines(text_of(name))
    found = [i + 1 for i, text in enumerate(lines) if text.split(" ", 1)[-1].startswith(start)]
    found += [i + 1 for i, text in enumerate(lines) if text.startswith(start)]
    assert len(set(found)) == 1, (start, found)
    return found[0]


def test_old_family_with_crlf_line_ends() -> None:
    (run,) = parse("baseline_crlf.log")
    result = run_result(run)
    assert result["status"] == "done" and result["reason"] == ""
    assert result["metric"] == "final_int8_zlib_roundtrip_exact"
    assert result["val_bpb"] == 1.22512345 and result["val_loss"] == 2.07312345
    # the 8-decimal twin is the score; its 4-decimal twin carries the eval time
    assert result["eval_time_s"] == 1.401
    assert result["artifact_bytes"] == 15_863_400 and result["model_bytes"] == 15_815_800
    assert result["code_bytes"] == 47_600 and result["under_cap"] is True
    assert result["steps"] == 13780 and result["train_time_s"] == 600.038
    assert result["step_avg_ms"] == 43.54
    assert result["n_params"] == 17_059_900 and result["val_tokens"] == 62_021_632
    assert result["peak_memory_mib"] == 10184 and result["world_size"] == 8
    assert result["provenance"]["val_bpb"] == {
        "line": line_of("baseline_crlf.log", "final_int8_zlib_roundtrip_exact"),
        "label": "final_int8_zlib_roundtrip_exact",
    }
    assert result["provenance"]["artifact_bytes"] == {
        "line": line_of("baseline_crlf.log", "Total submission size int8+zlib"),
        "label": "Total submission size int8+zlib",
    }
    assert result["provenance"]["steps"]["label"] == "stopping_early"
    assert [m["label"] for m in result["metrics"]] == [
        "final_int8_zlib_roundtrip",
        "final_int8_zlib_roundtrip_exact",
    ]
    assert all("\r" not in m["label"] for m in result["metrics"])


def test_old_family_settings_become_params_with_jepardy_names() -> None:
    (run,) = parse("baseline_crlf.log")
    params, flags = run_params(run)
    assert flags == []
    assert params["seed"] == 1337
    assert params["wallclock_s"] == 600.0 and isinstance(params["wallclock_s"], float)
    assert params["seq_len"] == 1024 and params["train_batch_tokens"] == 524_288
    assert params["iterations"] == 20000 and params["warmup_steps"] == 20
    assert params["n_heads"] == 8 and params["n_kv_heads"] == 4
    assert params["tie_embeddings"] is True and params["embed_lr"] == 0.05
    assert params["train_loader"] == "dataset:fineweb10B_sp1024"
    # launcher KEY=value lines and progress lines are not settings
    assert not {"NCCL_IB_DISABLE", "RUN_ID", "warmup_step", "val_bpb"} & set(params)


def test_step_lines_of_both_families_become_metric_series() -> None:
    (run,) = parse("baseline_crlf.log")
    steps = {(s.step, s.train_loss, s.val_bpb) for s in run.steps}
    assert (200, 2.8044, None) in steps  # the line with a bracketed phase tag
    assert (200, None, 1.6775) in steps
    no_avg = next(s for s in run.steps if s.step == 2)
    assert no_avg.train_time_ms == 67.0 and no_avg.step_avg_ms is None
    series = {(p["step"], p["name"]): p["value"] for p in metric_series(run)}
    assert series[(1, "train_loss")] == 6.9412
    assert series[(13780, "val_bpb")] == 1.2175
    assert series[(13780, "train_time_ms")] == 600038.0
    (new,) = parse("new_family_seed42.log")
    series = {(p["step"], p["name"]): p["value"] for p in metric_series(new)}
    assert series[(500, "train_time_ms")] == pytest.approx(48_000.0)  # 0.8m
    assert series[(500, "tokens_per_s")] == 8_217_810
    assert series[(4945, "val_loss")] == 2.3539


def test_source_prefix_is_skipped_and_sliding_window_beats_its_int8_alias() -> None:
    runs = parse("source_prefixed.txt")
    assert len(runs) == 1  # the docstring's `model_params:1` started no run
    (run,) = runs
    result = run_result(run)
    # tier: sliding window (2) over the round trips (1); the last line repeating its
    # numbers as final_int8_zlib_roundtrip_exact is flagged as an alias, not taken
    assert result["metric"] == "final_int6_sliding_window_exact"
    assert result["val_bpb"] == 1.11480014 and result["val_loss"] == 1.88230393
    assert result["eval_time_s"] == 77.15
    assert result["prequant_val_bpb"] == 1.1254 and result["prequant_val_loss"] == 1.9003
    assert result["provenance"]["prequant_val_bpb"]["label"] == "DIAGNOSTIC post_ema"
    labels = [m["label"] for m in result["metrics"]]
    assert "final_int6_roundtrip" in labels and 9.9999 not in [
        m["val_bpb"] for m in result["metrics"]
    ]
    alias = line_of("source_prefixed.txt", "final_int8_zlib_roundtrip_exact")
    assert any(
        f"line {alias}: final_int8_zlib_roundtrip_exact repeats" in f for f in result["flags"]
    )
    # the model line and the total line name different formats: kept, and said
    assert result["artifact_bytes"] == 15_888_578 and result["model_bytes"] == 15_821_704
    assert any("int6+zstd but the total names int8+zlib" in f for f in result["flags"])
    params, _ = run_params(run)
    assert params["jepa_weight"] == 0.1 and params["ema"] is True and params["seed"] == 2024


def test_several_runs_in_one_file_split_with_their_own_headers() -> None:
    runs = parse("appended_runs.log")
    assert len(runs) == 3
    first, second, third = (run_result(r) for r in runs)
    assert first["status"] == "done"
    assert first["metric"] == "final_sliding_window_eval_exact"
    assert first["val_bpb"] == 1.19773674 and first["val_loss"] == 2.02225627
    assert first["eval_time_s"] == 304.36  # stride before the metrics, time on the twin
    assert first["artifact_bytes"] == 15_216_200 and first["val_tokens"] == 62_021_632
    assert second["status"] == "failed"
    assert second["reason"] == (
        "no final metric line: the log ends at step 300/20000 "
        f"(line {line_of('appended_runs.log', 'step:300/20000')})"
    )
    assert second["val_tokens"] == 111  # each run keeps the header printed before it
    assert third["status"] == "done"
    assert third["metric"] == "final_sliding"  # (stride=16, T=0.90) after the metrics
    assert third["val_bpb"] == 1.2325 and third["eval_time_s"] == 91.0
    assert third["steps"] == 5402 and third["train_time_s"] == 300.012  # spaces after colons
    assert third["val_tokens"] == 62_021_633
    assert [run_params(r)[0]["seed"] for r in runs] == [42, 42, 43]
    assert [run_params(r)[0]["wallclock_s"] for r in runs] == [600.0, 600.0, 300.0]
    assert runs[0].last_line + 1 == runs[1].first_line
    assert runs[2].last_line == len(split_lines(text_of("appended_runs.log")))
    assert len({r.sha256 for r in runs}) == 3


def test_new_family_with_timestamps_reports_phased_ttt() -> None:
    (run,) = parse("new_family_seed42.log")
    result = run_result(run)
    assert (
        result["metric"] == "quantized_ttt_phased" and result["metric_tier"] == "test-time training"
    )
    assert result["val_bpb"] == 1.05989454 and result["val_loss"] == 2.31944212
    assert result["eval_time_s"] == 508.785 and result["total_eval_time_s"] == 508.8
    assert result["prequant_val_bpb"] == 1.06395844
    assert (
        result["provenance"]["prequant_val_bpb"]["label"] == "diagnostic pre-quantization post-ema"
    )
    assert result["code_bytes"] == 31_999  # the compressed code counts, as in the total
    assert result["artifact_bytes"] == 15_897_259 and result["model_bytes"] == 15_865_260
    assert result["steps"] == 4945 and result["train_time_s"] == 599.592
    assert result["tokens_per_s"] == 6_589_668 and result["val_tokens"] == 47_851_520
    ttt = next(m for m in result["metrics"] if m["label"] == "ttt_sliding:done")
    assert ttt["val_bpb"] == 1.0605 and ttt["fields"] == {"elapsed": "405.0s"}
    params, flags = run_params(run)
    assert flags == []
    assert params["seed"] == 42 and params["jepa_weight"] == 0.15
    assert params["mlp_mult"] == 4 and isinstance(params["mlp_mult"], int)  # printed 4.0
    assert params["d_model"] == 512 and params["n_layers"] == 11
    assert params["adam_eps"] == 1e-08 and params["artifact_dir"] == ""
    assert params["train_shards"] == 80


def test_legal_ttt_beats_later_storage_passes() -> None:
    (run,) = parse("ttt_storage_pass.log")
    result = run_result(run)
    assert result["metric"] == "legal_ttt_exact"
    assert result["val_bpb"] == 1.11351234 and result["eval_time_s"] == 401.0
    storage = {m["label"]: m for m in result["metrics"] if m["label"].startswith("storage_pass")}
    assert storage["storage_pass"]["val_bpb"] == 1.119912
    assert storage["storage_pass"]["fields"] == {"bytes": "15978121"}
    assert storage["storage_pass_int6_sliding_window_exact"]["tier"] == "sliding window"
    # stopping_early without a step: the steps come from the last step line
    assert result["steps"] == 6941 and result["train_time_s"] == 590.012
    assert result["provenance"]["steps"]["label"] == "step"
    assert result["artifact_bytes"] == 15_978_121


def test_truncated_and_crashed_logs_fail_with_their_reason() -> None:
    (run,) = parse("truncated_seed7.log")
    result = run_result(run)
    assert result["status"] == "failed" and "val_bpb" not in result
    assert result["reason"] == (
        "no final metric line: the log ends at step 3000/20000 "
        f"(line {line_of('truncated_seed7.log', '3000/20000')})"
    )
    assert result["train_time_s"] == pytest.approx(324.0)  # 5.4m
    (crash,) = parse("crash_seed3.log")
    result = run_result(crash)
    assert result["status"] == "failed"
    assert result["reason"] == (
        f"crashed (line {line_of('crash_seed3.log', 'torch.OutOfMemoryError')}): "
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    )


def test_small_traps() -> None:
    text = (
        "step:10/10 train_loss:1.0 train_time:5ms\n"
        "progress 10%\rprogress 90%\rfinal_int6_roundtrip val_loss:2.0 val_bpb:1.5\n"
        'log0(f"final_int6_roundtrip val_loss:{q:.4f} val_bpb:{b:.4f}")\n'
        "final_int6_roundtrip val_loss:nan val_bpb:nan\n"
    )
    (run,) = parse_log(text).runs
    assert run.metrics[0].val_bpb == 1.5  # what was drawn last on the line
    result = run_result(run)
    assert result["status"] == "failed" and result["reason"].startswith("nan: ")
    assert parse_log("").runs[0].has_body is False


def test_score_and_bytes_come_from_the_same_artifact() -> None:
    # The study's shape: a training export over the cap, then a storage-only pass that
    # exports again (under the cap) and scores that; the score is the storage pass's, so the
    # bytes are too, not the first export's 16.3 MB.
    (run,) = parse("study_storage_pass.log")
    result = run_result(run)
    assert result["metric"] == "storage_pass_int6_sliding_window_exact"
    assert result["val_bpb"] == 1.30180001 and result["eval_time_s"] == 40.0
    assert (result["artifact_bytes"], result["model_bytes"]) == (15_901_000, 15_840_000)
    assert result["under_cap"] is True
    storage_total = line_of("study_storage_pass.log", "Total submission size int6+zstd: 159")
    assert result["provenance"]["artifact_bytes"]["line"] == storage_total
    assert result["code_bytes"] == 61_000  # printed once, with the first export
    first = line_of("study_storage_pass.log", "final_int6_sliding_window_exact")
    assert (
        f"line {first}: final_int6_sliding_window_exact scored another artifact "
        "(16302234 bytes); score and size are storage_pass_int6_sliding_window_exact's "
        "artifact's"
    ) in result["flags"]


def test_a_scored_artifact_without_a_size_takes_no_other_exports_bytes() -> None:
    # The storage pass's two size lines dropped; the first export's are kept.
    lines = text_of("study_storage_pass.log").splitlines()
    storage_start = line_of("study_storage_pass.log", "Total submission size int6+zstd: 159") - 2
    unsized = "\n".join(
        line
        for i, line in enumerate(lines)
        if i < storage_start or not line.startswith(("Serialized", "Total"))
    )
    (run,) = parse_log(unsized).runs
    result = run_result(run)
    assert result["metric"] == "storage_pass_int6_sliding_window_exact"
    assert "artifact_bytes" not in result and result["under_cap"] is None
    assert any("no size printed for the artifact" in flag for flag in result["flags"])
