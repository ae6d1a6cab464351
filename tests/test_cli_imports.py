"""The command line imports only what a command needs: scipy, matplotlib and torch cost
seconds to import, and `jepardy status` must answer at once (bench/cli_latency.py times it):
it reads a SQLite store with the standard library alone, without SQLAlchemy or pandas.

Each check runs a fresh interpreter and reads its `sys.modules`: a behaviour, not a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from runsets import R, write

HEAVY = ("scipy", "matplotlib", "torch")


def imported_after(code: str) -> tuple[set[str], str]:
    """Top-level packages in sys.modules after running `code` in a fresh interpreter, and
    what it printed."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    *printed, modules = proc.stdout.splitlines()
    return {name.partition(".")[0] for name in json.loads(modules)}, "\n".join(printed)


def test_importing_the_cli_loads_no_heavy_library() -> None:
    loaded, _ = imported_after("import jepardy.cli.app")
    assert not loaded & {*HEAVY, "pandas", "sqlalchemy"}, sorted(loaded & {*HEAVY, "pandas"})


@pytest.mark.parametrize("command", ["status", "runs"])
def test_store_views_load_no_dataframes_orm_statistics_or_torch(
    tmp_path: Path, command: str
) -> None:
    from jepardy.store.transitions import open_store

    db = tmp_path / "results.db"
    write(open_store(db), [R("main", "control", 1, 1.25), R("main", "jepa", 1, 1.24)])
    run = (
        "import sys\nfrom jepardy.cli.app import main\n"
        f"sys.argv = ['jepardy', {command!r}, '--db', {str(db)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code"
    )
    loaded, printed = imported_after(run)
    assert "sqlite3" in loaded and "study" in printed  # the command did read the store
    light = {*HEAVY, "pandas", "numpy", "sqlalchemy"}
    assert not loaded & light, sorted(loaded & light)
