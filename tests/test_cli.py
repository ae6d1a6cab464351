"""The `jepardy` command line, end to end and fast: nothing here trains.

In-process commands go through typer's CliRunner; anything that must be refused as a user
mistake runs the installed console script, because only `main()` turns a UserError into
one line on stderr and exit status 2.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jepardy.analysis.compare import FORMATS
from jepardy.analysis.report import REPORT_FORMATS
from jepardy.cli.app import app
from jepardy.launch.command import trainer_schema
from jepardy.spec.expand import expand_runs
from jepardy.spec.parse import load_spec

runner = CliRunner()

SPEC = """\
[sweep]
name = "cli"
seeds = [1, 2]

[params]
d_model = 32
n_layers = 1

[axes]
ema = [false, true]

[lanes.main]
control = { jepa_weight = 0.0 }

[lanes.main.arms.jepa]
jepa_weight = 0.1
"""


def write_spec(directory: Path, text: str = SPEC, name: str = "spec.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("plan", "sweep", "report", "data"):
        assert re.search(rf"^\W*{command}\b", result.output, re.MULTILINE), result.output


def test_plan_prints_every_run_and_the_counts_and_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(tmp_path)
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, ["plan", "spec.toml"])

    assert result.exit_code == 0, result.output
    runs = expand_runs(load_spec(spec, trainer_schema()))
    assert len(runs) == 8  # 2 arms x 2 ema values x 2 seeds
    assert "cli: 8 runs" in result.output
    for run in runs:
        assert run.run_id in result.output
    assert result.output.count(" new ") >= 8  # nothing is in a store yet
    # The counts as lines, not a Python dict (cost and power: tests/test_plan_power.py).
    assert "lanes: main 8 runs (control 4, jepa 4)" in result.output
    assert "ema false 4, true 4" in result.output
    assert "cost: 8 of 8 runs still to run: " in result.output
    # No database is created, and nothing is launched: no run directory, no run.json.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_plan_names_file_field_and_suggestion_for_a_typo(cli, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC.replace("jepa_weight = 0.1", "jepa_wieght = 0.1"))
    line = cli.refused("plan", spec, cwd=tmp_path)
    assert str(spec) in line
    assert "lanes.main.arms.jepa.jepa_wieght" in line
    assert "did you mean jepa_weight?" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(None, ["file not found"], id="missing-file"),
        pytest.param(
            SPEC.replace("d_model = 32", "d_model 32"),
            ["line 6, column 9: Expected '='", "expected valid TOML"],
            id="toml-syntax",
        ),
        pytest.param(
            SPEC.replace("ema = [false, true]", "ema = []"),
            ["axes.ema", "[] is empty"],
            id="empty-axis",
        ),
    ],
)
def test_plan_refuses_a_bad_spec_in_one_line(
    cli, tmp_path: Path, text: str | None, expected: list[str]
) -> None:
    spec = tmp_path / "spec.toml"
    if text is not None:
        spec.write_text(text)
    line = cli.refused("plan", spec, cwd=tmp_path)
    assert str(spec) in line
    for part in expected:
        assert part in line


def test_report_refuses_an_unknown_format_in_one_line(cli, tmp_path: Path) -> None:
    line = cli.refused("report", "--format", "xml", cwd=tmp_path)
    assert "'xml'" in line
    assert f"allowed: {', '.join(REPORT_FORMATS)}" in line
    assert "markdown" in FORMATS
    assert list(tmp_path.iterdir()) == []  # refused before any database was opened


def test_data_build_builds_then_is_up_to_date(tmp_path: Path) -> None:
    root = tmp_path / "embedded"

    first = runner.invoke(app, ["data", "build", "--root", str(root)])
    assert first.exit_code == 0, first.output
    assert first.output.startswith("built:")
    for relative in (
        "datasets/embedded_sp1024/fineweb_train_000000.bin",
        "datasets/embedded_sp1024/fineweb_val_000000.bin",
        "datasets/embedded_byte260/fineweb_train_000000.bin",
        "datasets/embedded_byte260/fineweb_val_000000.bin",
        "tokenizers/embedded_1024_bpe.model",
        "manifest.json",
    ):
        assert (root / relative).is_file(), relative
    manifest_mtime = (root / "manifest.json").stat().st_mtime_ns

    second = runner.invoke(app, ["data", "build", "--root", str(root)])
    assert second.exit_code == 0, second.output
    assert second.output.startswith("up to date:")
    assert (root / "manifest.json").stat().st_mtime_ns == manifest_mtime
