"""The grammar of challenge train logs: text -> runs -> typed lines, each with its line number.

A challenge log (design/challenge-logs.md) is whatever `train_gpt.py` and torchrun printed:
launcher warnings, sometimes the script's own source framed by lines of exactly 100 `=`,
a header of settings, step lines of one of two families, size lines and final metric lines.
One file may hold several runs appended back to back. `parse_log` turns the text into
`ParsedRun`s and keeps, for every value it read, the 1-based line it came from; it judges
nothing (which metric a run reports is `logresult.py`'s business).

Rules, each from a trap seen in real logs:
- Line ends: LF or CRLF; a carriage return inside a line (a progress bar redrawn in place)
  keeps only what was drawn last.
- A leading unix timestamp (`1776142723.115 0/20000 val_loss: ...`) or `[rankN]:` is dropped.
- Source code is skipped: a block from a line that starts Python source (`import x`,
  `from x import y`, `def f(`, `class C`, a docstring, a shebang) to the next 100-`=` line.
  The source holds the same metric labels in f-strings; as a second guard, no pattern below
  accepts a `{` where a number belongs.
- A new run starts at a `Hyperparameters:` header, at a source block, or at a second
  `model_params:` line, once the current run has shown a step, size or metric line; the
  lines between the end of that run's last such line and the marker open the new run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

Scalar = bool | int | float | str

SEPARATOR = "=" * 100
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf"
_PREFIX = re.compile(r"^(?:\d{9,11}(?:\.\d+)?\s+|\[rank\d+\]:\s*)")
_CODE_START = re.compile(
    r'^(?:"""|\'\'\'|#!|import [\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*\s*$'
    r"|from [\w.]+ import |def \w+\(|class \w+\s*[(:])"
)
_HYPER_HEADER = re.compile(r"^Hyperparameters:\s*$")
_HYPER_ITEM = re.compile(r"^\s+([A-Za-z_][\w.]*):\s?(.*?)\s*$")
_MODEL_PARAMS = re.compile(r"^model_params:\s*(\d+)\b")
_STEP_OLD = re.compile(r"^step:(\d+)/(\d+)\s*(?:\[[^\]]*\]\s*)?(.*)$")
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
_OPENING = frozenset({"settings", "model_params", "val_tokens"})
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
    total: int
    train_loss: float | None = None
    val_loss: float | None = None
    val_bpb: float | None = None
    train_time_ms: float | None = None
    step_avg_ms: float | None = None
    tokens_per_s: float | None = None


@dataclass(frozen=True)
class SizeLine:
    """A size line. kind: "model" | "code" | "code_compressed" | "total"; fmt: the format
    it names (`int8+zlib`), "" when it names none (raw sizes, or an unnamed format)."""

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
class Setting:
    """A printed setting: its value typed (int, float, bool or str) and its line."""

    value: Scalar
    line: int


@dataclass
class ParsedRun:
    """One run of a log. `first_line`..`last_line` (1-based, inclusive) is its part of the
    file; `text` those lines (line ends normalised to LF) and `sha256` the hash of `text`."""

    index: int
    first_line: int
    last_line: int
    text: str = ""
    sha256: str = ""
    # A hash of what the run measured (its step, stop, size and metric lines as printed),
    # the same for two copies of one run whatever precedes them (source, launcher noise).
    fingerprint: str = ""
    settings: dict[str, Setting] = field(default_factory=dict)
    model_params: Setting | None = None
    val_tokens: Setting | None = None
    peak_memory_mib: Setting | None = None
    total_eval_time_s: Setting | None = None
    steps: list[StepLine] = field(default_factory=list)
    metrics: list[MetricLine] = field(default_factory=list)
    sizes: list[SizeLine] = field(default_factory=list)
    stop: StopLine | None = None
    exception: Setting | None = None  # the last `XError: ...` line after a traceback

    @property
    def has_body(self) -> bool:
        return bool(self.steps or self.metrics or self.sizes or self.stop)

    def body_lines(self) -> list[int]:
        """Line numbers of the run's step, stop, size and metric lines, in order."""
        found = [x.line for x in (*self.steps, *self.sizes, *self.metrics)]
        return sorted(found + ([self.stop.line] if self.stop else []))


@dataclass(frozen=True)
class ParsedLog:
    runs: list[ParsedRun]
    code_blocks: list[tuple[int, int]]  # 1-based inclusive line ranges of skipped source
    line_count: int


def split_lines(text: str) -> list[str]:
    """The file's lines, CRLF or LF, each as last drawn (see the module docstring)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for line in lines:
        line = line.rstrip("\r")
        if "\r" in line:
            line = line.rsplit("\r", 1)[1]
        out.append(line)
    return out


# One piece on purpose: a single pass over the lines whose run-boundary state (the run under
# way, the held header lines, the Hyperparameters block) every rule reads and updates.
def parse_log(text: str) -> ParsedLog:  # noqa: C901
    """Every run in a log's text, in file order (see the module docstring for the rules)."""
    lines = split_lines(text)
    code = _code_blocks(lines)
    in_code = _mask(code, len(lines))
    runs: list[ParsedRun] = []
    current = ParsedRun(index=0, first_line=1, last_line=0)
    last_body = 0  # 1-based line of the current run's last body line; 0 for none
    # Non-body lines after the current run's last body line: they belong to whichever run
    # the next body line belongs to (the next run's header, when a marker comes first).
    pending: list[Event] = []
    in_hyper = False
    after_code = False
    for i, raw in enumerate(lines):
        if in_code[i]:
            after_code, in_hyper = True, False
            continue
        line = _PREFIX.sub("", raw)
        second_model = _MODEL_PARAMS.match(line) and current.model_params is not None
        marker = _HYPER_HEADER.match(line) or after_code or second_model
        after_code = False
        if marker and current.has_body:
            current.last_line = last_body
            runs.append(current)
            current = ParsedRun(index=len(runs), first_line=last_body + 1, last_line=0)
        if _HYPER_HEADER.match(line):
            in_hyper = True
            continue
        if in_hyper:
            item = _HYPER_ITEM.match(line)
            if item:
                value = Setting(typed_value(item.group(2)), i + 1)
                current.settings.setdefault(item.group(1), value)
                continue
            in_hyper = False
        event = read_line(i + 1, line)
        if event is None:
            continue
        if isinstance(event, Info):
            # Settings, model size and val tokens open a run; the rest (peak memory, eval
            # time, a crash) close the one under way.
            if event.kind in _OPENING:
                pending.append(event)
            else:
                _apply(current, event)
            continue
        for held in pending:
            _apply(current, held)
        pending.clear()
        _apply(current, event)
        last_body = i + 1
    for held in pending:
        _apply(current, held)
    current.last_line = len(lines)
    runs.append(current)
    for run in runs:
        body = "\n".join(lines[run.first_line - 1 : run.last_line])
        run.text = body
        run.sha256 = _sha256(body)
        measured = "\n".join(_PREFIX.sub("", lines[n - 1]) for n in run.body_lines())
        run.fingerprint = _sha256(measured)
    return ParsedLog(runs=runs, code_blocks=code, line_count=len(lines))


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


# --- one line ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Info:
    """A line that describes a run without bounding it. kind: "model_params",
    "val_tokens", "peak_memory_mib", "total_eval_time_s", "exception" or "settings"
    (then `pairs` holds them and `value` is unused)."""

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


def _apply(run: ParsedRun, event: Event) -> None:
    if isinstance(event, StepLine):
        run.steps.append(event)
    elif isinstance(event, StopLine):
        run.stop = event
    elif isinstance(event, SizeLine):
        run.sizes.append(event)
    elif isinstance(event, MetricLine):
        run.metrics.append(event)
    elif event.kind == "settings":
        # Settings count only before training starts (later `k:v` lines are progress).
        if not run.steps and not run.metrics:
            for key, value in event.pairs:
                run.settings.setdefault(key, Setting(value, event.line))
    elif event.kind == "exception":
        # torchrun re-raises a rank's failure as its own ChildFailedError after the rank's
        # traceback; it only says that a rank failed (alone, the rank exited without one),
        # so it is never the reason: the rank's exception is, or how far the log got.
        if "torch.distributed.elastic" not in str(event.value):
            run.exception = Setting(event.value, event.line)
    else:
        setattr(run, event.kind, Setting(event.value, event.line))


def _step(n: int, line: str) -> StepLine | None:
    found = _STEP_OLD.match(line) or _STEP_NEW.match(line)
    if not found:
        return None
    pairs = dict(_PAIR.findall(found.group(3)))
    return StepLine(
        line=n,
        step=int(found.group(1)),
        total=int(found.group(2)),
        train_loss=_float(pairs.get("train_loss")),
        val_loss=_float(pairs.get("val_loss")),
        val_bpb=_float(pairs.get("val_bpb")),
        train_time_ms=_ms(pairs.get("train_time")),
        step_avg_ms=_ms(pairs.get("step_avg")),
        tokens_per_s=_float(pairs.get("tok/s")),
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
    if found := _MODEL_PARAMS.match(line):
        return Info("model_params", int(found.group(1)), n)
    if found := _VAL_TOKENS.match(line):
        return Info("val_tokens", int(found.group(1) or found.group(2)), n)
    if found := _PEAK.match(line):
        return Info("peak_memory_mib", int(found.group(1)), n)
    if found := _TOTAL_EVAL.match(line):
        return Info("total_eval_time_s", float(found.group(1)), n)
    if _EXCEPTION.match(line) and ":" in line:
        return Info("exception", line.strip(), n)
    return _setting(n, line)


def _setting(n: int, line: str) -> Info | None:
    """Settings printed as `key:value` tokens (`seed:1337`, `train_batch_tokens:524288
    train_seq_len:1024 ...`, `train_shards: 80`); progress keys are left out."""
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


# --- small helpers -------------------------------------------------------------------------


def _code_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """1-based inclusive ranges: a source start line through the next separator line."""
    blocks = []
    i = 0
    while i < len(lines):
        if _CODE_START.match(lines[i]):
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == SEPARATOR), None)
            if end is not None:
                blocks.append((i + 1, end + 1))
                i = end + 1
                continue
        i += 1
    return blocks


def _mask(blocks: list[tuple[int, int]], count: int) -> list[bool]:
    mask = [False] * count
    for first, last in blocks:
        for i in range(first - 1, last):
            mask[i] = True
    return mask


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


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
