"""The challenge shard format: round trips and every way a shard file can be wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jepardy.data.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    SHARD_VERSION,
    ShardError,
    list_shards,
    read_header,
    read_shard,
    write_shard,
)
from jepardy.errors import UserError


def _shard_error(path: Path, read=read_shard) -> str:
    """The message of the ShardError that reading `path` raises; it must be one line."""
    with pytest.raises(ShardError) as info:
        read(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def _set_header_int(path: Path, index: int, value: int) -> None:
    data = bytearray(path.read_bytes())
    data[4 * index : 4 * index + 4] = value.to_bytes(4, "little", signed=True)
    path.write_bytes(bytes(data))


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "fineweb_val_000000.bin"
    tokens = np.array([1, 0, 65535, 300, 7], dtype=np.int64)
    written = write_shard(path, tokens)
    assert written == HEADER_BYTES + 2 * 5 == path.stat().st_size
    back = read_shard(path)
    assert back.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(back, tokens)
    header = read_header(path)
    assert (header.magic, header.version, header.count) == (SHARD_MAGIC, SHARD_VERSION, 5)
    assert header.bytes_total == written and header.path == path


def test_layout_is_little_endian_int32_header_then_uint16(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, np.array([258, 1], dtype=np.uint16))
    data = path.read_bytes()
    assert data[:12] == b"".join(v.to_bytes(4, "little") for v in (20240520, 1, 2))
    assert data[12:HEADER_BYTES] == bytes(HEADER_BYTES - 12)
    assert data[HEADER_BYTES:] == bytes([2, 1, 1, 0])


def test_empty_shard(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    assert write_shard(path, np.zeros(0, dtype=np.uint16)) == HEADER_BYTES
    assert read_shard(path).size == 0


def test_overwrite_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "s.bin"
    write_shard(path, np.arange(10))
    write_shard(path, np.arange(3))
    np.testing.assert_array_equal(read_shard(path), [0, 1, 2])
    assert [p.name for p in path.parent.iterdir()] == ["s.bin"]


@pytest.mark.parametrize(
    ("tokens", "problem"),
    [
        (np.array([0, 65536]), "token ids range from 0 to 65536"),
        (np.array([-1, 5]), "token ids range from -1 to 5"),
        (np.array([1.0, 2.0]), "must be a 1-D integer array, got dtype float64"),
        (np.zeros((2, 2), dtype=np.int64), "must be a 1-D integer array"),
    ],
)
def test_write_refuses_tokens_a_shard_cannot_hold(
    tmp_path: Path, tokens: np.ndarray, problem: str
) -> None:
    path = tmp_path / "s.bin"
    with pytest.raises(ShardError, match=problem):
        write_shard(path, tokens)
    assert not path.exists()


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "fineweb_val_000000.bin"
    assert _shard_error(path) == f"{path}: shard file not found"
    assert issubclass(ShardError, UserError)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, np.arange(512))
    path.write_bytes(path.read_bytes()[:-1])
    assert _shard_error(path) == (
        f"{path}: size 2047 bytes, expected 1024 + 2*512 = 2048 from header token count 512"
    )


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(4))
    path.write_bytes(path.read_bytes() + b"\0\0")
    assert _shard_error(path, read_header) == (
        f"{path}: size 1034 bytes, expected 1024 + 2*4 = 1032 from header token count 4"
    )


def test_file_shorter_than_header(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    path.write_bytes(b"\0" * 100)
    assert _shard_error(path) == f"{path}: size 100 bytes, shorter than the 1024-byte header"


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(4))
    _set_header_int(path, 0, 12345)
    assert _shard_error(path) == f"{path}: magic 12345, expected 20240520 (not a challenge shard)"


def test_wrong_version(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(4))
    _set_header_int(path, 1, 2)
    assert _shard_error(path) == f"{path}: version 2, expected 1"


def test_negative_count(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(4))
    _set_header_int(path, 2, -3)
    assert _shard_error(path) == f"{path}: header token count -3 is negative"


def test_directory_is_not_a_shard(tmp_path: Path) -> None:
    assert _shard_error(tmp_path) == f"{tmp_path}: is not a regular file"


def test_list_shards_sorted_by_split(tmp_path: Path) -> None:
    for name in ["fineweb_train_000001.bin", "fineweb_train_000000.bin", "fineweb_val_000000.bin"]:
        write_shard(tmp_path / name, np.arange(3))
    (tmp_path / "notes.txt").write_text("not a shard")
    assert [p.name for p in list_shards(tmp_path, "train")] == [
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
    ]
    assert [p.name for p in list_shards(tmp_path, "val")] == ["fineweb_val_000000.bin"]


def test_list_shards_no_match_names_directory_and_pattern(tmp_path: Path) -> None:
    with pytest.raises(ShardError) as info:
        list_shards(tmp_path, "val")
    assert str(info.value) == f"{tmp_path}: no shard files matching fineweb_val_*.bin"
    missing = tmp_path / "nope"
    with pytest.raises(ShardError) as info:
        list_shards(missing, "train")
    assert str(info.value) == (
        f"{missing}: data directory not found (looking for fineweb_train_*.bin)"
    )
