"""A run's metrics.jsonl read as it grows: its latest step and the last value of each metric,
for the live views (`jepardy sweep`, `jepardy status --watch`).

Each read starts where the last one stopped, so a view that polls every second reads only
the new lines. A file that shrank or was replaced (the run started again, or a script run's
file written at its end) is read anew; a file met for the first time is read from its last
TAIL_BYTES only, since only the latest values are shown.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
# Plenty for the last log step's few dozen points (~60 bytes each).
TAIL_BYTES = 64 * 1024


@dataclass
class MetricsTail:
    """The latest `step` and the last finite value of each metric of one metrics.jsonl."""

    path: Path
    step: int | None = None
    last: dict[str, float] = field(default_factory=dict)
    _offset: int = 0
    _inode: int | None = None
    _partial: bytes = b""

    def read(self) -> None:
        """Take in what was appended since the last read (nothing when there is no file)."""
        try:
            with self.path.open("rb") as f:
                stat = os.fstat(f.fileno())
                if stat.st_ino != self._inode or stat.st_size < self._offset:
                    self._restart(stat.st_ino, stat.st_size)
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return  # not written yet, or removed while a run starts again
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self._take(line)

    def _restart(self, inode: int, size: int) -> None:
        self.step, self.last, self._inode, self._partial = None, {}, inode, b""
        self._offset = max(0, size - TAIL_BYTES)
        if self._offset:
            self._partial = b"\0"  # the first line read is cut: `_take` drops it

    def _take(self, line: bytes) -> None:
        try:
            point = json.loads(line)
            step, name, value = int(point["step"]), str(point["name"]), float(point["value"])
        except (ValueError, TypeError, KeyError):
            return  # a cut first line, or a line of another shape: skipped
        self.step = step if self.step is None else max(self.step, step)
        if math.isfinite(value):
            self.last[name] = value


class MetricsTails:
    """One MetricsTail per run directory, kept between polls."""

    def __init__(self) -> None:
        self._tails: dict[str, MetricsTail] = {}

    def read(self, run_dir: str) -> MetricsTail:
        tail = self._tails.get(run_dir)
        if tail is None:
            tail = self._tails[run_dir] = MetricsTail(Path(run_dir) / METRICS_FILE)
        tail.read()
        return tail

    def forget(self, run_dir: str) -> None:
        self._tails.pop(run_dir, None)
