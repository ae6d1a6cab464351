"""`--db` paths: a bare path (no '://') is a SQLite file named literally, by the writer and by
every reader; a '?' or '%41' in it is part of the name. URLs keep SQLAlchemy's reading.

Real SQLite files in a temporary folder, written by `open_store` (and, slow, by a real
`jepardy sweep` of the stand-in challenge script) and read back by `jepardy status`, `runs`
and `report` as subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest
import runsets

from jepardy.store.engine import open_reader
from jepardy.store.reader import open_rows
from jepardy.store.transitions import open_store

FAKE = Path(__file__).parent / "fake_train_gpt.py"
# Names a URL parser would cut at '?' (the store would be "x" or "q") or decode ("aAb.db").
ODD_NAMES = ["x?y.db", "a%41b.db", "q?mode=ro&uri=true.db"]


def _files(folder: Path) -> set[str]:
    """The databases in `folder` (their WAL side files left out)."""
    return {p.name for p in folder.iterdir() if not p.name.endswith(("-wal", "-shm"))}


def _read_back(cli, folder: Path, db: str, sweep: str) -> None:
    """`status`, `runs` and `report` on `db` read the file named `db`: each names `sweep`."""
    for command in ("status", "runs", "report"):
        proc = cli.run(command, "--db", db, cwd=folder)
        assert proc.returncode == 0, f"{command}: {proc.stdout}{proc.stderr}"
        assert sweep in proc.stdout, f"{command}: {proc.stdout}"


@pytest.mark.parametrize("name", ODD_NAMES)
def test_a_bare_path_is_the_file_it_names(cli, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    store = open_store(path)
    runsets.write(store, runsets.horizon_runs("leader", runsets.LEADER))
    assert store.name == str(path)
    store.close()
    assert _files(tmp_path) == {name}
    for open_one in (open_reader, open_rows):
        reader = open_one(str(path))
        assert reader.name == str(path) and reader.sweep_names() == [runsets.SWEEP]
        reader.close()
    _read_back(cli, tmp_path, name, runsets.SWEEP)  # relative, as a user types it
    assert _files(tmp_path) == {name}  # the readers created nothing


def test_a_sqlite_url_is_still_read_as_a_url(cli, tmp_path: Path) -> None:
    """In a URL '%41' is an escape and '?' starts the query, for writer and readers alike."""
    store = open_store(f"sqlite:///{tmp_path}/a%41b.db")
    runsets.write(store, runsets.horizon_runs("leader", runsets.LEADER))
    assert store.name == str(tmp_path / "aAb.db")
    store.close()
    assert _files(tmp_path) == {"aAb.db"}
    for url in (f"sqlite:///{tmp_path}/a%41b.db", f"sqlite:///{tmp_path}/aAb.db?mode=ro&uri=true"):
        for open_one in (open_reader, open_rows):
            reader = open_one(url)
            assert reader.name == str(tmp_path / "aAb.db")
            assert reader.sweep_names() == [runsets.SWEEP]
            reader.close()
    _read_back(cli, tmp_path, "sqlite:///a%41b.db", runsets.SWEEP)
    assert _files(tmp_path) == {"aAb.db"}


SPEC = f"""\
[sweep]
name = "odd-path"
seeds = [1]

[trainer]
kind = "script"
path = "{FAKE}"

[params]
iterations = 20
data_dir = "data"

[lanes.main]
control = {{ jepa_weight = 0.0 }}

[lanes.main.arms.jepa]
jepa_weight = 0.1
"""


@pytest.mark.slow
def test_sweep_writes_the_file_a_bare_path_names(cli, tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text(SPEC)
    name = "x?y.db"
    proc = cli.run("sweep", "spec.toml", "--db", name, "--runs-dir", "runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _files(tmp_path) == {"spec.toml", "runs", name}
    _read_back(cli, tmp_path, name, "odd-path")
    runs = cli.run("runs", "--db", name, cwd=tmp_path)
    assert runs.stdout.count(" done ") == 2, runs.stdout
