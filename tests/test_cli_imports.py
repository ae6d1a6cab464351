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


def modules_after(code: str) -> tuple[set[str], str]:
    """Every module in sys.modules after running `code` in a fresh interpreter, and what it
    printed."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    *printed, modules = proc.stdout.splitlines()
    return set(json.loads(modules)), "\n".join(printed)


def imported_after(code: str) -> tuple[set[str], str]:
    """Top-level packages in sys.modules after running `code`, and what it printed."""
    modules, printed = modules_after(code)
    return {name.partition(".")[0] for name in modules}, printed


def command(*argv: str) -> str:
    """Code that runs `jepardy *argv` through the console script's entry point."""
    return (
        "import sys\nfrom jepardy.cli.app import main\n"
        f"sys.argv = ['jepardy', *{list(argv)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code"
    )


def test_ingest_loads_no_statistics_plots_or_torch() -> None:
    """ingest matches a table's rows on analysis/matching.py's keys, not through compare."""
    loaded, _ = imported_after("import jepardy.ingest.ingest, jepardy.ingest.table_runs")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_importing_the_cli_loads_no_heavy_library() -> None:
    loaded, _ = imported_after("import jepardy.cli.app")
    assert not loaded & {*HEAVY, "pandas", "sqlalchemy"}, sorted(loaded & {*HEAVY, "pandas"})


@pytest.mark.parametrize("name", ["status", "runs"])
def test_store_views_load_no_dataframes_orm_statistics_or_torch(tmp_path: Path, name: str) -> None:
    from jepardy.store.transitions import open_store

    db = tmp_path / "results.db"
    write(open_store(db), [R("main", "control", 1, 1.25), R("main", "jepa", 1, 1.24)])
    loaded, printed = imported_after(command(name, "--db", str(db)))
    assert "sqlite3" in loaded and "study" in printed  # the command did read the store
    light = {*HEAVY, "pandas", "numpy", "sqlalchemy"}
    assert not loaded & light, sorted(loaded & light)


def test_a_plain_report_loads_only_its_parts_and_leaves_the_environment(tmp_path: Path) -> None:
    """`jepardy report` imports no part it was not asked for (curves, horizons, the chain, a
    leader), no ORM and no plotting, and the one-thread OpenBLAS setting of its imports is
    gone afterwards: trainers a later command launches inherit the environment."""
    from jepardy.store.transitions import open_store

    db = tmp_path / "results.db"
    write(open_store(db), [R("main", "control", s, 1.25 + s / 100) for s in (1, 2)])
    write(open_store(db), [R("main", "jepa", s, 1.24 + s / 100) for s in (1, 2)])
    check = "\nimport os\nprint('blas', os.environ.get('OPENBLAS_NUM_THREADS'))"
    modules, printed = modules_after(command("report", "--db", str(db)) + check)
    assert "jepa" in printed and "control" in printed  # the report was printed
    assert "blas None" in printed
    parts = {f"jepardy.analysis.{part}" for part in ("curves", "horizons", "chain", "against")}
    unwanted = parts | {"sqlalchemy", "matplotlib", "torch"}
    assert not modules & unwanted, sorted(modules & unwanted)
    assert "scipy.stats" not in modules  # t-tests come from scipy.special (analysis/ttests.py)
