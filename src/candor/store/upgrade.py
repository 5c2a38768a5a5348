"""Running the schema's Alembic revisions: ``alembic upgrade head``, one revision at a time.

The revisions live in the package (``candor/store/revisions/``: ``env.py`` and ``versions/``) and
are found by path, so no ``alembic.ini`` is needed at run time. Revision ids are four-digit
numbers (``0001`` ... ``0007``); the number is the schema version that :func:`upgrade` returns.

Each revision runs in its own transaction, and that transaction is taken before the database's
revision is read, so two processes opening a fresh database at once queue instead of both
migrating: on SQLite the transaction begins ``IMMEDIATE`` (the write lock, when the engine is
:class:`~candor.store.database.Database`'s writer), on PostgreSQL it takes a transaction-scoped
advisory lock. On SQLite foreign keys are off while a revision runs (a table rebuild must not
cascade) and ``PRAGMA foreign_key_check`` must pass before it commits.

Two version tables. ``alembic_version`` is the truth. ``schema_migrations`` (the pre-Alembic
scheme's table) is kept as a mirror, one row per applied revision, written in the same
transaction: a candor from before Alembic reads only that table, and so still refuses a database
newer than itself instead of re-running its migration 1 over it. A data dir from before Alembic
(``schema_migrations`` at version N, no ``alembic_version``) is stamped at revision N and
upgraded from there. A database at a revision this code does not know, or whose
``schema_migrations`` names a version above :data:`LATEST`, raises
:class:`~candor.errors.SchemaTooNew`.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, func, inspect, select

from candor.errors import SchemaTooNew
from candor.store.schema import schema_migrations

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

#: Alembic's script directory inside the package
REVISIONS = Path(__file__).resolve().parent / "revisions"

_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")

#: the newest schema version this code knows (from the revision files' names; a test checks
#: that it is Alembic's head)
LATEST = max(int(m.group(1)) for p in (REVISIONS / "versions").iterdir()
             if (m := _REVISION_FILE.match(p.name)))

#: PostgreSQL advisory lock key held by the transaction that applies a revision ("candor-mg")
PG_LOCK_KEY = 0x63616E646F726D67

#: Alembic's ``context`` and ``op`` are process-wide proxies: one migration at a time per process
_IN_PROCESS = threading.Lock()


@lru_cache(maxsize=1)
def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def _config(conn: Connection | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(REVISIONS).replace("%", "%%"))
    cfg.attributes["connection"] = conn
    return cfg


def _order() -> list[str]:
    """Revision ids from the first to the head (the history is one line)."""
    return [rev.revision for rev in reversed(list(script_directory().walk_revisions()))]


def legacy_version(conn: Connection) -> int:
    """The highest version recorded in ``schema_migrations`` (0 if none)."""
    if not inspect(conn).has_table("schema_migrations"):
        return 0
    return conn.execute(select(func.max(schema_migrations.c.version))).scalar() or 0


def _alembic_revision(conn: Connection) -> tuple[bool, str | None]:
    """(whether ``alembic_version`` exists, the revision it holds)."""
    if not inspect(conn).has_table("alembic_version"):
        return False, None
    heads = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    if len(heads) > 1:
        raise SchemaTooNew(f"database schema has several heads ({', '.join(sorted(heads))}); "
                           f"this candor knows one line of revisions up to {LATEST:04d}")
    return True, (heads[0] if heads else None)


def state(conn: Connection) -> tuple[bool, str | None]:
    """(whether the database is under Alembic, its revision or None for an empty database),
    a pre-Alembic database reporting its ``schema_migrations`` version as the revision.
    Raises :class:`SchemaTooNew` for a database newer than this code."""
    legacy = legacy_version(conn)
    if legacy > LATEST:
        raise SchemaTooNew(f"database schema version {legacy} is newer than this candor "
                           f"({LATEST}); upgrade candor")
    stamped, revision = _alembic_revision(conn)
    if not stamped:
        revision = f"{legacy:04d}" if legacy else None
    # the head is LATEST by its file name (tests/test_migrations.py checks it is Alembic's):
    # a database at head needs no Alembic, whose import and script scan cost every command
    # ~0.3 s of start-up
    if revision is not None and revision != f"{LATEST:04d}" and revision not in _order():
        raise SchemaTooNew(f"database schema revision {revision} is unknown to this candor "
                           f"(newest {LATEST:04d}); upgrade candor")
    return stamped, revision


def current_version(conn: Connection) -> int:
    """The database's schema version: its revision's number, 0 for an empty database."""
    return int(state(conn)[1] or 0)


def upgrade(engine: Engine) -> int:
    """``alembic upgrade head`` on ``engine``, one revision per transaction; returns the
    schema version reached (the head's number, :data:`LATEST`)."""
    reader = engine.execution_options(candor_write=False)
    with reader.connect() as conn:  # the common case: already at head, no write lock needed
        stamped, revision = state(conn)
    if stamped and revision == f"{LATEST:04d}":
        return LATEST
    head = _order()[-1]
    with _IN_PROCESS:
        while (reached := _step(engine)) is not None and reached != int(head):
            pass
    return int(head)


def _step(engine: Engine) -> int | None:
    """Under the lock, stamp a pre-Alembic database or apply the next revision; None when the
    database is already at head (another process may have got there first)."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection if sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys = OFF")  # only outside a transaction
        try:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
                stamped, revision = state(conn)
                order = _order()
                if not stamped and revision is not None:
                    _stamp(conn, revision)
                    return int(revision)
                if revision == order[-1]:
                    return None
                target = order[order.index(revision) + 1 if revision else 0]
                schema_migrations.create(conn, checkfirst=True)
                _run(conn, target)
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise RuntimeError(f"schema revision {target} broke a foreign key")
                conn.execute(schema_migrations.insert().values(
                    version=int(target), name=script_directory().get_revision(target).doc,
                    applied_at=datetime.now(timezone.utc)))
                return int(target)
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys = ON")


def _stamp(conn: Connection, revision: str) -> None:
    """Adopt a pre-Alembic database: record ``revision`` in ``alembic_version``."""
    from alembic.runtime.migration import MigrationContext

    MigrationContext.configure(conn).stamp(script_directory(), revision)


def _run(conn: Connection, target: str) -> None:
    """Run the revisions up to ``target`` through ``env.py``, inside the caller's transaction
    (Alembic sees an external transaction and neither begins nor commits one)."""
    from alembic.runtime.environment import EnvironmentContext

    script = script_directory()

    def steps(rev, _context):
        return script._upgrade_revs(target, rev)

    with EnvironmentContext(_config(conn), script, fn=steps, destination_rev=target):
        script.run_env()
