"""A spec file read as TOML: its bytes, its UTF-8 text, its tables; each failure one line
naming the file (and, for TOML syntax, the line and column)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from jepardy.errors import UserError

_TOML_WHERE = re.compile(r"(?P<msg>.*) \(at (?P<where>line \d+, column \d+|end of document)\)")


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; expected a TOML spec file") from None
    except OSError as err:
        raise UserError(
            f"{path}: cannot read ({err.strerror}); expected a TOML spec file"
        ) from None


def decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: byte {err.start} is not UTF-8; TOML files are UTF-8") from None


def parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        # Python 3.11's error carries its position only in the message: "... (at line 2,
        # column 5)". Move it to the field slot so the line reads like every other error.
        found = _TOML_WHERE.fullmatch(str(err))
        where, msg = (found["where"], found["msg"]) if found else ("syntax", str(err))
        raise UserError(f"{path}: {where}: {msg}; expected valid TOML") from None
