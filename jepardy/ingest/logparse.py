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
  The source holds the same metric labels in f-strings; as a second guard, no line reader
  (logline.py) accepts a `{` where a number belongs.
- A new run starts at a `Hyperparameters:` header, at a source block, or at a second
  `model_params:` line, once the current run has shown a step, size or metric line; the
  lines between the end of that run's last such line and the marker open the new run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from jepardy.ingest.logline import (
    MODEL_PARAMS,
    Event,
    Info,
    MetricLine,
    Scalar,
    SizeLine,
    StepLine,
    StopLine,
    read_line,
    typed_value,
)

SEPARATOR = "=" * 100
_PREFIX = re.compile(r"^(?:\d{9,11}(?:\.\d+)?\s+|\[rank\d+\]:\s*)")
_CODE_START = re.compile(
    r'^(?:"""|\'\'\'|#!|import [\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*\s*$'
    r"|from [\w.]+ import |def \w+\(|class \w+\s*[(:])"
)
_HYPER_HEADER = re.compile(r"^Hyperparameters:\s*$")
_HYPER_ITEM = re.compile(r"^\s+([A-Za-z_][\w.]*):\s?(.*?)\s*$")
# Info kinds that open a run: held until the next body line says which run they belong to.
_OPENING = frozenset({"settings", "model_params", "val_tokens"})


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
    # jepardy's `throughput` line: tokens_per_s and step_avg_ms over the whole training clock
    throughput: dict[str, Setting] = field(default_factory=dict)

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
        second_model = MODEL_PARAMS.match(line) and current.model_params is not None
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
        _seal(run, lines)
    return ParsedLog(runs=runs, code_blocks=code, line_count=len(lines))


def _seal(run: ParsedRun, lines: list[str]) -> None:
    """The run's text and sha256 from its lines of the file, and its fingerprint."""
    body = "\n".join(lines[run.first_line - 1 : run.last_line])
    run.text = body
    run.sha256 = _sha256(body)
    measured = "\n".join(_PREFIX.sub("", lines[n - 1]) for n in run.body_lines())
    run.fingerprint = _sha256(measured)


def _apply(run: ParsedRun, event: Event) -> None:
    if isinstance(event, StepLine):
        run.steps.append(event)
    elif isinstance(event, StopLine):
        run.stop = event
    elif isinstance(event, SizeLine):
        run.sizes.append(event)
    elif isinstance(event, MetricLine):
        run.metrics.append(event)
    elif event.pairs:
        _apply_pairs(run, event)
    elif event.kind == "exception":
        # torchrun re-raises a rank's failure as its own ChildFailedError after the rank's
        # traceback; it only says that a rank failed (alone, the rank exited without one),
        # so it is never the reason: the rank's exception is, or how far the log got.
        if "torch.distributed.elastic" not in str(event.value):
            run.exception = Setting(event.value, event.line)
    else:
        setattr(run, event.kind, Setting(event.value, event.line))


def _apply_pairs(run: ParsedRun, event: Info) -> None:
    """A settings or throughput line's `key:value` pairs."""
    if event.kind == "throughput":
        run.throughput = {key: Setting(value, event.line) for key, value in event.pairs}
    elif not run.steps and not run.metrics:
        # Settings count only before training starts (later `k:v` lines are progress).
        for key, value in event.pairs:
            run.settings.setdefault(key, Setting(value, event.line))


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
