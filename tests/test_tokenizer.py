"""SentencePiece training, the byte260 vocabulary and the per-token byte tables of val_bpb."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from jepardy.data.tokenizer import (
    BOS_ID,
    BYTE260_VOCAB_SIZE,
    ByteTables,
    byte260_tables,
    count_target_bytes,
    decode_bytes,
    encode_bytes,
    load_sentencepiece,
    sentencepiece_byte_tables,
    train_sentencepiece,
)
from jepardy.errors import UserError

TINY_VOCAB = 320  # 4 specials + 256 byte pieces + the characters + a few dozen merges


def _sentences() -> list[str]:
    """A few hundred short English sentences, fixed (no randomness)."""
    subjects = ["the cat", "the old dog", "a café owner", "the naïve child", "my neighbour"]
    verbs = ["sees", "likes", "paints", "follows", "visits", "counts"]
    objects = ["the river", "the tall tree", "two birds", "the garden gate", "42 apples"]
    endings = [".", "!", " again.", " every day."]
    return [
        f"{s.capitalize()} {v} {o}{e}"
        for s, v, o, e in itertools.product(subjects, verbs, objects, endings)
    ]


def _documents() -> list[str]:
    sentences = _sentences()
    return ["\n".join(sentences[i : i + 10]) for i in range(0, len(sentences), 10)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_sentencepiece(_documents(), tmp_path_factory.mktemp("tok") / "tiny", TINY_VOCAB)


def _bytes_of_document(text: str, sp, tables: ByteTables) -> int:
    ids = np.array([BOS_ID, *sp.encode(text)])
    return int(count_target_bytes(ids[:-1], ids[1:], tables).sum())


def test_training_writes_model_and_vocab(tiny_model: Path) -> None:
    sp = load_sentencepiece(tiny_model)
    assert len(sp) == TINY_VOCAB
    assert [sp.id_to_piece(i) for i in range(5)] == ["<pad>", "<s>", "</s>", "<unk>", "<0x00>"]
    assert sp.is_control(0) and sp.is_control(1) and sp.is_control(2) and sp.is_unknown(3)
    assert sum(sp.is_byte(i) for i in range(len(sp))) == 256
    vocab_lines = tiny_model.with_suffix(".vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab_lines) == TINY_VOCAB
    assert vocab_lines[:2] == ["<pad>\t0", "<s>\t0"]
    assert all(line.split("\t")[0] == sp.id_to_piece(i) for i, line in enumerate(vocab_lines))


def test_training_is_byte_identical_across_directories(tmp_path: Path, tiny_model: Path) -> None:
    # SentencePiece stores model_prefix inside the model when it writes the file itself;
    # train_sentencepiece must not let the output directory leak into the bytes.
    again = train_sentencepiece(_documents(), tmp_path / "elsewhere" / "tiny", TINY_VOCAB)
    assert again.read_bytes() == tiny_model.read_bytes()
    assert again.with_suffix(".vocab").read_bytes() == tiny_model.with_suffix(".vocab").read_bytes()


def test_training_refuses_empty_documents(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no text"):
        train_sentencepiece(["", "\n"], tmp_path / "t")


def test_encoding_round_trips_text_exactly(tiny_model: Path) -> None:
    # Identity normalization, whitespace kept: odd spacing, tabs, newlines and characters the
    # tokenizer never saw (byte fallback) all come back unchanged.
    sp = load_sentencepiece(tiny_model)
    text = "  Two  cats\tsee the river.\n\nThe € price…  "
    assert sp.decode(sp.encode(text)) == text


def test_sentencepiece_tables_hand_computed(tiny_model: Path) -> None:
    sp = load_sentencepiece(tiny_model)
    tables = sentencepiece_byte_tables(tiny_model, TINY_VOCAB)
    the, space = sp.piece_to_id("▁the"), sp.piece_to_id("▁")
    e_acute, newline = sp.piece_to_id("é"), sp.piece_to_id("<0x0A>")
    normal = sp.piece_to_id("e")
    assert sp.id_to_piece(the) == "▁the" and sp.id_to_piece(e_acute) == "é"
    assert (tables.base_bytes[the], tables.has_leading_space[the]) == (3, True)
    assert (tables.base_bytes[e_acute], tables.has_leading_space[e_acute]) == (2, False)
    assert tables.base_bytes[newline] == 1 and not tables.is_boundary[newline]
    assert tables.is_boundary[:4].all() and (tables.base_bytes[:4] == 0).all()

    def count(prev: int, target: int) -> int:
        return int(count_target_bytes(np.array([prev]), np.array([target]), tables)[0])

    assert count(normal, the) == 4  # " the"
    assert count(BOS_ID, the) == 3  # the space is the dummy prefix after BOS
    assert count(normal, space) == 1
    assert count(BOS_ID, space) == 0
    assert count(normal, e_acute) == 2  # UTF-8 "é" is two bytes
    assert count(normal, newline) == 1  # byte-fallback piece
    assert count(normal, BOS_ID) == 0


def test_sentencepiece_tables_sum_to_utf8_length(tiny_model: Path) -> None:
    sp = load_sentencepiece(tiny_model)
    tables = sentencepiece_byte_tables(tiny_model, TINY_VOCAB)
    for text in [
        "The cat sees the river.",
        " Leading space and trailing space ",
        "Tabs\tand\nnewlines\n\n  and  double  spaces",
        "Unseen: € ✓ 日本 — byte fallback",
        "",
    ]:
        assert _bytes_of_document(text, sp, tables) == len(text.encode("utf-8")), text


def test_literal_space_mark_is_the_known_gap(tiny_model: Path) -> None:
    # U+2581 in the text is indistinguishable from SentencePiece's space mark: it decodes as
    # a space and counts 1 byte instead of its 3 UTF-8 bytes. pydoc_data.topics has none.
    sp = load_sentencepiece(tiny_model)
    tables = sentencepiece_byte_tables(tiny_model, TINY_VOCAB)
    text = "a▁b"
    assert sp.decode(sp.encode(text)) == "a b"
    assert _bytes_of_document(text, sp, tables) == len(text.encode("utf-8")) - 2


def test_sentencepiece_tables_padded_vocab(tiny_model: Path) -> None:
    tables = sentencepiece_byte_tables(tiny_model, TINY_VOCAB + 8)
    assert tables.vocab_size == TINY_VOCAB + 8
    assert tables.is_boundary[TINY_VOCAB:].all() and (tables.base_bytes[TINY_VOCAB:] == 0).all()
    with pytest.raises(UserError, match=f"has {TINY_VOCAB} pieces, more than vocab_size 100"):
        sentencepiece_byte_tables(tiny_model, 100)


def test_missing_model_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.model"
    with pytest.raises(UserError) as info:
        sentencepiece_byte_tables(path, 1024)
    assert str(info.value) == f"{path}: tokenizer model not found"


def test_byte260_round_trip() -> None:
    text = "héllo, wörld ✓\n"
    ids = encode_bytes(text)
    assert ids.dtype == np.uint16
    assert list(ids[:2]) == [ord("h") + 4, 0xC3 + 4]
    assert decode_bytes(ids) == text
    assert decode_bytes(np.concatenate([[BOS_ID], ids, [2]])) == text  # specials skipped
    with pytest.raises(ValueError, match="id 260 is outside byte260"):
        decode_bytes(np.array([5, 260]))
    with pytest.raises(ValueError, match="id -1 is outside byte260"):
        decode_bytes(np.array([-1, 5]))


def test_byte260_tables() -> None:
    tables = byte260_tables()
    assert tables.vocab_size == BYTE260_VOCAB_SIZE == 260
    assert list(tables.base_bytes[:6]) == [0, 0, 0, 0, 1, 1]
    assert list(tables.is_boundary[:6]) == [True] * 4 + [False] * 2
    assert not tables.has_leading_space.any()
    text = "Bytes count one each: ✓"
    ids = np.concatenate([[BOS_ID], encode_bytes(text)]).astype(np.int64)
    assert count_target_bytes(ids[:-1], ids[1:], tables).sum() == len(text.encode("utf-8"))


def test_count_target_bytes_shapes() -> None:
    tables = byte260_tables()
    counts = count_target_bytes(np.full((2, 3), 10), np.array([[1, 10, 11], [0, 4, 259]]), tables)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [[0, 1, 1], [0, 1, 1]])
    with pytest.raises(ValueError, match="shape"):
        count_target_bytes(np.zeros(2, dtype=int), np.zeros(3, dtype=int), tables)
