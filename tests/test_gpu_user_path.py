"""The path a GPU user takes, on CPU: `jepardy data fetch` of every variant experiments/ use,
from a local folder laid out like the challenge's hub repo (its shards and tokenizer taken from
the embedded corpus, so the tokens are real and match the tokenizer), then `jepardy plan` of
every spec finds its data, and a shrunk copy of every spec (one tiny run) sweeps to done."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pytest

from jepardy.data.layout import dataset_dir, dataset_name, fetched_variant
from jepardy.trainer.config import preset_params, schema

pytestmark = pytest.mark.slow

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SPECS = sorted(EXPERIMENTS.glob("*.toml"))
SP_MODEL = "tokenizers/fineweb_1024_bpe.model"

# A tiny model and a few steps, over any preset: what makes every spec a seconds-long run.
TINY: dict[str, Any] = {
    "n_layers": 2,
    "d_model": 64,
    "n_heads": 4,
    "n_kv_heads": 2,
    "mlp_mult": 2,
    "seq_len": 64,
    "rope_train_seq_len": 64,
    "train_batch_tokens": 256,
    "val_batch_tokens": 1024,
    "val_max_tokens": 2048,
    "iterations": 3,
    "wallclock_s": 0.0,
    "warmup_steps": 0,
    "compile_warmup_steps": 0,
    "muon_momentum_warmup_steps": 1,
    "log_every": 1,
}
# Shrunk only where the spec's preset turns the feature on.
TINY_IF_ON: dict[str, Any] = {
    "xsa_last_n": 1,
    "value_embed_last_n": 1,
    "value_embed_dim": 16,
    "bigram_hash_buckets": 64,
    "bigram_dim": 16,
    "eval_stride": 32,
}


def spec_of(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def variants() -> list[str]:
    """The fetched variants the specs read (the embedded corpus is built, not fetched)."""
    found = {fetched_variant(spec_of(p).get("params", {}).get("data_dir", "")) for p in SPECS}
    return sorted(v for v in found if v is not None)


def make_hub(hub: Path, embedded: Path) -> Path:
    """`hub/datasets/...` as on the challenge's hub repo, one shard per split per variant."""
    export = hub / "datasets"
    sources = {"sp1024": "embedded_sp1024", "byte260": "embedded_byte260"}
    for variant, source in sources.items():
        for split in ("train", "val"):
            shard = f"fineweb_{split}_000000.bin"
            target = export / "datasets" / dataset_name(variant) / shard
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(embedded / "datasets" / source / shard, target)
    (export / "tokenizers").mkdir()
    shutil.copyfile(embedded / "tokenizers/embedded_1024_bpe.model", export / SP_MODEL)
    (export / "tokenizers/fineweb_pure_byte_260.json").write_text('{"vocab_size": 260}')
    stats = {"files_train": 1, "files_val": 1}
    manifest = {
        "tokenizers": [
            {"name": "sp_bpe_1024", "model_path": SP_MODEL},
            {"name": "pure_byte_260", "path": "tokenizers/fineweb_pure_byte_260.json"},
        ],
        "datasets": [
            {"name": dataset_name("sp1024"), "tokenizer_name": "sp_bpe_1024", "stats": stats},
            {"name": dataset_name("byte260"), "tokenizer_name": "pure_byte_260", "stats": stats},
        ],
    }
    (export / "manifest.json").write_text(json.dumps(manifest))
    return hub


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory, cli) -> Path:
    """A fresh machine's working folder after the user's set-up: the embedded corpus built
    (smoke.toml), every variant the specs use fetched with the default --out."""
    root = tmp_path_factory.mktemp("gpu_user")
    built = cli.run("data", "build", cwd=root)
    assert built.returncode == 0, built.stderr
    hub = make_hub(tmp_path_factory.mktemp("hub"), root / "data/embedded")
    assert variants() == ["byte260", "sp1024"]
    for variant in variants():
        fetch = ("data", "fetch", "--source", hub, "--variant", variant, "--train-shards", "1")
        fetched = cli.run(*fetch, cwd=root)
        assert fetched.returncode == 0, fetched.stderr
        assert (root / dataset_dir(variant) / "fineweb_val_000000.bin").is_file()
    return root


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_plan_of_every_spec_finds_its_data(machine: Path, cli, spec: Path) -> None:
    proc = cli.run("plan", spec, cwd=machine)
    assert proc.returncode == 0, proc.stderr
    paths = [line for line in proc.stdout.splitlines() if line.startswith(("data_dir:", "tok"))]
    assert any(line.startswith("data_dir:") for line in paths), proc.stdout
    assert all(line.endswith(": found") for line in paths), paths


def shrunk(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with one run: its first seed, its first lane's control, on one process, with
    a tiny model and three steps (TINY) over whatever its preset sets."""
    params = {**spec.get("params", {}), **TINY}
    resolved = {name: entry["default"] for name, entry in schema().items()}
    resolved |= preset_params(str(params.get("preset", "")))
    params |= {name: small for name, small in TINY_IF_ON.items() if resolved.get(name)}
    lane, body = next(iter(spec["lanes"].items()))
    return {
        "sweep": {"name": spec["sweep"]["name"], "seeds": spec["sweep"]["seeds"][:1]},
        "trainer": {**spec["trainer"], "nproc": 1},
        "params": params,
        "lanes": {lane: {"control": body["control"]}},
    }


def toml_text(spec: dict[str, Any]) -> str:
    lines = []
    for table in ("sweep", "trainer", "params"):
        lines += [f"[{table}]", *(f"{k} = {_value(v)}" for k, v in spec[table].items()), ""]
    for lane, body in spec["lanes"].items():
        lines += [f"[lanes.{lane}]", *(f"{k} = {_value(v)}" for k, v in body.items()), ""]
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_a_shrunk_copy_of_every_spec_sweeps_to_done(machine: Path, cli, spec: Path) -> None:
    small = machine / f"small_{spec.name}"
    small.write_text(toml_text(shrunk(spec_of(spec))))
    db = machine / f"{spec.stem}.db"

    proc = cli.run("sweep", small, "--db", db, "--runs-dir", f"runs_{spec.stem}", cwd=machine)

    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, val_bpb FROM runs").fetchall()
    assert len(rows) == 1 and rows[0][0] == "done" and rows[0][1] > 0, rows
