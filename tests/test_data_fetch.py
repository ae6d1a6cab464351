"""`jepardy data fetch` from a local folder laid out like the challenge's hub repo, offline
behaviour against an unreachable hub, and `jepardy data check` on good and broken shards."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import errors
from typer.testing import CliRunner

from jepardy.cli.app import app
from jepardy.data.check import check_data
from jepardy.data.fetch import HUB_REPO, DirSource, _hub_errors, fetch
from jepardy.data.layout import DATA_ROOT, dataset_dir, fetched_variant
from jepardy.data.shards import HEADER_BYTES, write_shard
from jepardy.errors import UserError

NAME = "fineweb10B_sp1024"
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TRAIN_SHARDS = 3
runner = CliRunner()
OFFLINE = (
    "data fetch: cannot reach the Hugging Face hub for willdepueoai/parameter-golf (offline); "
    "connect, or pass --source DIR with a copy laid out like the hub repo"
)


def make_hub(root: Path) -> Path:
    """A folder laid out like the hub repo: datasets/manifest.json, the shards of one
    variant (1 val, 3 train) and its tokenizer files."""
    export = root / "datasets"
    rng = np.random.default_rng(0)
    counts = {"val": [1000], "train": [2000, 2000, 500]}
    for split, sizes in counts.items():
        for i, count in enumerate(sizes):
            tokens = rng.integers(2, 1024, size=count)
            tokens[::100] = 1  # a BOS every 100 tokens
            write_shard(export / "datasets" / NAME / f"fineweb_{split}_{i:06d}.bin", tokens)
    (export / "tokenizers").mkdir(parents=True)
    (export / "tokenizers" / "fineweb_1024_bpe.model").write_bytes(b"model" * 100)
    (export / "tokenizers" / "fineweb_1024_bpe.vocab").write_text("<pad>\t0\n")
    manifest = {
        "version": 1,
        "shard_size": 2000,
        "tokenizers": [
            {
                "name": "sp_bpe_1024",
                "model_path": "tokenizers/fineweb_1024_bpe.model",
                "vocab_path": "tokenizers/fineweb_1024_bpe.vocab",
            }
        ],
        "datasets": [
            {
                "name": NAME,
                "tokenizer_name": "sp_bpe_1024",
                "vocab_size": 1024,
                "stats": {
                    "files_train": TRAIN_SHARDS,
                    "files_val": 1,
                    "tokens_train": 4500,
                    "tokens_val": 1000,
                },
            }
        ],
    }
    (export / "manifest.json").write_text(json.dumps(manifest))
    return root


def fetch_cli(*args: str | Path) -> str:
    result = runner.invoke(app, ["data", "fetch", *map(str, args)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return result.output


def test_fetch_from_a_local_hub_copy_then_nothing_more(tmp_path: Path) -> None:
    hub, out = make_hub(tmp_path / "hub"), tmp_path / "data"
    output = fetch_cli("--source", hub, "--train-shards", 2, "--out", out)
    assert "5 files fetched" in output and "0 already here" in output
    dataset = out / "datasets" / NAME
    assert sorted(p.name for p in dataset.iterdir()) == [
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
        "fineweb_val_000000.bin",
    ]
    for path in dataset.iterdir():
        assert path.read_bytes() == (hub / "datasets" / "datasets" / NAME / path.name).read_bytes()
    assert (out / "tokenizers" / "fineweb_1024_bpe.model").read_bytes() == b"model" * 100
    assert json.loads((out / "manifest.json").read_text())["datasets"][0]["name"] == NAME
    assert "0 files fetched (0.0 MB), 5 already here" in fetch_cli(
        "--source", hub, "--train-shards", 2, "--out", out
    )


def test_fetch_resumes_missing_and_broken_files(tmp_path: Path) -> None:
    hub, out = make_hub(tmp_path / "hub"), tmp_path / "data"
    source = DirSource(hub)
    fetch("sp1024", 3, out, source)
    dataset = out / "datasets" / NAME
    (dataset / "fineweb_train_000001.bin").unlink()
    with open(dataset / "fineweb_train_000002.bin", "r+b") as f:
        f.truncate(HEADER_BYTES + 10)  # a download cut short
    seen: list[tuple[str, int]] = []

    class Observer:
        def planned(self, files: int, total_bytes: int) -> None:
            seen.append(("planned", files))

        def started(self, name: str, size: int) -> None: ...

        def finished(self, name: str, size: int) -> None:
            seen.append((name.rsplit("/", 1)[-1], size))

    result = fetch("sp1024", 3, out, source, Observer())
    assert seen == [
        ("planned", 2),
        ("fineweb_train_000001.bin", HEADER_BYTES + 2 * 2000),
        ("fineweb_train_000002.bin", HEADER_BYTES + 2 * 500),
    ]
    assert len(result.kept) == 4 and result.fetched_bytes == 2 * HEADER_BYTES + 2 * 2500


def test_a_broken_source_file_is_named_and_not_kept(tmp_path: Path) -> None:
    hub, out = make_hub(tmp_path / "hub"), tmp_path / "data"
    broken = hub / "datasets" / "datasets" / NAME / "fineweb_val_000000.bin"
    broken.write_bytes(broken.read_bytes()[:-2])  # a token short of its header's count
    with pytest.raises(UserError) as err:
        fetch("sp1024", 0, out, DirSource(hub))
    local = out / "datasets" / NAME / "fineweb_val_000000.bin"
    assert str(err.value) == (
        f"{local}: size 3022 bytes, expected 1024 + 2*1000 = 3024 from header token count 1000"
        "; deleted, run the fetch again"
    )
    assert not local.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--variant", "gpt2"],
            "--variant: 'gpt2' is not a variant; allowed: sp<N> (sp1024), byte260",
        ),
        (["--variant", "sp4096"], "--variant: fineweb10B_sp4096 is not in "),
        (["--train-shards", "4"], "--train-shards: 4 is more than the 3 training shards of"),
    ],
)
def test_bad_requests_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    hub = make_hub(tmp_path / "hub")
    result = runner.invoke(
        app, ["data", "fetch", "--source", str(hub), "--out", str(tmp_path), *args]
    )
    assert isinstance(result.exception, UserError)
    assert str(result.exception).startswith(message)


def test_an_unreachable_hub_fails_in_one_line(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on discard
    line = cli.refused(
        "data", "fetch", "--train-shards", "1", "--out", tmp_path / "d", cwd=tmp_path
    )
    assert line == f"error: {OFFLINE}"


@pytest.mark.parametrize(
    "error",
    [
        errors.OfflineModeIsEnabled("offline mode is enabled (HF_HUB_OFFLINE=1)"),
        errors.LocalEntryNotFoundError("not in the cache and no connection"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_offline_errors_of_the_hub_client_read_as_offline(error: Exception) -> None:
    with pytest.raises(UserError) as err, _hub_errors(HUB_REPO):
        raise error
    assert str(err.value) == OFFLINE


def test_check_passes_good_data_and_names_every_problem(tmp_path: Path) -> None:
    hub, out = make_hub(tmp_path / "hub"), tmp_path / "data"
    fetch("sp1024", 3, out, DirSource(hub))
    (check,) = check_data(out)
    assert check.problems == [] and (check.vocab_size, check.vocab_source) == (
        1024,
        "manifest.json",
    )
    assert (check.splits["val"].files, check.splits["val"].tokens) == (1, 1000)
    assert (check.splits["train"].files, check.splits["train"].tokens) == (3, 4500)
    assert check.splits["val"].documents == 10 and check.splits["train"].max_token <= 1023
    result = runner.invoke(app, ["data", "check", str(out)], env={"COLUMNS": "300"})
    assert (
        result.exit_code == 0 and "ok: headers, sizes and token ids all check out" in result.output
    )

    dataset = out / "datasets" / NAME
    bad = np.full(50, 7)
    bad[17] = 1024
    write_shard(dataset / "fineweb_val_000000.bin", bad)
    (dataset / "fineweb_train_000001.bin").unlink()
    with open(dataset / "fineweb_train_000002.bin", "ab") as f:
        f.write(b"\0")
    (check,) = check_data(out)
    assert check.problems == [
        f"{dataset}: train shards missing: numbers [1]",
        f"{dataset / 'fineweb_train_000002.bin'}: size 2025 bytes, expected 1024 + 2*500 = 2024 "
        "from header token count 500",
        f"{dataset / 'fineweb_val_000000.bin'}: token 1024 at position 17 is outside the "
        "vocabulary (0..1023)",
        f"{dataset}: val shards hold 50 tokens, the manifest says 1000",
    ]
    result = runner.invoke(app, ["data", "check", str(dataset)], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and result.output.count("problem:") == 4


def test_check_shows_each_dataset_path_whole_at_80_columns(tmp_path: Path) -> None:
    hub, out = make_hub(tmp_path / "hub"), tmp_path / "data"
    fetch("sp1024", 3, out, DirSource(hub))
    result = runner.invoke(app, ["data", "check", str(out)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{out / 'datasets' / NAME}: vocab 1024 (manifest.json)", result.output
    assert re.search(r"^train +3 +4,500 ", result.output, re.M), result.output
    assert all(len(line) <= 80 for line in lines[1:]), result.output


def test_check_takes_the_vocabulary_from_options_or_the_folder_name(tmp_path: Path) -> None:
    folder = tmp_path / "embedded_byte260"
    write_shard(folder / "fineweb_val_000000.bin", np.arange(260))
    (check,) = check_data(folder)
    assert (check.vocab_size, check.vocab_source, check.problems) == (260, "folder name", [])
    (check,) = check_data(folder, vocab_size=100)
    assert check.vocab_source == "--vocab-size" and "token 100 at position 100" in check.problems[0]
    odd = tmp_path / "mystery"
    write_shard(odd / "fineweb_val_000000.bin", np.arange(3))
    with pytest.raises(UserError, match="cannot tell the vocabulary size from the folder name"):
        check_data(odd)
    with pytest.raises(UserError, match="no fineweb_"):
        check_data(tmp_path / "embedded_byte260" / "..")


def check_cli(path: Path) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["data", "check", str(path)], env={"COLUMNS": "300"})
    problems = [line for line in result.output.splitlines() if line.startswith("problem:")]
    return result.exit_code, problems


def test_check_fails_a_missing_val_split_and_a_missing_tokenizer(tmp_path: Path) -> None:
    hub, out = make_hub(tmp_path / "hub"), tmp_path / "data"
    fetch("sp1024", 3, out, DirSource(hub))
    dataset = out / "datasets" / NAME
    (dataset / "fineweb_val_000000.bin").unlink()
    (out / "tokenizers" / "fineweb_1024_bpe.vocab").unlink()

    code, problems = check_cli(out)

    assert code == 1
    assert problems == [
        f"problem: {dataset}: no val shards (fineweb_val_000000.bin)",
        f"problem: {dataset}: 0 val shards, the manifest lists 1",
        f"problem: {out / 'tokenizers/fineweb_1024_bpe.vocab'}: missing; the tokenizer of "
        f"{NAME} in {out / 'manifest.json'}",
    ]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `jepardy data build` (its manifest lists every file with size and sha256)."""
    root = tmp_path_factory.mktemp("embedded") / "embedded"
    result = runner.invoke(app, ["data", "build", "--root", str(root)])
    assert result.exit_code == 0, result.output
    return root


def broken_copy(embedded: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(embedded, tmp_path / "embedded"))


def test_check_passes_the_embedded_build_as_built(embedded: Path) -> None:
    assert check_cli(embedded) == (0, [])


def test_check_fails_a_dataset_its_manifest_lists_when_it_is_gone(
    embedded: Path, tmp_path: Path
) -> None:
    import shutil

    root = broken_copy(embedded, tmp_path)
    shutil.rmtree(root / "datasets" / "embedded_byte260")

    code, problems = check_cli(root)

    assert code == 1
    gone = root / "datasets" / "embedded_byte260"
    assert f"problem: {gone}: missing; {root / 'manifest.json'} lists it" in problems
    assert f"problem: {gone / 'fineweb_val_000000.bin'}: missing; " in "\n".join(problems)


def test_check_compares_every_listed_file_with_its_size_and_sha256(
    embedded: Path, tmp_path: Path
) -> None:
    root = broken_copy(embedded, tmp_path)
    shard = root / "datasets" / "embedded_sp1024" / "fineweb_train_000000.bin"
    data = bytearray(shard.read_bytes())
    data[HEADER_BYTES] ^= 1  # one token id changed, still inside the vocabulary
    shard.write_bytes(bytes(data))
    vocab = root / "tokenizers" / "embedded_1024_bpe.vocab"
    vocab.write_bytes(vocab.read_bytes() + b"x")

    code, problems = check_cli(root)

    assert code == 1
    assert problems == [
        f"problem: {shard}: sha256 differs from manifest.json's",
        f"problem: {vocab}: {vocab.stat().st_size} bytes, manifest.json says "
        f"{vocab.stat().st_size - 1}",
    ]


@pytest.mark.parametrize("spec", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.stem)
def test_the_specs_read_where_a_default_fetch_writes(spec: Path) -> None:
    """experiments/ read the challenge's data where `jepardy data fetch` (default --out)
    puts it, and cite no file a user does not have."""
    text = spec.read_text()
    assert "shared/design" not in text
    table = tomllib.loads(text)
    lanes = [lane.get("params", {}) for lane in table.get("lanes", {}).values()]
    # The spec's params, and each lane's own (a chain of lanes may read two datasets).
    tables = [table.get("params", {}), *lanes]
    read = [params for params in tables if "data_dir" in params]
    assert read, f"{spec.name} names no data_dir"
    for params in read:
        variant = fetched_variant(params["data_dir"])
        if variant is None:  # the embedded corpus, built by `jepardy data build`
            assert params["data_dir"].startswith("data/embedded/")
            continue
        assert Path(params["data_dir"]) == dataset_dir(variant)
        tokenizer = params.get("tokenizer_path")
        assert tokenizer is None or Path(tokenizer).parent == DATA_ROOT / "tokenizers"
