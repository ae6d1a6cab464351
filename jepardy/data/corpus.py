"""The embedded corpus: real English text that ships with Python, turned into shards.

Without network access jepardy still needs real text for smoke tests and small sweeps, so it
uses CPython's `pydoc_data.topics` (the `help()` topics, ~79 documents, ~465 KB). Documents
are the topics in sorted key order. The split is a property of each key alone, so it stays
put when a Python release adds or drops topics:

    a topic is validation  <=>  sha256(key as UTF-8)[0] < VAL_HASH_BYTE_BELOW (32, i.e. 1/8)

With CPython 3.11 that is 13 documents and ~35 KB of validation text.

`build_embedded` writes the layout of docs/architecture.md under a root directory: the
SentencePiece tokenizer (trained on the training documents only), sp1024 and byte260 shards
(each document is BOS followed by its tokens) and `manifest.json`. Every build from the same
Python and SentencePiece gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from pydoc_data import topics as pydoc_topics
from typing import Any

import numpy as np
import sentencepiece as spm

from jepardy.data.shards import write_bytes_atomic, write_shard
from jepardy.data.tokenizer import (
    BOS_ID,
    encode_bytes,
    load_sentencepiece,
    train_sentencepiece,
)

SOURCE = "pydoc_data.topics"
VAL_HASH_BYTE_BELOW = 32
SP_VOCAB_SIZE = 1024
SPLITS = ("train", "val")
SP_DATASET = "embedded_sp1024"
BYTE_DATASET = "embedded_byte260"
TOKENIZER_STEM = "tokenizers/embedded_1024_bpe"
MANIFEST_NAME = "manifest.json"
# Bump when the recipe changes (split rule, tokenizer options, layout), so that an existing
# build made by the old recipe is rebuilt instead of trusted.
BUILD_VERSION = 1


@dataclass(frozen=True)
class Document:
    """One help topic: its key (e.g. "assert") and its text."""

    key: str
    text: str


@dataclass(frozen=True)
class EmbeddedCorpus:
    """Where a built embedded corpus lives and how many tokens each shard holds.

    `sp1024_tokens` and `byte260_tokens` map a split ("train", "val") to the token count of
    its shard, BOS tokens included. `rebuilt` is False when an intact build was reused.
    """

    root: Path
    manifest_path: Path
    tokenizer_model: Path
    sp1024_dir: Path
    byte260_dir: Path
    sp1024_tokens: dict[str, int]
    byte260_tokens: dict[str, int]
    rebuilt: bool


def is_val_key(key: str) -> bool:
    """The split rule: a topic is validation when sha256(key)'s first byte is below 32."""
    return hashlib.sha256(key.encode("utf-8")).digest()[0] < VAL_HASH_BYTE_BELOW


def load_documents() -> dict[str, list[Document]]:
    """The embedded documents by split ("train", "val"), each list in sorted key order."""
    docs: dict[str, list[Document]] = {split: [] for split in SPLITS}
    for key in sorted(pydoc_topics.topics):
        split = "val" if is_val_key(key) else "train"
        docs[split].append(Document(key, pydoc_topics.topics[key]))
    return docs


def shard_relpath(dataset: str, split: str) -> str:
    """A shard's path relative to the corpus root, e.g. `datasets/embedded_sp1024/...`."""
    return f"datasets/{dataset}/fineweb_{split}_000000.bin"


def build_embedded(root: Path = Path("data/embedded"), force: bool = False) -> EmbeddedCorpus:
    """Build the embedded corpus under `root`, or reuse an intact build there.

    An existing build is reused when `manifest.json` records this build recipe and this
    source text, and every file it lists has the recorded size and sha256. Otherwise (or with
    `force`) everything is rebuilt; the manifest is written last, so an interrupted build is
    never mistaken for a complete one.
    """
    root = Path(root)
    docs = load_documents()
    inputs = _recipe(docs)
    manifest = _read_manifest(root / MANIFEST_NAME)
    if force or manifest is None or not _is_intact(root, manifest, inputs):
        manifest = _build(root, docs, inputs)
        rebuilt = True
    else:
        rebuilt = False
    files = manifest["files"]
    return EmbeddedCorpus(
        root=root,
        manifest_path=root / MANIFEST_NAME,
        tokenizer_model=root / f"{TOKENIZER_STEM}.model",
        sp1024_dir=root / "datasets" / SP_DATASET,
        byte260_dir=root / "datasets" / BYTE_DATASET,
        sp1024_tokens={s: files[shard_relpath(SP_DATASET, s)]["tokens"] for s in SPLITS},
        byte260_tokens={s: files[shard_relpath(BYTE_DATASET, s)]["tokens"] for s in SPLITS},
        rebuilt=rebuilt,
    )


def _recipe(docs: dict[str, list[Document]]) -> dict[str, Any]:
    """What determines the build's bytes (besides library versions): recipe and source text."""
    source = hashlib.sha256()
    for split in SPLITS:
        for doc in docs[split]:
            source.update(json.dumps([split, doc.key, doc.text]).encode("utf-8"))
    return {"build_version": BUILD_VERSION, "source_sha256": source.hexdigest()}


def _expected_files() -> list[str]:
    """Every file a build writes besides the manifest, relative to the root, sorted."""
    shards = [shard_relpath(d, s) for d in (SP_DATASET, BYTE_DATASET) for s in SPLITS]
    return sorted([f"{TOKENIZER_STEM}.model", f"{TOKENIZER_STEM}.vocab", *shards])


def _build(root: Path, docs: dict[str, list[Document]], inputs: dict[str, Any]) -> dict[str, Any]:
    """Write tokenizer, shards and manifest under `root`; return the manifest."""
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    model_path = train_sentencepiece(
        [d.text for d in docs["train"]], root / TOKENIZER_STEM, SP_VOCAB_SIZE
    )
    sp = load_sentencepiece(model_path)
    encoders: dict[str, Callable[[str], np.ndarray]] = {
        SP_DATASET: lambda text: np.asarray(sp.encode(text), dtype=np.int64),
        BYTE_DATASET: encode_bytes,
    }
    token_counts: dict[str, int] = {}
    for dataset, encode in encoders.items():
        for split in SPLITS:
            tokens = _concat_with_bos([encode(d.text) for d in docs[split]])
            relpath = shard_relpath(dataset, split)
            write_shard(root / relpath, tokens)
            token_counts[relpath] = int(tokens.size)

    files: dict[str, dict[str, Any]] = {}
    for relpath in _expected_files():
        data = (root / relpath).read_bytes()
        files[relpath] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if relpath in token_counts:
            files[relpath]["tokens"] = token_counts[relpath]
    manifest = {
        **inputs,
        "source": SOURCE,
        "python_version": platform.python_version(),
        "sentencepiece_version": spm.__version__,
        "val_rule": f"sha256(topic key)[0] < {VAL_HASH_BYTE_BELOW}",
        "documents": {
            split: {
                "count": len(docs[split]),
                "text_bytes": sum(len(d.text.encode("utf-8")) for d in docs[split]),
                "keys": [d.key for d in docs[split]],
            }
            for split in SPLITS
        },
        "files": files,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(root / MANIFEST_NAME, text.encode("utf-8"))
    return manifest


def _concat_with_bos(encoded_docs: list[np.ndarray]) -> np.ndarray:
    """One token stream: BOS, then each document's tokens, for every document in order."""
    parts = [p for doc in encoded_docs for p in (np.array([BOS_ID]), doc)]
    return np.concatenate(parts).astype(np.uint16) if parts else np.zeros(0, dtype=np.uint16)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The parsed manifest, or None when it is missing or not a JSON object (then: rebuild)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _is_intact(root: Path, manifest: dict[str, Any], inputs: dict[str, Any]) -> bool:
    """True when the manifest matches this recipe and every listed file matches its entry."""
    if any(manifest.get(k) != v for k, v in inputs.items()):
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or sorted(files) != _expected_files():
        return False
    for relpath, entry in files.items():
        path = root / relpath
        if not path.is_file() or path.stat().st_size != entry.get("bytes"):
            return False
        if hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
            return False
    return True
