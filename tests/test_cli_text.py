"""The CLI's own text: user text printed literally (never read as rich markup), help that
shows `[slurm]` and fits 80 columns, the Slurm options from their one declaration, and
`--version`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import jepardy
import jepardy.launch.tracker
from jepardy.cli.app import app, main
from jepardy.errors import UserError
from jepardy.spec.slurm import SLURM_FIELDS

runner = CliRunner()

SPEC = """\
[sweep]
name = "text"
seeds = [1]

[params]
"[/red]" = 1
"""

COMMANDS = [
    ["plan"],
    ["sweep"],
    ["cancel"],
    ["rerun"],
    ["status"],
    ["runs"],
    ["show"],
    ["diff"],
    ["logs"],
    ["report"],
    ["export"],
    ["export-submission"],
    ["ingest"],
    ["data"],
    ["data", "build"],
    ["data", "fetch"],
    ["data", "check"],
]


def test_a_user_error_prints_verbatim(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    message = "lanes: [lanes.x] is not a table; see [/x] and :smile:"

    def refuse(store: object, sweep: str) -> list[str]:
        raise UserError(message)

    monkeypatch.setattr(jepardy.launch.tracker, "cancel_sweep", refuse)
    monkeypatch.setattr(sys, "argv", ["jepardy", "cancel", "s", "--db", "sqlite://"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_spec_key_like_a_closing_tag_is_refused_in_one_line(cli, tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    line = cli.refused("plan", spec, cwd=tmp_path)
    assert "params.[/red]" in line
    assert "MarkupError" not in line


def test_sweep_help_shows_the_slurm_table_literally() -> None:
    result = runner.invoke(app, ["sweep", "--help"])
    assert result.exit_code == 0, result.output
    assert "[slurm] table" in " ".join(result.output.split())


@pytest.mark.parametrize("command", ["plan", "sweep", "rerun"])
def test_the_slurm_options_come_from_slurm_options(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for field in SLURM_FIELDS:
        option = f"--{field.name.replace('_', '-')}"
        kind = "<int>" if field.kind is int else "<str>"
        assert f"{option} {kind}" in result.output and field.help in result.output, option


@pytest.mark.parametrize("command", [[], *COMMANDS], ids=lambda c: " ".join(c) or "jepardy")
def test_help_fits_80_columns(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    # No command's summary cut short in a command list (click ends it with "...").
    cut = [line for line in lines if line.endswith("...") and not line.startswith("Usage:")]
    assert cut == [], result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"jepardy {jepardy.__version__}\n"


def test_python_dash_m_jepardy_is_the_command() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "jepardy", "--version"], capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == f"jepardy {jepardy.__version__}\n"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_arguments_read_the_same_in_usage_and_help(command: list[str]) -> None:
    """`Usage: ... plan [OPTIONS] SPEC` and `SPEC  Sweep spec ...`, as the help text writes
    them; never Typer's `{spec}`."""
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    lines = result.output.splitlines()
    usage = lines[0]
    assert "{" not in usage, usage
    if "Arguments:" not in lines:
        return
    start = lines.index("Arguments:") + 1
    block = lines[start : lines.index("", start)]
    names = [line.split()[0] for line in block if line.startswith("  ") and line[2] != " "]
    assert names, result.output
    for name in names:
        assert name == name.upper() and f" {name}" in usage, (name, usage)


def test_a_pipe_gets_lines_of_text_whole_and_tables_that_fit(tmp_path: Path) -> None:
    """At 80 columns in a pipe: a line of text longer than 80 (a data path plan cannot
    find) comes whole, never cut in two; the job matrix still fits."""
    missing = tmp_path / ("a-long-folder-name-for-data-" * 3) / "datasets" / "sp1024"
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'[sweep]\nname = "pipe"\nseeds = [1]\n\n[params]\ndata_dir = "{missing}"\n'
        "iterations = 10\n\n[lanes.main]\ncontrol = {}\n"
    )
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "jepardy.cli.app", "plan", spec, "--db", tmp_path / "none.db"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"data_dir: {missing}: not found" in lines, proc.stdout
    assert any(line.startswith("cost: 1 of 1 runs still to run: ") for line in lines)
    matrix = lines[: next(i for i, line in enumerate(lines) if line.startswith("lanes:"))]
    assert max(len(line) for line in matrix) <= 80, proc.stdout
