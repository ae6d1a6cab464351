"""The embedded corpus: layout, manifest, split, byte accounting, reproducible builds."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from pydoc_data import topics as pydoc_topics

import numpy as np
import pytest

from jepardy.data.corpus import (
    EmbeddedCorpus,
    build_embedded,
    is_val_key,
    load_documents,
    shard_relpath,
)
from jepardy.data.shards import list_shards, read_shard
from jepardy.data.tokenizer import (
    BOS_ID,
    byte260_tables,
    count_target_bytes,
    decode_bytes,
    load_sentencepiece,
    sentencepiece_byte_tables,
)

EXPECTED_FILES = [
    "datasets/embedded_byte260/fineweb_train_000000.bin",
    "datasets/embedded_byte260/fineweb_val_000000.bin",
    "datasets/embedded_sp1024/fineweb_train_000000.bin",
    "datasets/embedded_sp1024/fineweb_val_000000.bin",
    "manifest.json",
    "tokenizers/embedded_1024_bpe.model",
    "tokenizers/embedded_1024_bpe.vocab",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedCorpus:
    return build_embedded(tmp_path_factory.mktemp("embedded"))


def _file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _split_documents(tokens: np.ndarray) -> list[np.ndarray]:
    """Cut a shard's token stream at each BOS; every piece starts with BOS."""
    starts = np.flatnonzero(tokens == BOS_ID)
    return np.split(tokens, starts[1:])


def test_layout_and_manifest(corpus: EmbeddedCorpus) -> None:
    root = corpus.root
    assert sorted(_file_digests(root)) == EXPECTED_FILES
    manifest = json.loads(corpus.manifest_path.read_text(encoding="utf-8"))
    assert manifest["source"] == "pydoc_data.topics"
    assert manifest["python_version"].count(".") == 2
    for relpath, entry in manifest["files"].items():
        data = (root / relpath).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    for split in ("train", "val"):
        sp_path = shard_relpath("embedded_sp1024", split)
        byte_path = shard_relpath("embedded_byte260", split)
        assert manifest["files"][sp_path]["tokens"] == corpus.sp1024_tokens[split]
        assert manifest["files"][byte_path]["tokens"] == corpus.byte260_tokens[split]
        assert read_shard(root / sp_path).size == corpus.sp1024_tokens[split]
    assert list_shards(corpus.sp1024_dir, "val") == [corpus.sp1024_dir / "fineweb_val_000000.bin"]
    assert corpus.tokenizer_model == root / "tokenizers/embedded_1024_bpe.model"


def test_split_rule_covers_every_topic_once() -> None:
    docs = load_documents()
    train_keys = [d.key for d in docs["train"]]
    val_keys = [d.key for d in docs["val"]]
    assert sorted(train_keys + val_keys) == sorted(pydoc_topics.topics)
    assert train_keys == sorted(train_keys) and val_keys == sorted(val_keys)
    assert all(is_val_key(k) for k in val_keys) and not any(is_val_key(k) for k in train_keys)
    val_bytes = sum(len(d.text.encode("utf-8")) for d in docs["val"])
    assert val_bytes >= 30_000


def test_every_document_starts_with_bos(corpus: EmbeddedCorpus) -> None:
    docs = load_documents()
    for directory in (corpus.sp1024_dir, corpus.byte260_dir):
        for split in ("train", "val"):
            tokens = read_shard(directory / f"fineweb_{split}_000000.bin")
            assert tokens[0] == BOS_ID
            assert int((tokens == BOS_ID).sum()) == len(docs[split])


def test_byte260_shards_decode_to_the_documents(corpus: EmbeddedCorpus) -> None:
    docs = load_documents()
    for split in ("train", "val"):
        tokens = read_shard(corpus.byte260_dir / f"fineweb_{split}_000000.bin")
        decoded = [decode_bytes(doc) for doc in _split_documents(tokens)]
        assert decoded == [d.text for d in docs[split]]


def test_sp1024_byte_sum_equals_utf8_length_per_document(corpus: EmbeddedCorpus) -> None:
    # With identity normalization the byte tables account for every byte of every document,
    # exactly: decoding gives the text back and the summed target bytes are its UTF-8 length.
    sp = load_sentencepiece(corpus.tokenizer_model)
    tables = sentencepiece_byte_tables(corpus.tokenizer_model, 1024)
    docs = load_documents()
    for split in ("train", "val"):
        tokens = read_shard(corpus.sp1024_dir / f"fineweb_{split}_000000.bin").astype(np.int64)
        for doc, ids in zip(docs[split], _split_documents(tokens), strict=True):
            assert sp.decode(ids[1:].tolist()) == doc.text, doc.key
            n_bytes = int(count_target_bytes(ids[:-1], ids[1:], tables).sum())
            assert n_bytes == len(doc.text.encode("utf-8")), doc.key


def test_val_shard_byte_sum_matches_manifest(corpus: EmbeddedCorpus) -> None:
    # What eval does: one stream, every token a target of the one before it.
    manifest = json.loads(corpus.manifest_path.read_text(encoding="utf-8"))
    val_bytes = manifest["documents"]["val"]["text_bytes"]
    for directory, tables in [
        (corpus.sp1024_dir, sentencepiece_byte_tables(corpus.tokenizer_model, 1024)),
        (corpus.byte260_dir, byte260_tables()),
    ]:
        tokens = read_shard(directory / "fineweb_val_000000.bin").astype(np.int64)
        assert int(count_target_bytes(tokens[:-1], tokens[1:], tables).sum()) == val_bytes


def test_embedded_tables_hand_computed(corpus: EmbeddedCorpus) -> None:
    sp = load_sentencepiece(corpus.tokenizer_model)
    tables = sentencepiece_byte_tables(corpus.tokenizer_model, 1024)
    the, quote = sp.piece_to_id("▁the"), sp.piece_to_id("▁“")
    eszett, newline, normal = sp.piece_to_id("ß"), sp.piece_to_id("<0x0A>"), sp.piece_to_id("e")
    assert [sp.id_to_piece(i) for i in (the, quote, eszett)] == ["▁the", "▁“", "ß"]
    prev = np.array([normal, BOS_ID, normal, BOS_ID, normal, normal, normal])
    target = np.array([the, the, quote, quote, eszett, newline, BOS_ID])
    # " the", "the" (dummy prefix), " “" (1 + 3), "“", "ß" (2), "\n" (byte fallback), BOS
    assert list(count_target_bytes(prev, target, tables)) == [4, 3, 4, 3, 2, 1, 0]


def test_build_is_byte_identical(corpus: EmbeddedCorpus, tmp_path: Path) -> None:
    again = build_embedded(tmp_path / "again")
    assert again.rebuilt
    assert _file_digests(again.root) == _file_digests(corpus.root)


def test_intact_build_is_reused_and_damage_rebuilt(corpus: EmbeddedCorpus, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(corpus.root, root)
    digests = _file_digests(root)
    val_shard = root / shard_relpath("embedded_sp1024", "val")
    mtime_ns = val_shard.stat().st_mtime_ns

    reused = build_embedded(root)
    assert not reused.rebuilt and reused.sp1024_tokens == corpus.sp1024_tokens
    assert val_shard.stat().st_mtime_ns == mtime_ns

    data = bytearray(val_shard.read_bytes())
    data[-1] ^= 0xFF
    val_shard.write_bytes(bytes(data))
    assert build_embedded(root).rebuilt
    assert _file_digests(root) == digests

    (root / "tokenizers/embedded_1024_bpe.vocab").unlink()
    assert build_embedded(root).rebuilt
    assert build_embedded(root, force=True).rebuilt
    assert _file_digests(root) == digests
