"""bench/gpu_check.sh on a CPU at toy size: the same path the GPU check takes on a device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import jepardy

pytestmark = pytest.mark.slow
REPO_ROOT = Path(jepardy.__file__).resolve().parent.parent


def test_gpu_check_runs_on_cpu_tiny(tmp_path):
    env = os.environ | {
        "PYTHON": sys.executable,
        "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    script = str(REPO_ROOT / "bench" / "gpu_check.sh")
    proc = subprocess.run(
        ["bash", script, "--device", "cpu", "--tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("gpu_check_result "))
    fields = json.loads(line.removeprefix("gpu_check_result "))
    assert fields["status"] == "done" and fields["under_cap"] is True
    assert fields["steps"] > 0 and fields["step_ms"] > 0 and fields["tokens_per_s"] > 0
    assert fields["model_bytes"] <= fields["artifact_bytes"]
    for key in ("val_bpb", "sliding_val_bpb", "roundtrip_mse"):
        assert fields[key] is not None and fields[key] > 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["val_bpb"] == fields["val_bpb"]
