"""Shared fixtures: the installed `jepardy` console script, run as a real subprocess, and
`store_url`, an empty database on each store backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa


class Cli:
    """Runs the `jepardy` console script installed next to this interpreter."""

    def __init__(self, script: Path) -> None:
        self.script = script

    def env(self) -> dict[str, str]:
        # A wide virtual terminal, so rich never wraps a line the tests read; one CPU thread
        # per trainer rank (jobs keep an OMP_NUM_THREADS they are given), because the tiny
        # test models gain nothing from more and slow down badly on a busy machine.
        return {**os.environ, "COLUMNS": "240", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}

    def run(
        self, *args: str | Path, cwd: Path, timeout: float = 300
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.script), *map(str, args)],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def refused(self, *args: str | Path, cwd: Path) -> str:
        """Run a command that must be refused as a user mistake: exit status 2 and exactly
        one line on stderr, which is returned."""
        proc = self.run(*args, cwd=cwd)
        shown = f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        assert proc.returncode == 2, shown
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, shown
        assert lines[0].startswith("error: "), shown
        return lines[0]

    def popen(self, *args: str | Path, cwd: Path) -> subprocess.Popen:
        """Started with SIGINT at its default, so Ctrl-C reaches it as KeyboardInterrupt even
        when pytest itself runs in the background (where a shell ignores SIGINT)."""
        return subprocess.Popen(
            [str(self.script), *map(str, args)],
            cwd=cwd,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


@pytest.fixture(scope="session")
def cli() -> Cli:
    script = Path(sys.executable).parent / "jepardy"
    if not script.is_file():
        pytest.fail(f"{script} not found; install jepardy into this venv (pip install -e .)")
    return Cli(script)


# --- stores: every store test runs against SQLite and PostgreSQL ---

# An admin URL, e.g. postgresql+psycopg://jepardy:jepardy@127.0.0.1:5432/postgres
PG_URL_ENV = "JEPARDY_TEST_PG_URL"
# "1" (CI): PostgreSQL cases fail instead of being skipped when PG_URL_ENV is unset.
REQUIRE_PG_ENV = "JEPARDY_REQUIRE_PG"


def _no_postgres(reason: str) -> NoReturn:
    """Skip a PostgreSQL case, or fail it when JEPARDY_REQUIRE_PG=1."""
    if os.environ.get(REQUIRE_PG_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_PG_ENV}=1)")
    pytest.skip(reason)


@contextmanager
def _fresh_pg_database(admin_url: str) -> Iterator[str]:
    """A new, uniquely named database on the server of `admin_url`; yields its URL and drops it
    afterwards (WITH (FORCE) closes connections a test left open)."""
    url = sa.make_url(admin_url)
    name = f"jepardy_test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.DBAPIError as exc:
        admin.dispose()
        detail = " ".join(str(exc.orig).split())
        shown = url.render_as_string(hide_password=True)
        pytest.fail(f"cannot create a database through {PG_URL_ENV}={shown}: {detail}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database, one per test: a SQLite file under tmp_path, or a fresh
    PostgreSQL database on the server named by JEPARDY_TEST_PG_URL. Unset, the PostgreSQL
    case is skipped (failed when JEPARDY_REQUIRE_PG=1); set but unusable, it fails."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'results.db'}"
        return
    admin_url = os.environ.get(PG_URL_ENV)
    if not admin_url:
        _no_postgres(
            f"PostgreSQL store tests need {PG_URL_ENV} "
            "(scripts/postgres-test-server.sh start prints one)"
        )
    with _fresh_pg_database(admin_url) as url:
        yield url
