"""What `jepardy ingest` labels a run with: the command line's `--sweep`, `--lane`, `--set`
and `--map`, and what a file's path says (its seed, its arm).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepardy.errors import UserError
from jepardy.ingest.logline import typed_value
from jepardy.ingest.tables import LABEL_FIELDS, parse_cell
from jepardy.spec import challenge_env
from jepardy.trainer.config import schema

_SET_KEY = re.compile(r"[A-Za-z_][\w.]*")
_SEED_WORD = re.compile(r"(?:^|(?<=[_\-.]))seed[_\-]?(\d+)(?=$|[_\-.])", re.IGNORECASE)
_SEED_SHORT = re.compile(r"(?:^|(?<=[_\-]))s(\d+)(?=$|[_\-.])")
MAX_NAME = 200  # the store's sweep, lane and arm columns
UNKNOWN_SEED = -1


@dataclass(frozen=True)
class Labels:
    """What the command line adds: `--sweep`, `--lane`, `--set key=value` (filling what a
    source leaves out; `arm` replaces a log's file-name arm) and `--map column=field`."""

    sweep: str | None = None
    lane: str | None = None
    sets: Mapping[str, str] = field(default_factory=dict)
    maps: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TypedSets:
    labels: dict[str, Any]
    params: dict[str, Any]


def parse_assignments(items: Sequence[str], option: str) -> dict[str, str]:
    """`["key=value", ...]` from a repeated option; a malformed item is a UserError."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} {item!r}: expected KEY=VALUE")
        pairs[key.strip()] = value.strip()
    return pairs


def typed_sets(sets: Mapping[str, str]) -> TypedSets:
    """`--set` values typed: labels (seed int, arm/variant/match text) and params (the
    challenge table's or the trainer schema's type; otherwise read as a number, bool or
    text)."""
    trainer = {name: spec["type"] for name, spec in schema().items()}
    labels: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key, text in sets.items():
        where = f"--set {key}={text}"
        if key in ("sweep", "lane"):
            raise UserError(f"{where}: use --{key} for the {key}")
        if not _SET_KEY.fullmatch(key):
            raise UserError(f"{where}: {key!r} is not a field name")
        if key in LABEL_FIELDS:
            labels[key] = _typed(text, LABEL_FIELDS[key], where)
            if key == "seed" and labels[key] < 0:
                raise UserError(f"{where}: a seed is an int >= 0")
            continue
        name = challenge_env.jepardy_name(key) or key
        type_name = (
            challenge_env.BY_NAME[name].type if name in challenge_env.BY_NAME else trainer.get(name)
        )
        params[name] = _typed(text, type_name, where) if type_name else typed_value(text)
    return TypedSets(labels, params)


def _typed(text: str, type_name: str, where: str) -> Any:
    try:
        value = parse_cell(text, type_name)
    except ValueError:
        value = None
    if value is None:
        raise UserError(f"{where}: {text!r} is not a {type_name}")
    return value


def seed_from_path(relative: Path) -> int | None:
    """The seed a path names (`train_seed42.log`, `seed_1337/train.log`, `train_s7.log`),
    the file name first; None when it names none."""
    parts = [relative.stem, *reversed(relative.parent.parts)]
    for pattern in (_SEED_WORD, _SEED_SHORT):
        for part in parts:
            found = pattern.search(part)
            if found:
                return int(found.group(1))
    return None


def arm_from_path(relative: Path) -> str:
    """The path without its extension and seed tokens: `train_seed42.log` -> "train",
    `runs/seed_1337/wd_0/train.log` -> "runs/wd_0/train"."""
    parts = [*relative.parent.parts, relative.stem]
    kept = []
    for part in parts:
        part = _SEED_SHORT.sub("", _SEED_WORD.sub("", part))
        part = re.sub(r"[_\-.]{2,}", "_", part).strip("_-.")
        if part:
            kept.append(part)
    return "/".join(kept) or "run"


def checked_name(value: str, what: str) -> str:
    if not value or len(value) > MAX_NAME:
        raise UserError(f"{what} {value[:60]!r}: a {what} name has 1 to {MAX_NAME} characters")
    return value
