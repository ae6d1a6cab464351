"""What a run writes as it goes: `key:value` lines (stdout and train.log), metric points
(metrics.jsonl), and at the end result.json, atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class RunLog:
    """`key:value` lines to stdout and train.log, metric points to metrics.jsonl (rank 0)."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            self._log = (out_dir / "train.log").open("a")
            self._metrics = (out_dir / "metrics.jsonl").open("a")

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)
            self._log.write(text + "\n")
            self._log.flush()

    def metrics(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self._metrics.write(json.dumps({"step": step, "name": name, "value": value}) + "\n")
        self._metrics.flush()
        self.line(f"step:{step} " + " ".join(f"{k}:{v:.6g}" for k, v in values.items()))

    def close(self) -> None:
        if self.enabled:
            self._log.close()
            self._metrics.close()


def write_result(out_dir: Path, result: dict[str, Any]) -> None:
    """Atomically write result.json (a reader never sees half a file)."""
    tmp = out_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True, allow_nan=True) + "\n")
    tmp.replace(out_dir / "result.json")
