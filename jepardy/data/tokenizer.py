"""Tokenizers and the per-token byte tables that turn a token loss into val_bpb.

Two vocabularies share one id layout for the specials (0 pad, 1 bos, 2 eos, 3 unk):
- SentencePiece BPE models, trained here deterministically (`train_sentencepiece`);
- `byte260`: byte b is id b + 4, no tokenizer file (`encode_bytes`, `decode_bytes`).

val_bpb needs the number of UTF-8 bytes each target token stands for (study.md, "Data"):
`base_bytes[target] + (has_leading_space[target] and not is_boundary[prev])`. The leading
space of a piece after a boundary token (BOS) is SentencePiece's dummy prefix, which is not in
the text, so it counts nothing. This module is numpy-only: the trainer builds torch tensors from
the `ByteTables` arrays.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from jepardy.data.shards import write_bytes_atomic
from jepardy.errors import UserError

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
BYTE_OFFSET = 4  # byte260: byte b has id b + BYTE_OFFSET
BYTE260_VOCAB_SIZE = 256 + BYTE_OFFSET
SPACE_MARK = "▁"  # U+2581, SentencePiece's stand-in for a space
# SentencePiece skips training lines longer than this (its default max_sentence_length);
# train_sentencepiece raises the limit to the longest line so no text is dropped silently.
_SP_DEFAULT_MAX_LINE_BYTES = 4192


@dataclass(frozen=True)
class ByteTables:
    """Per-token-id byte accounting for val_bpb; all arrays have length vocab_size.

    base_bytes: UTF-8 bytes of the token itself (piece without its leading space mark).
    has_leading_space: the piece starts with a space mark worth one byte when it is real.
    is_boundary: control/unknown/unused ids (BOS among them); they count 0 bytes, and a
      leading space right after one of them is the dummy prefix, worth 0 bytes.
    """

    base_bytes: np.ndarray  # int16
    has_leading_space: np.ndarray  # bool
    is_boundary: np.ndarray  # bool

    @property
    def vocab_size(self) -> int:
        return int(self.base_bytes.shape[0])


def train_sentencepiece(text_docs: list[str], model_prefix: Path, vocab_size: int = 1024) -> Path:
    """Train a SentencePiece BPE model on `text_docs`; write `<prefix>.model` and `.vocab`.

    Returns the `.model` path. The output is the same bytes on every call with the same
    documents and the same SentencePiece build:
    - one thread, every line used in order (no sampling, no shuffling);
    - the model proto is returned in memory instead of being written by SentencePiece,
      because SentencePiece records `model_prefix` (a path) inside the model, so two
      otherwise identical models trained into different directories differ in bytes.
    The trainer sees each non-empty line of each document as one sentence (SentencePiece
    reads sentences, not multi-line documents); a newline is therefore never a piece and is
    encoded by byte fallback. Normalization is the identity and whitespace is kept as is, so
    decoding an encoding gives the text back and the byte tables count the text's UTF-8 bytes.
    """
    lines = [line for doc in text_docs for line in doc.split("\n") if line]
    if not lines:
        raise ValueError("train_sentencepiece: the documents contain no text")
    longest_line_bytes = max(len(line.encode("utf-8")) for line in lines)
    # Nothing below samples, given input_sentence_size=0; the seed pins it in case a
    # SentencePiece release starts to.
    spm.set_random_generator_seed(0)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=proto,
        model_type="bpe",
        vocab_size=vocab_size,
        pad_id=PAD_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        max_sentence_length=max(_SP_DEFAULT_MAX_LINE_BYTES, longest_line_bytes),
        minloglevel=2,  # errors only (0 info, 1 warning)
    )
    model_path = Path(f"{model_prefix}.model")
    write_bytes_atomic(model_path, proto.getvalue())
    write_bytes_atomic(Path(f"{model_prefix}.vocab"), _vocab_text(model_path).encode("utf-8"))
    return model_path


def _vocab_text(model_path: Path) -> str:
    """The `.vocab` file SentencePiece itself would write: `piece<TAB>score` per id.

    Scores are printed like C++'s default stream formatting (`%g`), e.g. `-0`, `-761`.
    """
    sp = load_sentencepiece(model_path)
    return "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(len(sp)))


def load_sentencepiece(model_path: Path) -> spm.SentencePieceProcessor:
    """Load a SentencePiece model; a missing or unreadable file is a UserError."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UserError(f"{model_path}: tokenizer model not found")
    try:
        return spm.SentencePieceProcessor(model_file=str(model_path))
    except (OSError, RuntimeError) as e:
        raise UserError(f"{model_path}: not a SentencePiece model ({e})") from e


def encode_bytes(text: str) -> np.ndarray:
    """byte260 encoding of `text`: its UTF-8 bytes shifted by 4, as uint16 ids (no BOS)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16) + BYTE_OFFSET


def decode_bytes(ids: np.ndarray) -> str:
    """Inverse of `encode_bytes`: special ids (0..3) are skipped, invalid UTF-8 is replaced.

    Model samples need not be valid UTF-8, hence `errors="replace"`; an id >= 260 is not in
    the vocabulary (as is a negative id) and raises ValueError.
    """
    ids = np.asarray(ids, dtype=np.int64)
    outside = ids[(ids < 0) | (ids >= BYTE260_VOCAB_SIZE)]
    if outside.size:
        raise ValueError(f"decode_bytes: id {int(outside[0])} is outside byte260 (0..259)")
    data = (ids[ids >= BYTE_OFFSET] - BYTE_OFFSET).astype(np.uint8).tobytes()
    return data.decode("utf-8", errors="replace")


def byte260_tables() -> ByteTables:
    """Byte tables of byte260: specials are boundaries worth 0 bytes, every byte id 1 byte."""
    is_boundary = np.zeros(BYTE260_VOCAB_SIZE, dtype=bool)
    is_boundary[:BYTE_OFFSET] = True
    return ByteTables(
        base_bytes=(~is_boundary).astype(np.int16),
        has_leading_space=np.zeros(BYTE260_VOCAB_SIZE, dtype=bool),
        is_boundary=is_boundary,
    )


def sentencepiece_byte_tables(model_path: Path, vocab_size: int) -> ByteTables:
    """Byte tables of a SentencePiece model, for a model with `vocab_size` output ids.

    Per piece, as the challenge counts (study.md, "Data"): control/unknown/unused pieces are
    boundaries worth 0 bytes; byte-fallback pieces (`<0xAB>`) are 1 byte; any other piece is
    the UTF-8 length of its text without a leading `▁`, and has_leading_space says whether
    it had one. `vocab_size` may exceed the model's piece count (a padded embedding table):
    the extra ids are boundaries worth 0 bytes. A smaller `vocab_size` is a UserError.
    """
    sp = load_sentencepiece(model_path)
    n_pieces = len(sp)
    if vocab_size < n_pieces:
        raise UserError(
            f"{model_path}: tokenizer has {n_pieces} pieces, more than vocab_size {vocab_size}"
        )
    base_bytes = np.zeros(vocab_size, dtype=np.int16)
    has_leading_space = np.zeros(vocab_size, dtype=bool)
    is_boundary = np.ones(vocab_size, dtype=bool)
    for i in range(n_pieces):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        is_boundary[i] = False
        if sp.is_byte(i):
            base_bytes[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith(SPACE_MARK):
            has_leading_space[i] = True
            piece = piece[len(SPACE_MARK) :]
        base_bytes[i] = len(piece.encode("utf-8"))
    return ByteTables(base_bytes, has_leading_space, is_boundary)


def count_target_bytes(
    prev_ids: np.ndarray, target_ids: np.ndarray, tables: ByteTables
) -> np.ndarray:
    """UTF-8 bytes of each target token given the token before it (same shapes), as int64.

    bytes = base_bytes[target] + (has_leading_space[target] and not is_boundary[prev]).
    Summed over a document encoded with BOS in front (targets = ids[1:], prevs = ids[:-1])
    this is the document's UTF-8 length, exactly, for any text without a literal `▁` (U+2581):
    SentencePiece reads that character as a space, so it counts 1 byte instead of 3.
    """
    prev_ids = np.asarray(prev_ids)
    target_ids = np.asarray(target_ids)
    if prev_ids.shape != target_ids.shape:
        raise ValueError(
            f"count_target_bytes: prev_ids shape {prev_ids.shape} != "
            f"target_ids shape {target_ids.shape}"
        )
    space = tables.has_leading_space[target_ids] & ~tables.is_boundary[prev_ids]
    return tables.base_bytes[target_ids].astype(np.int64) + space
