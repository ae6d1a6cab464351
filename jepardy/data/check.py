"""`jepardy data check`: are a dataset's shards whole and inside the tokenizer's vocabulary?

For every `fineweb_{train,val}_NNNNNN.bin` of a dataset folder: the header (magic, version,
token count) agrees with the file size, the shard numbers of each split run 0..n-1 without a
gap, the validation split is there, and every token id is below the vocabulary size.

A data root's `manifest.json` says what must be there. The embedded corpus's (`jepardy data
build`) lists every file with its size and sha256: each must be present with both, so a
deleted dataset, split or tokenizer is a problem. The challenge's (`jepardy data fetch`)
lists datasets with file and token counts per split and their tokenizers: of each dataset
present, every validation shard, the tokens of each complete split and the tokenizer files
must be there (a fetch brings one variant and the first N training shards, so the other
variants and the later training shards may be absent).

The vocabulary size comes from, in order: `--tokenizer MODEL` (its piece count),
`--vocab-size N`, the challenge manifest's dataset entry, or the folder name
(`fineweb10B_sp1024`, `embedded_byte260`). Problems are collected, one line each, rather
than stopping at the first, so one pass shows everything wrong.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jepardy.data.shards import HEADER_BYTES, ShardError, read_header
from jepardy.data.tokenizer import BOS_ID, BYTE260_VOCAB_SIZE, load_sentencepiece
from jepardy.errors import UserError

SPLITS = ("train", "val")
MANIFEST = "manifest.json"
_SHARD = re.compile(r"fineweb_(train|val)_(\d+)\.bin")
_NAME_VOCAB = re.compile(r"(?:^|_)sp(\d+)(?:_|$)")
_CHUNK_TOKENS = 1 << 24  # tokens read at a time (32 MiB): bounded memory on 200 MB shards


@dataclass
class SplitCheck:
    files: int = 0
    tokens: int = 0
    documents: int = 0  # BOS tokens
    max_token: int = -1


@dataclass
class DatasetCheck:
    """What was checked in one dataset folder, and every problem found (empty: all good)."""

    path: Path
    vocab_size: int
    vocab_source: str
    splits: dict[str, SplitCheck] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check_data(
    path: Path, vocab_size: int | None = None, tokenizer: Path | None = None
) -> list[DatasetCheck]:
    """Check `path`: a dataset folder (holding shards), or a data root whose `datasets/*`
    folders hold them. UserError when there is nothing to check or no vocabulary size."""
    if not path.is_dir():
        raise UserError(f"{path}: not a folder; expected a dataset folder or a data root")
    folders = (
        [path]
        if _shards(path)
        else sorted(d for d in (path / "datasets").glob("*") if d.is_dir() and _shards(d))
    )
    listed = _read_manifest(path / MANIFEST)
    missing = [path / "datasets" / name for name in _listed_datasets(listed)]
    missing = [folder for folder in missing if folder not in folders]
    if not folders and not missing:
        raise UserError(
            f"{path}: no fineweb_{{train,val}}_*.bin shards here or in {path / 'datasets'}/*"
        )
    checks = [check_dataset(folder, vocab_size, tokenizer) for folder in folders]
    checks += [_missing_dataset(folder) for folder in missing]
    if listed is not None and isinstance(listed.get("files"), dict):
        checks.append(_listed_files_check(path, listed["files"]))
    return checks


def check_dataset(
    folder: Path, vocab_size: int | None = None, tokenizer: Path | None = None
) -> DatasetCheck:
    """Check one dataset folder (module docstring)."""
    manifest_entry = _manifest_entry(folder)
    size, source = _vocab(folder, vocab_size, tokenizer, manifest_entry)
    check = DatasetCheck(folder, size, source)
    shards = _shards(folder)
    for split in SPLITS:
        numbered = sorted((int(m.group(2)), p) for p, m in shards if m.group(1) == split)
        check.splits[split] = SplitCheck()
        expected = list(range(len(numbered)))
        if not numbered and split == "val":  # every score needs it; train may be fetched later
            check.problems.append(f"{folder}: no {split} shards (fineweb_{split}_000000.bin)")
        elif [n for n, _ in numbered] != expected:
            gaps = sorted(set(range(max(n for n, _ in numbered) + 1)) - {n for n, _ in numbered})
            check.problems.append(f"{folder}: {split} shards missing: numbers {gaps[:10]}")
        for _, shard in numbered:
            _check_shard(shard, size, check.splits[split], check.problems)
    if manifest_entry is not None:
        check.problems += _manifest_problems(folder, manifest_entry, check.splits)
        check.problems += _tokenizer_problems(folder.parent.parent, manifest_entry)
    return check


def _missing_dataset(folder: Path) -> DatasetCheck:
    check = DatasetCheck(folder, 0, "")
    check.problems.append(f"{folder}: missing; {folder.parent.parent / MANIFEST} lists it")
    return check


def _listed_datasets(manifest: dict[str, Any] | None) -> list[str]:
    """The datasets a manifest says must be here: those its file list (the embedded corpus's
    form) names. The challenge's form names every variant of the hub, of which a fetch
    brings one, so none of them is required."""
    files = manifest.get("files") if manifest is not None else None
    if not isinstance(files, dict):
        return []
    parts = [Path(name).parts for name in files]
    return sorted({p[1] for p in parts if len(p) > 2 and p[0] == "datasets"})


def _listed_files_check(root: Path, files: dict[str, Any]) -> DatasetCheck:
    """Every file the manifest lists, against its recorded size and sha256."""
    check = DatasetCheck(root / MANIFEST, 0, "")
    for name, entry in sorted(files.items()):
        path = root / name
        entry = entry if isinstance(entry, dict) else {}
        if not path.is_file():
            check.problems.append(f"{path}: missing; {root / MANIFEST} lists it")
        elif path.stat().st_size != entry.get("bytes"):
            check.problems.append(
                f"{path}: {path.stat().st_size} bytes, {MANIFEST} says {entry.get('bytes')}"
            )
        elif _sha256(path) != entry.get("sha256"):
            check.problems.append(f"{path}: sha256 differs from {MANIFEST}'s")
    return check


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tokenizer_problems(root: Path, entry: dict[str, Any]) -> list[str]:
    """The tokenizer files the challenge's manifest gives this dataset, each present."""
    manifest = _read_manifest(root / MANIFEST) or {}
    tokenizers = [t for t in manifest.get("tokenizers", []) if isinstance(t, dict)]
    tokenizer = next((t for t in tokenizers if t.get("name") == entry.get("tokenizer_name")), {})
    paths = [tokenizer.get(key) for key in ("model_path", "vocab_path", "path")]
    return [
        f"{root / p}: missing; the tokenizer of {entry.get('name')} in {root / MANIFEST}"
        for p in paths
        if isinstance(p, str) and p and not (root / p).is_file()
    ]


def _check_shard(path: Path, vocab_size: int, split: SplitCheck, problems: list[str]) -> None:
    try:
        header = read_header(path)
    except ShardError as err:
        problems.append(str(err))
        return
    split.files += 1
    split.tokens += header.count
    tokens = np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(header.count,))
    for start in range(0, header.count, _CHUNK_TOKENS):
        chunk = np.asarray(tokens[start : start + _CHUNK_TOKENS])
        top = int(chunk.max()) if chunk.size else -1
        split.max_token = max(split.max_token, top)
        split.documents += int(np.count_nonzero(chunk == BOS_ID))
        if top >= vocab_size:
            at = start + int(np.argmax(chunk >= vocab_size))
            problems.append(
                f"{path}: token {int(tokens[at])} at position {at} is outside the vocabulary "
                f"(0..{vocab_size - 1})"
            )
            break
    del tokens


def _shards(folder: Path) -> list[tuple[Path, re.Match[str]]]:
    found = []
    for path in sorted(folder.glob("fineweb_*.bin")):
        match = _SHARD.fullmatch(path.name)
        if match:
            found.append((path, match))
    return found


def _vocab(
    folder: Path, vocab_size: int | None, tokenizer: Path | None, entry: dict[str, Any] | None
) -> tuple[int, str]:
    if tokenizer is not None:
        return len(load_sentencepiece(tokenizer)), f"--tokenizer {tokenizer}"
    if vocab_size is not None:
        if vocab_size < 1:
            raise UserError(f"--vocab-size: {vocab_size} is not positive")
        return vocab_size, "--vocab-size"
    if entry is not None and isinstance(entry.get("vocab_size"), int):
        return int(entry["vocab_size"]), "manifest.json"
    if "byte260" in folder.name:
        return BYTE260_VOCAB_SIZE, "folder name"
    found = _NAME_VOCAB.search(folder.name)
    if found:
        return int(found.group(1)), "folder name"
    raise UserError(
        f"{folder}: cannot tell the vocabulary size from the folder name; "
        "pass --vocab-size N or --tokenizer MODEL"
    )


def _manifest_entry(folder: Path) -> dict[str, Any] | None:
    """The challenge manifest's entry for this dataset (`ROOT/manifest.json`, the folder
    being `ROOT/datasets/<name>`), or None when there is none."""
    manifest = _read_manifest(folder.parent.parent / MANIFEST)
    datasets = manifest.get("datasets") if manifest is not None else None
    if not isinstance(datasets, list):
        return None
    return next((d for d in datasets if isinstance(d, dict) and d.get("name") == folder.name), None)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """A manifest.json as a dict, or None when there is none (or it is not a JSON object)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _manifest_problems(
    folder: Path, entry: dict[str, Any], splits: dict[str, SplitCheck]
) -> list[str]:
    """Token counts against the manifest, for each split whose files are all present."""
    stats = entry.get("stats") or {}
    problems = []
    for split in SPLITS:
        files, tokens = stats.get(f"files_{split}"), stats.get(f"tokens_{split}")
        found = splits[split]
        if split == "val" and isinstance(files, int) and found.files != files:
            problems.append(f"{folder}: {found.files} val shards, the manifest lists {files}")
        if found.files == files and isinstance(tokens, int) and found.tokens != tokens:
            problems.append(
                f"{folder}: {split} shards hold {found.tokens} tokens, the manifest says {tokens}"
            )
    return problems
