"""One line of a challenge log: what it says, typed, with its 1-based line number.

`read_line` reads a line whose launcher prefix is already dropped (logparse.py splits the
file into lines and runs): a step line of either family, an early stop, a size, a final
metric line, or an `Info` that describes a run without bounding it (settings, model size,
val tokens, peak memory, eval time, an exception). jepardy's own trainer log reads the same
way: its `step:N key:value ...` lines (no total), its `throughput` line, and its `export
budget_bytes:B model_bytes:M` line, which opens an export whose sizes follow the score; its
`optimizer_group:` lines are facts of the model, not settings. Indented lines and lines
holding `{` (the script's own source, which holds the same labels in f-strings) are never
read, and no pattern accepts a `{` where a number belongs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Scalar = bool | int | float | str

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf"
MODEL_PARAMS = re.compile(r"^model_params:\s*(\d+)\b")
# `step:N/M ...`, or jepardy's own `step:N key:value ...` (no total: iterations is a setting).
_STEP_OLD = re.compile(r"^step:(\d+)(?:/(\d+)\s*|\s+(?=[A-Za-z_]))(?:\[[^\]]*\]\s*)?(.*)$")
_STEP_NEW = re.compile(r"^(\d+)/(\d+)\s+(?=[A-Za-z_][\w/]*:)(.*)$")
_PAIR = re.compile(r"([A-Za-z_][\w/]*)\s*[:=]\s*([^\s,()]+)")
_STOP = re.compile(r"^stopping_early:\s*(\S+)(.*)$")
_STOP_STEP = re.compile(r"\bstep:\s*(\d+)(?:/(\d+))?")
_STOP_TIME = re.compile(r"\btrain_time:\s*(" + _NUM + r")(ms|s|m)?\b")
_PEAK = re.compile(r"^peak memory(?: allocated)?:\s*(\d+)\s*MiB")
_VAL_TOKENS = re.compile(r"^(?:val_tokens:\s*(\d+)\s*$|val_loader:.*\btokens:(\d+))")
_MODEL_SIZE = re.compile(r"^Serialized model(?:\s+(\S+?))?:\s*(\d+)\s*bytes\b")
_CODE_SIZE = re.compile(r"^Code size(?:\s*\((\w+)\))?:\s*(\d+)\s*bytes\b")
_TOTAL_SIZE = re.compile(r"^Total submission size(?:\s+(\S+?))?:\s*(\d+)\s*bytes\b")
# jepardy's trainer names its export before scoring it; the size lines follow the score.
_EXPORT = re.compile(r"^export budget_bytes:\d+ model_bytes:(\d+)\b")
# jepardy's trainer's figures over the whole training clock, after the last step.
_THROUGHPUT = re.compile(r"^throughput tokens_per_s:(" + _NUM + r") step_avg:(" + _NUM + r")ms\b")
_TOTAL_EVAL = re.compile(r"^total_eval_time:\s*(" + _NUM + r")s\b")
_VAL_LOSS = re.compile(r"\bval_loss\s*[:=]\s*(" + _NUM + r")(?![\w.])")
_VAL_BPB = re.compile(r"\bval_bpb\s*[:=]\s*(" + _NUM + r")(?![\w.])")
_LABEL_WORD = re.compile(r"[A-Za-z][\w.+\-]*(?::\w+)?")
_EXCEPTION = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt)\b(?::.*)?$")
_HEADER_LINE = re.compile(r"^[a-z][a-z0-9_]*:\S+(?:\s+[a-z][a-z0-9_]*:\S+)*$")
_HEADER_PAIR = re.compile(r"^([a-z][a-z0-9_]*):\s(\S+)$")
_HEADER_TOKEN = re.compile(r"([a-z][a-z0-9_]*):(\S+)")
# Header keys that are progress or metrics, not settings.
_NOT_SETTINGS = frozenset(
    {"val_loss", "val_bpb", "train_loss", "model_params", "val_tokens", "step", "warmup_step"}
)
# jepardy's trainer prints one `optimizer_group:NAME ... params:N lr:F` line per group: the
# model's parts and their own rates, not settings of the run.
_GROUP_LINE = re.compile(r"^optimizer_group:\S")
_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)")


@dataclass(frozen=True)
class MetricLine:
    """`<label> [k:v ...] val_loss:F val_bpb:F [k:v ...]` with the other pairs in `fields`."""

    line: int
    label: str
    val_loss: float
    val_bpb: float
    fields: dict[str, str]
    text: str  # the line as read (prefix dropped), for a human to check

    def decimals(self) -> int:
        """Digits after the point of the printed val_bpb (8 for an `_exact` line)."""
        printed = _VAL_BPB.search(self.text)
        number = printed.group(1) if printed else ""
        return len(number.split(".", 1)[1]) if "." in number else 0


@dataclass(frozen=True)
class StepLine:
    """A step line of either family; times in milliseconds, absent fields None."""

    line: int
    step: int
    total: int | None  # None for jepardy's own step lines, which print no total
    train_loss: float | None = None
    val_loss: float | None = None
    val_bpb: float | None = None
    train_time_ms: float | None = None
    step_avg_ms: float | None = None
    tokens_per_s: float | None = None


@dataclass(frozen=True)
class SizeLine:
    """A size line. kind: "model" | "code" | "code_compressed" | "total", or "export" for
    jepardy's `export budget_bytes:B model_bytes:M` line, which opens an export (its bytes:
    M); fmt: the format it names (`int8+zlib`), "" when it names none (raw sizes, or an
    unnamed format)."""

    line: int
    kind: str
    fmt: str
    bytes: int


@dataclass(frozen=True)
class StopLine:
    line: int
    reason: str
    train_time_ms: float | None
    step: int | None
    total: int | None


@dataclass(frozen=True)
class Info:
    """A line that describes a run without bounding it. kind: "model_params",
    "val_tokens", "peak_memory_mib", "total_eval_time_s", "exception", or "settings" and
    "throughput" (then `pairs` holds them and `value` is unused)."""

    kind: str
    value: Scalar
    line: int
    pairs: tuple[tuple[str, Scalar], ...] = ()


Event = StepLine | StopLine | SizeLine | MetricLine | Info


def read_line(n: int, line: str) -> Event | None:
    """What line number `n` says (prefix already dropped), or None for a line that says
    nothing jepardy reads. Indented lines and lines holding `{` (source) are never read."""
    if "{" in line or line[:1].isspace():
        return None
    for reader in (_step, _stop, _size, _metric, _info):
        event = reader(n, line)
        if event is not None:
            return event
    return None


def _step(n: int, line: str) -> StepLine | None:
    found = _STEP_OLD.match(line) or _STEP_NEW.match(line)
    if not found:
        return None
    pairs = dict(_PAIR.findall(found.group(3)))
    if found.group(2) is None and not {"train_loss", "val_loss", "val_bpb"} & pairs.keys():
        return None  # `step:N` without a total is a step line only when it reports a loss
    return StepLine(
        line=n,
        step=int(found.group(1)),
        total=int(found.group(2)) if found.group(2) else None,
        train_loss=_float(pairs.get("train_loss")),
        val_loss=_float(pairs.get("val_loss")),
        val_bpb=_float(pairs.get("val_bpb")),
        # The challenge prints `train_time:600038ms`, jepardy `train_time_ms:600038`.
        train_time_ms=_ms(pairs.get("train_time", pairs.get("train_time_ms"))),
        step_avg_ms=_ms(pairs.get("step_avg")),
        tokens_per_s=_float(pairs.get("tok/s", pairs.get("tokens_per_s"))),
    )


def _stop(n: int, line: str) -> StopLine | None:
    found = _STOP.match(line)
    if not found:
        return None
    rest = found.group(2)
    step = _STOP_STEP.search(rest)
    time = _STOP_TIME.search(rest)
    return StopLine(
        line=n,
        reason=found.group(1),
        train_time_ms=_ms(time.group(1) + (time.group(2) or "ms")) if time else None,
        step=int(step.group(1)) if step else None,
        total=int(step.group(2)) if step and step.group(2) else None,
    )


def _size(n: int, line: str) -> SizeLine | None:
    if found := _MODEL_SIZE.match(line):
        return SizeLine(n, "model", found.group(1) or "", int(found.group(2)))
    if found := _CODE_SIZE.match(line):
        kind = "code_compressed" if found.group(1) == "compressed" else "code"
        return SizeLine(n, kind, "", int(found.group(2)))
    if found := _TOTAL_SIZE.match(line):
        return SizeLine(n, "total", found.group(1) or "", int(found.group(2)))
    if found := _EXPORT.match(line):
        return SizeLine(n, "export", "", int(found.group(1)))
    return None


def _metric(n: int, line: str) -> MetricLine | None:
    loss, bpb = _VAL_LOSS.search(line), _VAL_BPB.search(line)
    if not loss or not bpb:
        return None
    head = line[: min(loss.start(), bpb.start())].split()
    if not head or not _LABEL_WORD.fullmatch(head[0]):
        return None
    words, fields = [head[0]], {}
    for token in head[1:]:
        pair = _PAIR.fullmatch(token)
        if pair:
            fields[pair.group(1)] = pair.group(2)
        elif _LABEL_WORD.fullmatch(token):
            words.append(token)
        else:
            return None
    if len(words) > 4:
        return None
    tail = line[max(loss.end(), bpb.end()) :]
    fields |= {k: v for k, v in _PAIR.findall(tail) if k not in ("val_loss", "val_bpb")}
    return MetricLine(
        line=n,
        label=" ".join(words),
        val_loss=float(loss.group(1)),
        val_bpb=float(bpb.group(1)),
        fields=fields,
        text=line,
    )


def _info(n: int, line: str) -> Info | None:
    if found := MODEL_PARAMS.match(line):
        return Info("model_params", int(found.group(1)), n)
    if found := _VAL_TOKENS.match(line):
        return Info("val_tokens", int(found.group(1) or found.group(2)), n)
    if found := _PEAK.match(line):
        return Info("peak_memory_mib", int(found.group(1)), n)
    if found := _TOTAL_EVAL.match(line):
        return Info("total_eval_time_s", float(found.group(1)), n)
    if found := _THROUGHPUT.match(line):
        pairs = (("tokens_per_s", float(found.group(1))), ("step_avg_ms", float(found.group(2))))
        return Info("throughput", "", n, pairs)
    if _EXCEPTION.match(line) and ":" in line:
        return Info("exception", line.strip(), n)
    return _setting(n, line)


def _setting(n: int, line: str) -> Info | None:
    """Settings printed as `key:value` tokens (`seed:1337`, `train_batch_tokens:524288
    train_seq_len:1024 ...`, `train_shards: 80`); progress keys are left out."""
    if _GROUP_LINE.match(line):
        return None
    if _HEADER_LINE.match(line):
        pairs = _HEADER_TOKEN.findall(line)
    elif found := _HEADER_PAIR.match(line):
        pairs = [(found.group(1), found.group(2))]
    else:
        return None
    kept = tuple(
        (key, typed_value(value))
        for key, value in pairs
        if key not in _NOT_SETTINGS
        and not key.endswith("_step")
        and not re.fullmatch(r"\d+/\d+", value)
    )
    return Info("settings", "", n, kept) if kept else None


def typed_value(text: str) -> Scalar:
    """A printed value as int, float or bool when it reads as one, else the text."""
    text = text.strip()
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _ms(text: str | None) -> float | None:
    """A printed duration in milliseconds: `600038ms`, `0.8m` (minutes), `12.5s`."""
    if text is None:
        return None
    found = re.fullmatch(r"(" + _NUM + r")(ms|s|m)?", text)
    if not found:
        return None
    scale = {"ms": 1.0, "s": 1e3, "m": 60e3, None: 1.0}[found.group(2)]
    return float(found.group(1)) * scale
