"""Record folders: which directories are records, the logs they hold, and what their
`submission.json` claims, checked against those logs.

A record folder (design/challenge-logs.md) holds `README.md`, `submission.json`, logs
(`train.log`, `train_seed42.log`, `logs/*.txt`) and the script. `submission.json` is the
authority a record is judged by, but it is sometimes rounded, sometimes a best seed rather
than a mean, sometimes disagrees with its own logs or puts the bpb in another field. So
ingest keeps both numbers and says how they relate, one line per check; it never picks one
silently.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_SUFFIXES = (".log", ".txt")
SUBMISSION = "submission.json"
README = "README.md"
# submission.json fields that hold the headline bpb when `val_bpb` does not.
BPB_FIELDS = ("val_bpb", "mean_val_bpb", "mean_bpb", "val_bpb_mean")
# Per-seed entry fields -> the result field they claim.
SEED_FIELDS = {
    "val_bpb": "val_bpb",
    "val_loss": "val_loss",
    "artifact_bytes": "artifact_bytes",
    "bytes_total": "artifact_bytes",
    "artifact_size_bytes": "artifact_bytes",
    "steps": "steps",
}
_SKIPPED_DIRS = ("__pycache__", "node_modules")


@dataclass(frozen=True)
class Submission:
    """A parsed submission.json. `per_seed` maps a seed to its claimed result fields
    (from `seed_results`, or from `seeds` when that is a dict); `problems` are reasons it
    could not be read in full."""

    path: Path
    data: dict[str, Any]
    per_seed: dict[int, dict[str, Any]]
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    """One comparison of a claim with the logs; `ok` False is a flag for the reader."""

    ok: bool
    text: str


def record_folders(root: Path) -> list[Path]:
    """The record folders at or below `root`, sorted.

    A folder with submission.json is a record (its subfolders belong to it). A folder with
    a README.md is a record unless records lie below it (then it is a collection, like the
    challenge's `records/`). Failing both, `root` is one record when it holds any log.
    Hidden folders are skipped.
    """
    found = _records_below(root)
    if found:
        return sorted(found)
    return [root] if log_files(root) else []


def log_files(folder: Path) -> list[Path]:
    """The .log and .txt files under `folder` (hidden paths skipped), shallowest first, so
    that of two copies of one run the top-level `train_seed42.log` comes before a
    `logs/<id>.txt` copy."""
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in LOG_SUFFIXES and p.is_file() and not _hidden(p.relative_to(folder))
    ]
    return sorted(files, key=lambda p: (len(p.relative_to(folder).parts), str(p)))


def read_submission(folder: Path) -> Submission | None:
    """The folder's submission.json, or None when it has none. Unreadable JSON is not an
    error (ingest goes on with the logs): it comes back with `problems` and no data."""
    path = folder / SUBMISSION
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return Submission(path, {}, {}, [f"{path}: not readable as JSON ({err}); ignored"])
    if not isinstance(data, dict):
        return Submission(path, {}, {}, [f"{path}: not a JSON object; ignored"])
    per_seed, problems = _per_seed(data, path)
    return Submission(path, data, per_seed, problems)


def seed_flags(submission: Submission, seed: int, result: dict[str, Any]) -> list[str]:
    """Flags for the fields where submission.json's entry for `seed` disagrees with the
    log's value (beyond the claim's own rounding)."""
    claims = submission.per_seed.get(seed, {})
    flags = []
    for name, claimed in claims.items():
        measured = result.get(name)
        if measured is None or _agrees(claimed, measured):
            continue
        line = result.get("provenance", {}).get(name, {}).get("line")
        flags.append(
            f"submission.json seed {seed} {name} {claimed} != log {measured}"
            + (f" (line {line})" if line else "")
        )
    return flags


def folder_checks(submission: Submission, scores: list[tuple[str, dict[str, Any]]]) -> list[Check]:
    """submission.json's headline numbers against the logs' reported runs.

    `scores` holds (log path, result) of each log's reported run. The claimed bpb should be
    the mean of their val_bpb; a claim equal to the best seed instead, a bpb found in
    another field (val_loss included), or no match at all is a flag.
    """
    done = [(path, r) for path, r in scores if r.get("val_bpb") is not None]
    if not done:
        return [Check(False, f"{submission.path}: no log with a final score to check against")]
    bpbs = [r["val_bpb"] for _, r in done]
    mean = sum(bpbs) / len(bpbs)
    best_path, best = min(((p, r["val_bpb"]) for p, r in done), key=lambda pair: pair[1])
    data = submission.data
    checks: list[Check] = []
    what = f"the mean of {len(bpbs)} log(s), {mean:.8f}"
    claimed = next((k for k in BPB_FIELDS if _number(data.get(k)) is not None), None)
    if claimed is None:
        holder = next(
            (k for k, v in data.items() if _number(v) is not None and _near(v, mean)), None
        )
        text = (
            f"{submission.path}: no val_bpb; field {holder} = {data[holder]} is near {what}"
            if holder
            else f"{submission.path}: no val_bpb field and no field matches {what}"
        )
        checks.append(Check(False, text))
    else:
        value = data[claimed]
        field_note = "" if claimed == "val_bpb" else f" (from field {claimed})"
        if _agrees(value, mean):
            checks.append(Check(True, f"{submission.path}: val_bpb {value}{field_note} = {what}"))
        elif _agrees(value, best) and len(bpbs) > 1:
            checks.append(
                Check(
                    False,
                    f"{submission.path}: val_bpb {value}{field_note} is the best seed "
                    f"({best_path}), not {what}",
                )
            )
        else:
            checks.append(Check(False, f"{submission.path}: val_bpb {value}{field_note} != {what}"))
    checks += _loss_checks(submission, done, mean)
    labels = sorted({str(r.get("metric")) for _, r in done})
    if len(labels) > 1:
        by_label = {
            label: [p for p, r in done if str(r.get("metric")) == label] for label in labels
        }
        listed = "; ".join(f"{label}: {', '.join(paths)}" for label, paths in by_label.items())
        checks.append(
            Check(False, f"{submission.path}: the logs report different metrics ({listed})")
        )
    size = _number(data.get("bytes_total"))
    sizes = [r["artifact_bytes"] for _, r in done if r.get("artifact_bytes") is not None]
    if size is not None and sizes and size not in sizes:
        checks.append(
            Check(False, f"{submission.path}: bytes_total {size} is no log's artifact size")
        )
    return checks


def _loss_checks(
    submission: Submission, done: list[tuple[str, dict[str, Any]]], mean_bpb: float
) -> list[Check]:
    """submission.json's val_loss: the logs' mean loss (no line), one seed's loss, a bpb
    put in the loss field, or a mismatch."""
    loss = _number(submission.data.get("val_loss"))
    losses = [(p, r["val_loss"]) for p, r in done if r.get("val_loss") is not None]
    if loss is None or not losses:
        return []
    mean = sum(v for _, v in losses) / len(losses)
    where = f"{submission.path}: val_loss {loss}"
    if _agrees(loss, mean):
        return []
    if len(losses) > 1 and (seed := next((p for p, v in losses if _agrees(loss, v)), None)):
        return [Check(False, f"{where} is one log's ({seed}), not the mean {mean:.8f}")]
    if _near(loss, mean_bpb):
        return [Check(False, f"{where} is near the logs' mean val_bpb: a bpb in the loss field")]
    return [Check(False, f"{where} != the logs' mean {mean:.8f}")]


def _records_below(folder: Path) -> list[Path]:
    if (folder / SUBMISSION).is_file():
        return [folder]
    below = [r for child in _subdirs(folder) for r in _records_below(child)]
    if below:
        return below
    return [folder] if (folder / README).is_file() else []


def _subdirs(folder: Path) -> list[Path]:
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    return [c for c in children if not c.name.startswith(".") and c.name not in _SKIPPED_DIRS]


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") or part in _SKIPPED_DIRS for part in relative.parts)


def _per_seed(data: dict[str, Any], path: Path) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """seed -> {result field: claimed value} from `seed_results` or a dict-valued `seeds`."""
    source = data.get("seed_results")
    if not isinstance(source, dict):
        source = data.get("seeds") if isinstance(data.get("seeds"), dict) else {}
    per_seed: dict[int, dict[str, Any]] = {}
    problems = []
    for key, entry in source.items():
        if not re.fullmatch(r"\d+", str(key)) or not isinstance(entry, dict):
            problems.append(f"{path}: seed entry {key!r} is not a seed with a table; ignored")
            continue
        claims = {}
        for name, target in SEED_FIELDS.items():
            value = _number(entry.get(name))
            if value is not None:
                claims.setdefault(target, value)
        per_seed[int(key)] = claims
    return per_seed, problems


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _agrees(claimed: float, measured: float) -> bool:
    """Equal up to the rounding of the less precise of the two numbers as written."""
    digits = min(_decimals(claimed), _decimals(measured))
    return abs(claimed - measured) <= 0.5 * 10.0**-digits + 1e-12


def _near(a: float, b: float) -> bool:
    """Within 0.001: close enough to name a number found in an unexpected field."""
    return abs(a - b) <= 1e-3


def _decimals(value: float) -> int:
    text = repr(float(value)) if isinstance(value, float) else str(value)
    if "e" in text or "E" in text:
        return 12
    return len(text.split(".", 1)[1]) if "." in text else 0
