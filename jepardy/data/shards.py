"""The challenge's binary token shards (`fineweb_{train,val}_NNNNNN.bin`).

Format (openai/parameter-golf): a header of 256 little-endian int32 -- `[0]` magic 20240520,
`[1]` version 1, `[2]` token count, the rest zero -- then `count` little-endian uint16 tokens.
A valid file is exactly `1024 + 2 * count` bytes long. Every problem with a shard file is a
`ShardError` whose one-line message starts with the file's path and says what is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jepardy.errors import UserError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_BYTES = 2  # uint16
_HEADER_DTYPE = np.dtype("<i4")
_TOKEN_DTYPE = np.dtype("<u2")


class ShardError(UserError):
    """A shard file that is missing, malformed, or tokens that cannot be stored in one."""


@dataclass(frozen=True)
class ShardHeader:
    """A shard's validated header. `count` is in tokens, `bytes_total` is the file size."""

    path: Path
    magic: int
    version: int
    count: int
    bytes_total: int


def write_bytes_atomic(path: Path, *parts: bytes | memoryview) -> int:
    """Write `parts` back to back into `path` atomically; return the bytes written.

    The data goes to a temporary sibling first and is renamed over `path` with `os.replace`,
    so a reader sees either the old file or the complete new one, never a torn write.
    Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    written = 0
    try:
        with open(tmp, "wb") as f:
            for part in parts:
                written += f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return written


def write_shard(path: Path, tokens: np.ndarray) -> int:
    """Write a 1-D integer array of tokens as a shard at `path`; return the file's bytes.

    Tokens must be integers in [0, 65535] (uint16); anything else raises ShardError rather
    than being wrapped around. The write is atomic (see `write_bytes_atomic`).
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ShardError(
            f"{path}: tokens must be a 1-D integer array, got dtype {tokens.dtype} "
            f"with shape {tokens.shape}"
        )
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) > np.iinfo(np.uint16).max):
        raise ShardError(
            f"{path}: token ids range from {int(tokens.min())} to {int(tokens.max())}, "
            f"a shard stores uint16 ids in [0, 65535]"
        )
    if tokens.size > np.iinfo(np.int32).max:
        raise ShardError(f"{path}: {tokens.size} tokens do not fit the int32 header count")
    header = np.zeros(HEADER_INTS, dtype=_HEADER_DTYPE)
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, tokens.size)
    body = np.ascontiguousarray(tokens, dtype=_TOKEN_DTYPE)
    return write_bytes_atomic(Path(path), header.data, body.data)


def read_header(path: Path) -> ShardHeader:
    """Read and validate a shard's header against the file's size.

    Raises ShardError for a missing file, a file shorter than the header, a wrong magic or
    version, a negative count, or a size other than `1024 + 2 * count` (truncated or with
    trailing bytes).
    """
    path = Path(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "shard file not found"
        raise ShardError(f"{path}: {what}")
    bytes_total = path.stat().st_size
    if bytes_total < HEADER_BYTES:
        raise ShardError(
            f"{path}: size {bytes_total} bytes, shorter than the {HEADER_BYTES}-byte header"
        )
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(HEADER_BYTES), dtype=_HEADER_DTYPE)
    magic, version, count = (int(v) for v in header[:3])
    if magic != SHARD_MAGIC:
        raise ShardError(f"{path}: magic {magic}, expected {SHARD_MAGIC} (not a challenge shard)")
    if version != SHARD_VERSION:
        raise ShardError(f"{path}: version {version}, expected {SHARD_VERSION}")
    if count < 0:
        raise ShardError(f"{path}: header token count {count} is negative")
    expected = HEADER_BYTES + TOKEN_BYTES * count
    if bytes_total != expected:
        raise ShardError(
            f"{path}: size {bytes_total} bytes, expected {HEADER_BYTES} + {TOKEN_BYTES}*{count} "
            f"= {expected} from header token count {count}"
        )
    return ShardHeader(
        path=path, magic=magic, version=version, count=count, bytes_total=bytes_total
    )


def read_shard(path: Path) -> np.ndarray:
    """Return a shard's tokens as a 1-D little-endian uint16 array (validated first)."""
    header = read_header(path)
    tokens = np.fromfile(header.path, dtype=_TOKEN_DTYPE, count=header.count, offset=HEADER_BYTES)
    if tokens.size != header.count:  # the file shrank between the size check and the read
        raise ShardError(f"{path}: read {tokens.size} tokens, header says {header.count}")
    return tokens


def list_shards(data_dir: Path, split: str) -> list[Path]:
    """Return the sorted `fineweb_{split}_*.bin` files in `data_dir`; none is a ShardError."""
    data_dir = Path(data_dir)
    pattern = f"fineweb_{split}_*.bin"
    if not data_dir.is_dir():
        raise ShardError(f"{data_dir}: data directory not found (looking for {pattern})")
    paths = sorted(data_dir.glob(pattern))
    if not paths:
        raise ShardError(f"{data_dir}: no shard files matching {pattern}")
    return paths
