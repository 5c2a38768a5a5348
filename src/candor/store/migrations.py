"""Schema versions: an ordered list of migrations, applied once each, in one transaction each.

The scheme, kept deliberately small (no Alembic dependency):

- ``MIGRATIONS`` is a list of ``(version, name, fn)``; ``fn(conn)`` runs DDL/DML on a
  connection inside a transaction. Versions are consecutive integers starting at 1.
- ``schema_migrations`` records each applied version; the current version is its maximum.
- A migration is never edited once released: a schema change is a new entry at the end (explicit
  ``ALTER TABLE`` / ``CREATE TABLE`` for that one change) *plus* the matching edit in
  ``schema.py``. ``tests/test_store.py`` checks that migrating an empty database gives exactly
  the tables and columns ``schema.py`` declares.
- A database newer than this code (a version we do not know) is refused rather than guessed at.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, inspect, select

from candor.errors import SchemaTooNew
from candor.store.schema import metadata, schema_migrations, settings

#: tables that version 1 created, in dependency order
_V1_TABLES = ["settings", "collections", "users", "faces", "idempotency_tokens", "access_keys",
              "audit_records"]


def _v1_initial(conn: Connection) -> None:
    """Collections, users, faces, idempotency tokens, access keys, audit records, settings."""
    tables = [metadata.tables[name] for name in _V1_TABLES]
    metadata.create_all(conn, tables=tables)
    conn.execute(settings.insert(), [
        {"key": "token_key", "value": secrets.token_hex(32)},
        {"key": "instance_id", "value": str(uuid.uuid4())},
    ])


def _v2_audit_details(conn: Connection) -> None:
    """audit_records.details (JSON, nullable): authorisation references, constraints, receipts.
    Version 1 creates tables from the current schema, so the column may already be there."""
    if "details" not in {c["name"] for c in inspect(conn).get_columns("audit_records")}:
        conn.exec_driver_sql("ALTER TABLE audit_records ADD COLUMN details JSON")


def _v3_video_jobs(conn: Connection) -> None:
    """video_jobs: durable stored-video jobs and their results."""
    from candor.store.schema import video_jobs

    video_jobs.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _v1_initial),
    (2, "audit_records.details", _v2_audit_details),
    (3, "video_jobs", _v3_video_jobs),
]

LATEST = MIGRATIONS[-1][0]

__all__ = ["LATEST", "MIGRATIONS", "SchemaTooNew", "current_version", "migrate"]


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_migrations"):
        return 0
    versions = conn.execute(select(schema_migrations.c.version)).scalars().all()
    return max(versions, default=0)


def migrate(engine: Engine) -> int:
    """Bring the database at ``engine`` to the latest version; returns that version."""
    with engine.begin() as conn:
        schema_migrations.create(conn, checkfirst=True)
    while True:
        with engine.begin() as conn:
            version = current_version(conn)
            if version > LATEST:
                raise SchemaTooNew(f"database schema version {version} is newer than this candor "
                                   f"({LATEST}); upgrade candor")
            pending = [m for m in MIGRATIONS if m[0] == version + 1]
            if not pending:
                return version
            number, name, fn = pending[0]
            fn(conn)
            conn.execute(schema_migrations.insert().values(
                version=number, name=name, applied_at=datetime.now(timezone.utc)))
