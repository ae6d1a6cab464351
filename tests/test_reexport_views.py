"""Re-exports (`jepardy export`) as every view shows them, on a store shaped like `make
demo`'s with re-exports of its control recorded as the command records them (`plan_export`'s
run row, a done result): `runs` labels each with its own `export` column, `report` compares
each with its own source runs seed by seed (never as a control, never in the control's mean),
`diff` of a run and its re-export shows what the export changed, and a bad `--device` is
refused before anything is recorded. Commands run as real processes at 80 columns."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from demo_store import demo_result, write_demo
from scipy import stats
from test_narrow import cells, jepardy, row_of, shown

from jepardy.analysis.diff import diff_runs
from jepardy.launch.reexport import plan_export
from jepardy.store.engine import open_reader
from jepardy.store.states import RunOutcome
from jepardy.store.transitions import Store, open_store
from jepardy.trainer.export_run import PARENT_FIELDS

# Per-seed differences export - source of the int8 re-exports of the ema=false controls.
INT8_SHIFT = {1: 0.0010, 2: 0.0013}
CONFIG = {"muon_momentum_warmup_start": 0.85, "quant_bits": 6, "zstd_level": 19, "lr": 0.003}
DATA = {"shards": {"fineweb_train_000000.bin": {"bytes": 352_824, "header_sha256": "ab" * 32}}}


def _export(store: Store, source_id: str, bits: int, shift: float, variant: str = "") -> str:
    """A done re-export of `source_id` with `bits`, scoring `shift` above its source; as an
    older jepardy recorded it when `variant` is given (no config, data nor runtime)."""
    run = plan_export(store, source_id, bits, 19)
    run = run if not variant else run.__class__(**{**run.__dict__, "variant": variant})
    frame = store.runs_frame()
    source = json.loads(frame.loc[frame["id"] == source_id, "result"].iloc[0])
    more_bytes = 13_000 * (bits - 6)
    result = {
        **{name: source[name] for name in PARENT_FIELDS if name in source},
        "val_bpb": source["val_bpb"] + shift,
        "val_loss": source["val_loss"] + shift * 1.5,
        "artifact_bytes": source["artifact_bytes"] + more_bytes,
        "model_bytes": source["model_bytes"] + more_bytes,
        "eval_time_s": 0.7,
        "quant_bits": bits,
        "device": source["device"],
    }
    store.register_runs([run], git_commit="abc123")
    store.record_result(run.run_id, RunOutcome(status="done", result=result, metrics=[]))
    return run.run_id


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The demo's store; its first run (control, ema=false, seed 1) finishes in a run
    directory with a config.json and a final.pt; both ema=false controls re-exported at
    int8, seed 1 also at int6 (the run's own settings: no change). Ids by name."""
    folder = tmp_path_factory.mktemp("exported")
    db = folder / "results.db"
    ids = write_demo(db, running=1)
    store = open_store(str(db))
    run_dir = folder / "runs" / ids[0]
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(CONFIG))
    (run_dir / "final.pt").write_bytes(b"weights")
    store.record_result(
        ids[0], RunOutcome(status="done", result={**demo_result(0), "data": DATA}, metrics=[])
    )
    frame = store.runs_frame()
    controls = frame[(frame["arm"] == "control") & (frame["match"] == "ema=false")]
    by_seed = dict(zip(controls["seed"], controls["id"], strict=True))
    named = {"source1": by_seed[1], "source2": by_seed[2]}
    named["int6"] = _export(store, by_seed[1], 6, 0.0)
    for seed, shift in INT8_SHIFT.items():
        named[f"int8_{seed}"] = _export(store, by_seed[seed], 8, shift)
    return folder, named


def test_runs_labels_each_reexport_in_its_own_column(exported) -> None:
    folder, ids = exported
    lines = shown("runs", cwd=folder)
    assert cells(lines[1])[:3] == ["id", "arm", "export"], lines[1]
    assert row_of(lines, ids["int8_1"])[:3] == [ids["int8_1"], "control", "int8+zstd19"]
    assert row_of(lines, ids["int6"])[:3] == [ids["int6"], "control", "int6+zstd19"]
    assert "int" not in " ".join(row_of(lines, ids["source1"]))
    # The names csv and json use, the packed label included; no column named by a label.
    picked = shown("runs", "--columns", "id,variant,export", cwd=folder)
    assert row_of(picked, ids["int8_2"]) == [ids["int8_2"], "export=int8+zstd19", "int8+zstd19"]
    csv = pd.read_csv(io.StringIO(jepardy("runs", "--format", "csv", cwd=folder).stdout))
    assert "export" in csv.columns and not [c for c in csv.columns if "zstd" in c]


def test_report_pairs_each_reexport_with_its_source(exported) -> None:
    folder, _ = exported
    report = json.loads(jepardy("report", "--format", "json", cwd=folder).stdout)
    table = pd.DataFrame(report["compare"])
    mine = table[table["match"] == "ema=false"]
    assert mine["variant"].tolist() == ["", "export=int6+zstd19", "export=int8+zstd19", ""]
    assert mine["versus"].tolist() == ["", "source", "source", "control"]
    control, int6, int8, jepa = (row for _, row in mine.iterrows())
    # The control is its two training runs alone; the arm's test is unchanged by exports.
    sources = [demo_result(0)["val_bpb"], demo_result(1)["val_bpb"]]
    assert control["verdict"] == "control" and control["n"] == 2
    assert control["val_bpb_mean"] == pytest.approx(sum(sources) / 2)
    assert jepa["delta_bpb"] == pytest.approx(jepa["val_bpb_mean"] - control["val_bpb_mean"])
    assert (table["verdict"] == "control").sum() == 2  # one per match
    # The int6 re-export is its source's own export: +0 against seed 1, not the mean.
    assert (int6["n"], int6["delta_bpb"], int6["verdict"]) == (1, 0.0, "same as source")
    assert int6["note"].startswith("re-export of control: paired with its source runs")
    # int8: paired by seed, the paired t-test of export against source.
    shifts = list(INT8_SHIFT.values())
    assert int8["n"] == 2 and int8["delta_bpb"] == pytest.approx(sum(shifts) / 2)
    assert int8["delta_bpb_std"] == pytest.approx(abs(shifts[1] - shifts[0]) / math.sqrt(2))
    exported_bpb = [value + shift for value, shift in zip(sources, shifts, strict=True)]
    expected = stats.ttest_rel(exported_bpb, sources, alternative="less").pvalue
    assert int8["p_paired"] == pytest.approx(expected)
    assert int8["verdict"] == "n.s. vs source"
    assert pd.isna(int8["p_welch"])  # no test against the control


def test_report_at_80_columns_shows_which_export_against_what(exported) -> None:
    folder, _ = exported
    lines = shown("report", cwd=folder)
    rows = [[cell.strip() for cell in cells(line)] for line in lines]
    head = rows[1]
    assert head[:3] == ["ema", "arm", "export"], head
    int8 = [row for row in rows if "int8+zstd19" in row]
    assert len(int8) == 1 and "n.s. vs source" in int8[0]
    assert f"+{sum(INT8_SHIFT.values()) / 2:.4f} ± 0.0002" in int8[0]
    falses = [row[1] for row in rows if row[:1] == ["false"]]
    assert falses == ["control", "control", "control", "jepa"]  # sources first, then exports


def test_an_older_export_label_stays_whole(tmp_path: Path) -> None:
    """Variants of an older jepardy (`export:int8+zstd19`) are not `key=value` pairs: the
    `variant` column shows them as they are, and no column takes a label's text as its name."""
    ids = write_demo(tmp_path / "results.db")
    old = _export(open_store(str(tmp_path / "results.db")), ids[0], 8, 0.001, "export:int8+zstd19")
    lines = shown("runs", cwd=tmp_path)
    assert "export:int8+zstd19" in row_of(lines, old)
    picked = shown("runs", "--columns", "id,variant", cwd=tmp_path)
    assert row_of(picked, old) == [old, "export:int8+zstd19"]
    csv = pd.read_csv(io.StringIO(jepardy("runs", "--format", "csv", cwd=tmp_path).stdout))
    assert "export:int8+zstd19" not in csv.columns


def test_diff_of_a_run_and_its_reexport_shows_what_the_export_changed(exported) -> None:
    folder, ids = exported
    lines = shown("diff", ids["source1"], ids["int8_1"], cwd=folder)
    rows = [[cell.strip() for cell in cells(line)] for line in lines]
    # Its config is its source's with int8; its data and runtime, which it did not record,
    # are its source's: none of them differs, and nothing of them is "(unset)".
    assert ["config", "quant_bits", "6", "8"] in rows
    bytes_source = demo_result(0)["artifact_bytes"]
    assert ["artifact_bytes", f"{bytes_source:,}", f"{bytes_source + 26_000:,}"] in rows
    unset = [row for row in rows if "(unset)" in row]
    assert all(
        row[-3:-1] in (["quant_bits", "(unset)"], ["zstd_level", "(unset)"]) for row in unset
    )
    named = {cell for row in rows for cell in row}
    assert not named & {"muon_momentum_warmup_start", "lr", "python_version", "data_dir"}
    said = " ".join(" ".join(lines).split())
    assert f"{ids['int8_1']} is a re-export of {ids['source1']}" in said


def test_diff_never_folds_a_field_name(exported) -> None:
    """`--all` at 80 columns: each line of the field column ends a name or breaks after a
    ".", "/" or "_", never inside a word (as `muon_momentum_warmup_sta` / `rt` did)."""
    folder, ids = exported
    lines = shown("diff", ids["source1"], ids["int8_1"], "--all", cwd=folder)
    every = diff_runs(open_reader(folder / "results.db"), ids["source1"], ids["int8_1"], True)
    names = {f.field for f in every.fields}
    start, end = lines[1].index("field"), lines[1].index(ids["source1"])
    name = ""
    for line in lines[3:]:
        if line.startswith(ids["int8_1"]):
            break  # the note under the table
        part = line[start:end].strip()
        if not part:
            continue
        name += part
        if name in names:
            name = ""
        else:
            assert part[-1] in "./_", (part, line)
    assert name == ""
    assert any("muon_momentum_warmup_start" in n for n in names)


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("gpu", "error: export: --device gpu: unknown device; allowed: auto, cpu, cuda"),
        ("cuda", "error: export: --device cuda: no GPU on this machine; --device cpu exports"),
    ],
)
def test_a_bad_device_is_refused_before_anything_is_recorded(
    exported, monkeypatch: pytest.MonkeyPatch, device: str, expected: str
) -> None:
    folder, ids = exported
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, whatever this machine has
    before = len(open_store(str(folder / "results.db")).runs_frame())
    args = ("export", ids["source1"], "--quant-bits", "7", "--device", device)
    proc = jepardy(*args, "--runs-dir", folder / "runs", cwd=folder)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(expected), proc.stderr
    assert len(open_store(str(folder / "results.db")).runs_frame()) == before
    assert sorted(p.name for p in (folder / "runs").iterdir()) == [ids["source1"]]
