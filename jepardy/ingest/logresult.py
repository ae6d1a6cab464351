"""What a parsed log run reports: its score, sizes and times as a jepardy result dict.

`run_result` gives the same fields as the trainer's result.json (docs/architecture.md), so
ingested runs and script runs sit in the store's typed columns beside jepardy's own, plus:

- `metric`: the label of the line the score came from; `provenance`: for every field, the
  line number and label it was read from (`{"val_bpb": {"line": 447, "label": ...}}`);
- `metrics`: every final metric line (label, line, val_loss, val_bpb, its other fields);
- `sizes`: every size line; `settings`: what the log printed, with jepardy names where the
  challenge table (`challenge_env.PARAMS`) has one; `flags`: what a reader should know.

Which line is the score (design/challenge-logs.md, "Which number a record reports"): the most
evaluated kind the run printed -- test-time training (tier 3) > sliding window (2) > any
other final line such as a plain round trip (1) -- and within it the last line; of a 4- and
8-decimal twin the 8-decimal one. Pre-quantization and post-EMA diagnostics (tier 0) are
never the score (they become `prequant_val_*`). A run with no final line has status
"failed" and a reason saying how far it got.

One artifact per score: a log may export more than once (the study's runs export at the end
of training, then a storage-only pass exports again and scores that). `artifacts` splits the
log at each export, a group of size lines, and gives a storage-only pass (`storage_pass*`
lines) an artifact of its own, sized by the lines printed for it or by its `bytes=` field.
jepardy's own trainer opens each export with an `export budget_bytes:B model_bytes:M`
line and prints the sizes after the score: an artifact so opened keeps the size lines that
follow its score. The sizes (`artifact_bytes`, `model_bytes`) are those of the artifact the
score line measured; another artifact's bytes are never paired with it, and where the
scored artifact printed no size, `artifact_bytes` stays empty and a flag says why.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from jepardy.ingest.logline import MetricLine, SizeLine
from jepardy.ingest.logparse import ParsedRun, Setting
from jepardy.spec import challenge_env
from jepardy.trainer.config import ARTIFACT_CAP_BYTES

TIER_NAMES = {0: "pre-quantization", 1: "round trip", 2: "sliding window", 3: "test-time training"}
_PREQUANT = re.compile(r"pre[-_ ]?quant|post[-_ ]?ema|pre[-_ ]?ema")
_EXACT = re.compile(r"_exact\b")
_EVAL_TIME_KEYS = ("eval_time", "time", "elapsed")
STORAGE_PASS = "storage_pass"
EXPORT = "export"  # the SizeLine kind of jepardy's `export budget_bytes:B model_bytes:M` line


@dataclass
class Artifact:
    """One export of a run: its size lines and the final metric lines that scored it."""

    sizes: list[SizeLine] = field(default_factory=list)
    metrics: list[MetricLine] = field(default_factory=list)
    announced: bool = False  # opened by jepardy's `export ...` line: sizes follow the score

    def total(self) -> int | None:
        totals = [s.bytes for s in self.sizes if s.kind == "total"]
        return totals[-1] if totals else None


def artifacts(run: ParsedRun) -> list[Artifact]:
    """The run's exports in log order (module docstring). Metric lines before any export
    (pre-quantization diagnostics) belong to a first artifact without sizes."""
    events = sorted([*run.sizes, *run.metrics], key=lambda e: e.line)
    found = [Artifact()]
    for event in events:
        current = found[-1]
        if isinstance(event, SizeLine) and event.kind == EXPORT:
            found.append(current := Artifact(announced=True))
            continue
        if isinstance(event, SizeLine):
            if current.metrics and not current.announced:  # after scores: the next export
                found.append(current := Artifact())
            current.sizes.append(event)
            continue
        storage = event.label.startswith(STORAGE_PASS)
        if storage and any(not m.label.startswith(STORAGE_PASS) for m in current.metrics):
            found.append(current := Artifact())
        current.metrics.append(event)
        stated = _int(event.fields.get("bytes"))
        if stated is not None:  # `storage_pass ... bytes=N`: the size of what it scored
            current.sizes.append(SizeLine(event.line, "total", event.label, stated))
    return found


def metric_tier(metric: MetricLine) -> int:
    """How evaluated a final metric line is; see the module docstring."""
    label = metric.label.lower()
    if _PREQUANT.search(label):
        return 0
    if "ttt" in label or any("ttt" in str(v).lower() for v in metric.fields.values()):
        return 3
    if "sliding" in label:
        return 2
    return 1


def reported_metric(run: ParsedRun) -> MetricLine | None:
    """The run's score line (module docstring), or None when it printed no final line."""
    final = [m for m in run.metrics if metric_tier(m) > 0]
    if not final:
        return None
    top = max(metric_tier(m) for m in final)
    best = [m for m in final if metric_tier(m) == top][-1]
    precise = max(_twins(run, best), key=lambda m: m.decimals())
    return precise if _same_value(precise, best) else best


def run_result(run: ParsedRun) -> dict[str, Any]:
    """The result dict of one parsed run (module docstring); status "done" iff it has a score."""
    provenance: dict[str, dict[str, Any]] = {}
    flags: list[str] = []
    result: dict[str, Any] = {}

    def put(name: str, value: Any, line: int, label: str) -> None:
        if value is None:
            return
        result[name] = value
        provenance[name] = {"line": line, "label": label}

    score = reported_metric(run)
    if score is not None:
        put("val_bpb", score.val_bpb, score.line, score.label)
        put("val_loss", score.val_loss, score.line, score.label)
        # The 8-decimal twin of a metric usually omits the eval time its 4-decimal twin shows.
        timed = [m for m in _twins(run, score) if _eval_time_s(m) is not None]
        if timed:
            put("eval_time_s", _eval_time_s(timed[-1]), timed[-1].line, timed[-1].label)
    prequant = [m for m in run.metrics if metric_tier(m) == 0]
    if prequant:
        last = prequant[-1]
        put("prequant_val_bpb", last.val_bpb, last.line, last.label)
        put("prequant_val_loss", last.val_loss, last.line, last.label)
    _put_sizes(_scored_sizes(run, score, flags), put, flags)
    _put_progress(run, put)
    flags += _alias_flags(run)
    done = score is not None and math.isfinite(score.val_bpb)
    result |= {
        "status": "done" if done else "failed",
        "reason": "" if done else failure_reason(run),
        "metric": score.label if score is not None else None,
        "metric_tier": TIER_NAMES[metric_tier(score)] if score is not None else None,
        "under_cap": (
            result["artifact_bytes"] <= ARTIFACT_CAP_BYTES if "artifact_bytes" in result else None
        ),
        "provenance": provenance,
        "metrics": [_metric_entry(m) for m in run.metrics],
        "sizes": [
            {"line": s.line, "kind": s.kind, "format": s.fmt, "bytes": s.bytes} for s in run.sizes
        ],
        "settings": {k: v.value for k, v in run.settings.items()},
        "flags": flags,
    }
    return result


def run_params(run: ParsedRun) -> tuple[dict[str, Any], list[str]]:
    """The run's printed settings as params: a setting the challenge table knows gets its
    jepardy name and type (`max_wallclock_seconds: 600.0` -> `wallclock_s = 600.0`), the rest
    keep their printed name. Also returns flags for values the table's type cannot hold."""
    params: dict[str, Any] = {}
    flags: list[str] = []
    for printed, setting in run.settings.items():
        name = challenge_env.jepardy_name(printed)
        if name is None:
            params.setdefault(printed, setting.value)
            continue
        value = challenge_env.convert(setting.value, challenge_env.BY_NAME[name].type)
        if value is None:
            flags.append(
                f"line {setting.line}: {printed} = {setting.value!r} is not a "
                f"{challenge_env.BY_NAME[name].type}; kept as {printed}, not {name}"
            )
            params.setdefault(printed, setting.value)
        else:
            params[name] = value
    return params, flags


def metric_series(run: ParsedRun) -> list[dict[str, Any]]:
    """The step lines as store metrics rows: {"step", "name", "value"} for train_loss,
    val_loss, val_bpb, train_time_ms, step_avg_ms and tokens_per_s; the last line of a
    (step, name) wins."""
    points: dict[tuple[int, str], float] = {}
    names = ("train_loss", "val_loss", "val_bpb", "train_time_ms", "step_avg_ms", "tokens_per_s")
    for step in run.steps:
        for name in names:
            value = getattr(step, name)
            if value is not None:
                points[(step.step, name)] = value
    return [{"step": s, "name": n, "value": v} for (s, n), v in points.items()]


def failure_reason(run: ParsedRun) -> str:
    """Why a run has no finite score, as far as its log tells ("nan" for a non-finite one)."""
    score = reported_metric(run)
    if score is not None and not math.isfinite(score.val_bpb):
        return f"nan: {score.label} val_bpb {score.val_bpb} (line {score.line})"
    if run.exception is not None:
        return f"crashed (line {run.exception.line}): {str(run.exception.value)[:200]}"
    losses = [s for s in run.steps if s.train_loss is not None]
    if losses and not math.isfinite(losses[-1].train_loss or 0.0):
        return f"nan: train_loss {losses[-1].train_loss} at step {losses[-1].step}"
    where = "no final metric line"
    if run.stop is not None:
        return f"{where}: the log ends after stopping_early at step {run.stop.step}"
    if run.steps:
        last = run.steps[-1]
        step = f"{last.step}/{last.total}" if last.total is not None else str(last.step)
        return f"{where}: the log ends at step {step} (line {last.line})"
    prequant = [m for m in run.metrics if metric_tier(m) == 0]
    if prequant:
        return f"{where}: only {prequant[-1].label} (line {prequant[-1].line}), before export"
    return f"{where}: no training steps in the log"


# --- parts -----------------------------------------------------------------------------------


def _scored_sizes(run: ParsedRun, score: MetricLine | None, flags: list[str]) -> list[SizeLine]:
    """The size lines of the artifact `score` measured, with the run's code sizes (the code
    is the same for every export). Without a score: every size line of the run. Flags the
    other scored artifacts of another size, and a scored artifact with no size."""
    if score is None:
        return run.sizes
    split = artifacts(run)
    scored = next(a for a in split if any(m is score for m in a.metrics))
    for other in split:
        final = [m for m in other.metrics if metric_tier(m) > 0]
        if other is scored or not final or other.total() in (None, scored.total()):
            continue
        flags.append(
            f"line {final[-1].line}: {final[-1].label} scored another artifact "
            f"({other.total()} bytes); score and size are {score.label}'s artifact's"
        )
    if scored.total() is None:
        flags.append(
            f"line {score.line}: no size printed for the artifact {score.label} scored; "
            "artifact_bytes left empty rather than taken from another export"
        )
    code = [s for s in run.sizes if s.kind.startswith("code") and s not in scored.sizes]
    return sorted([*scored.sizes, *code], key=lambda s: s.line)


def _put_sizes(sizes: list[SizeLine], put: Any, flags: list[str]) -> None:
    """artifact_bytes: the last `Total submission size FMT` line, else the last plain total
    that is not the raw one (raw model + code); model_bytes likewise from `Serialized model`;
    code_bytes: the compressed code size when printed, else the plain one."""
    raw_model = next((s.bytes for s in reversed(sizes) if s.kind == "model" and not s.fmt), None)
    code = [s for s in sizes if s.kind == "code_compressed"] or [
        s for s in sizes if s.kind == "code"
    ]
    if code:
        put("code_bytes", code[-1].bytes, code[-1].line, _size_label(code[-1]))
    plain_code = next((s.bytes for s in reversed(sizes) if s.kind == "code"), None)
    raw_total = raw_model + plain_code if raw_model is not None and plain_code else None
    totals = [s for s in sizes if s.kind == "total" and s.fmt]
    totals = totals or [s for s in sizes if s.kind == "total" and s.bytes != raw_total]
    if totals:
        put("artifact_bytes", totals[-1].bytes, totals[-1].line, _size_label(totals[-1]))
    elif any(s.kind == "total" for s in sizes):
        raw = [s for s in sizes if s.kind == "total"][-1]
        flags.append(f"line {raw.line}: only an uncompressed total size was printed")
    models = [s for s in sizes if s.kind == "model" and s.fmt]
    models = models or [s for s in sizes if s.kind == "model" and s.bytes != raw_model]
    if models:
        put("model_bytes", models[-1].bytes, models[-1].line, _size_label(models[-1]))
    if totals and models and totals[-1].fmt and models[-1].fmt != totals[-1].fmt:
        flags.append(
            f"lines {models[-1].line}/{totals[-1].line}: the model is serialized as "
            f"{models[-1].fmt} but the total names {totals[-1].fmt}"
        )


def _put_progress(run: ParsedRun, put: Any) -> None:
    """Steps, train time, step_avg and tokens/s (stopping_early or jepardy's throughput line
    first, else the last step line that has them); model size, val tokens, peak memory and
    total eval time."""
    stop = run.stop
    if stop is not None and stop.step is not None:
        put("steps", stop.step, stop.line, "stopping_early")
    elif run.steps:
        put("steps", run.steps[-1].step, run.steps[-1].line, "step")
    if stop is not None and stop.train_time_ms is not None:
        put("train_time_s", stop.train_time_ms / 1e3, stop.line, "stopping_early")
    else:
        timed = [s for s in run.steps if s.train_time_ms is not None]
        if timed:
            put("train_time_s", timed[-1].train_time_ms / 1e3, timed[-1].line, "step")
    _put_rates(run, put)
    settings: list[tuple[str, Setting | None, str]] = [
        ("n_params", run.model_params, "model_params"),
        ("val_tokens", run.val_tokens, "val_tokens"),
        ("peak_memory_mib", run.peak_memory_mib, "peak memory"),
        ("total_eval_time_s", run.total_eval_time_s, "total_eval_time"),
    ]
    for name, setting, label in settings:
        if setting is not None:
            put(name, setting.value, setting.line, label)
    world = run.settings.get("world_size")
    if world is not None and isinstance(world.value, int):
        put("world_size", world.value, world.line, "world_size")


def _put_rates(run: ParsedRun, put: Any) -> None:
    """step_avg_ms and tokens_per_s: jepardy's throughput line (the whole training clock),
    else the last step line that has them."""
    for name in ("step_avg_ms", "tokens_per_s"):
        found = [s for s in run.steps if getattr(s, name) is not None]
        if name in run.throughput:
            put(name, run.throughput[name].value, run.throughput[name].line, "throughput")
        elif found:
            put(name, getattr(found[-1], name), found[-1].line, "step")


def _alias_flags(run: ParsedRun) -> list[str]:
    """A round-trip line that repeats an earlier sliding-window or TTT line's exact numbers
    is an alias (many scripts print `final_int8_zlib_roundtrip_exact` holding the
    sliding-window score), not a round trip of its own."""
    flags = []
    for i, metric in enumerate(run.metrics):
        if metric_tier(metric) != 1:
            continue
        for earlier in run.metrics[:i]:
            if metric_tier(earlier) > 1 and _same_numbers(earlier, metric):
                flags.append(
                    f"line {metric.line}: {metric.label} repeats {earlier.label} "
                    f"(line {earlier.line}): an alias of that score, not a round trip"
                )
                break
    return flags


def _metric_entry(metric: MetricLine) -> dict[str, Any]:
    return {
        "line": metric.line,
        "label": metric.label,
        "val_loss": _finite(metric.val_loss),
        "val_bpb": _finite(metric.val_bpb),
        "tier": TIER_NAMES[metric_tier(metric)],
        **({"fields": metric.fields} if metric.fields else {}),
    }


def _eval_time_s(metric: MetricLine) -> float | None:
    for key in _EVAL_TIME_KEYS:
        text = metric.fields.get(key)
        if text is None:
            continue
        found = re.fullmatch(r"([\d.]+)(ms|s)", text)
        if found:
            return float(found.group(1)) / (1e3 if found.group(2) == "ms" else 1.0)
    return None


def _size_label(size: SizeLine) -> str:
    names = {
        "model": "Serialized model",
        "code": "Code size",
        "code_compressed": "Code size (compressed)",
        "total": "Total submission size",
    }
    return f"{names[size.kind]} {size.fmt}".strip()


def _twins(run: ParsedRun, metric: MetricLine) -> list[MetricLine]:
    """The 4- and 8-decimal prints of one metric: the same label but for `_exact`, within
    three lines of each other (the metric itself included)."""
    return [m for m in run.metrics if _stem(m) == _stem(metric) and abs(m.line - metric.line) <= 3]


def _stem(metric: MetricLine) -> str:
    return _EXACT.sub("", metric.label)


def _same_value(a: MetricLine, b: MetricLine) -> bool:
    """Whether the less precise line's val_bpb is the other's rounded."""
    digits = min(a.decimals(), b.decimals())
    return round(a.val_bpb, digits) == round(b.val_bpb, digits)


def _same_numbers(a: MetricLine, b: MetricLine) -> bool:
    return a.val_bpb == b.val_bpb and a.val_loss == b.val_loss and a.decimals() == b.decimals()


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
