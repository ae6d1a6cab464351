"""A spec file read as TOML: its bytes, its UTF-8 text, its tables; each failure one line
naming the file (and, for TOML syntax, the line and column).

Every key of a spec is a name (a table, a lane, an arm, a param), so one longer than
MAX_KEY_CHARS is refused here, before any message has to quote it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from jepardy.errors import UserError, clipped_repr

MAX_KEY_CHARS = 100

_TOML_WHERE = re.compile(r"(?P<msg>.*) \(at (?P<where>line \d+, column \d+|end of document)\)")


def describe(value: Any) -> str:
    """A TOML value as a message names it: `[1, 2] is a list`, `{...} is a table`."""
    kind = {dict: "table", list: "list"}.get(type(value), type(value).__name__)
    return f"{clipped_repr(value)} is a {kind}"


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
        tables = tomllib.loads(text)
    except RecursionError:
        raise UserError(
            f"{path}: syntax: arrays or tables nested too deep to read; expected valid TOML"
        ) from None
    except tomllib.TOMLDecodeError as err:
        # Python 3.11's error carries its position only in the message: "... (at line 2,
        # column 5)". Move it to the field slot so the line reads like every other error.
        found = _TOML_WHERE.fullmatch(str(err))
        where, msg = (found["where"], found["msg"]) if found else ("syntax", str(err))
        raise UserError(f"{path}: {where}: {msg}; expected valid TOML") from None
    _check_keys(path, tables, "")
    return tables


def _check_keys(path: Path, table: dict[str, Any], where: str) -> None:
    for key, value in table.items():
        if len(key) > MAX_KEY_CHARS:
            raise UserError(
                f"{path}: {where}{clipped_repr(key)}: a key of {len(key):,} characters; "
                f"keys are names of at most {MAX_KEY_CHARS}"
            )
        if isinstance(value, dict):
            _check_keys(path, value, f"{where}{key}.")
