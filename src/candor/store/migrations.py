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
from sqlalchemy.schema import CreateTable

from candor.config import OPERATOR_ORG
from candor.errors import SchemaTooNew
from candor.store.schema import metadata, schema_migrations, settings

#: tables that version 1 created, in dependency order
_V1_TABLES = ["settings", "collections", "users", "faces", "idempotency_tokens", "access_keys",
              "audit_records"]


def _v1_initial(conn: Connection) -> None:
    """Collections, users, faces, idempotency tokens, access keys, audit records, settings."""
    tables = [metadata.tables[name] for name in _V1_TABLES]
    if conn.dialect.name == "postgresql":  # faces.embedding is a pgvector vector(128)
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
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


def _rebuild(conn: Connection, name: str, copy_columns: list[str], owner_expr: str) -> None:
    """Re-create table ``name`` from the current schema, copying ``copy_columns`` and setting
    ``owner_org`` to ``owner_expr``. SQLite cannot drop a UNIQUE constraint in place, so this
    is its documented procedure: create the new table under another name, copy, drop the old,
    rename the new (renaming the *old* one would make SQLite re-point the users' and faces'
    foreign keys at it). :func:`migrate` runs this with foreign keys off, so dropping
    ``collections`` cascades to nothing. The AUTOINCREMENT counter is carried over, so no key
    of a deleted collection is ever reused."""
    tmp = f"_new_{name}"
    ddl = str(CreateTable(metadata.tables[name]).compile(dialect=conn.dialect)).strip()
    head = f"CREATE TABLE {name} ("
    if not ddl.startswith(head):
        raise RuntimeError(f"unexpected DDL for {name}: {ddl[:80]}")
    conn.exec_driver_sql(f"CREATE TABLE {tmp} (" + ddl[len(head):])
    cols = ", ".join(copy_columns)
    conn.exec_driver_sql(f"INSERT INTO {tmp} ({cols}, owner_org) "
                         f"SELECT {cols}, {owner_expr} FROM {name}")
    seq = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = ?",
                               (name,)).scalar() if _has_sequence(conn) else None
    conn.exec_driver_sql(f"DROP TABLE {name}")
    conn.exec_driver_sql(f"ALTER TABLE {tmp} RENAME TO {name}")
    if seq is not None:
        conn.exec_driver_sql("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?",
                             (seq, name))
        conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT "
                             "EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
                             (name, seq, name))


def _has_sequence(conn: Connection) -> bool:
    return conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"
                                ).first() is not None


def _v3_owner_org(conn: Connection) -> None:
    """collections.owner_org and idempotency_tokens.owner_org (tenancy): collection ids are
    unique per organisation, not per instance. Collections that existed before belong to the
    operator (:data:`candor.config.OPERATOR_ORG`). Version 1 creates tables from the current
    schema, so the columns may already be there."""
    owner = "'" + OPERATOR_ORG.replace("'", "''") + "'"
    for name in ("collections", "idempotency_tokens"):
        cols = [c["name"] for c in inspect(conn).get_columns(name)]
        if "owner_org" in cols:
            continue
        if conn.dialect.name == "sqlite":
            _rebuild(conn, name, cols, owner)
            continue
        old_unique = ("uq_collections_collection_id" if name == "collections"
                      else "uq_idempotency_tokens_collection_id")
        key = ("owner_org, collection_id" if name == "collections"
               else "owner_org, collection_id, operation, token")
        conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN owner_org VARCHAR(255)")
        conn.exec_driver_sql(f"UPDATE {name} SET owner_org = {owner}")
        conn.exec_driver_sql(f"ALTER TABLE {name} ALTER COLUMN owner_org SET NOT NULL")
        conn.exec_driver_sql(f"ALTER TABLE {name} DROP CONSTRAINT {old_unique}")
        conn.exec_driver_sql(f"ALTER TABLE {name} ADD CONSTRAINT uq_{name}_owner_org UNIQUE ({key})")


def _v4_seen_signatures(conn: Connection) -> None:
    """seen_signatures: a signed mutating request is accepted once (replay protection).
    Version 1 creates tables from the current schema, so the table may already be there."""
    metadata.create_all(conn, tables=[metadata.tables["seen_signatures"]], checkfirst=True)


def _v5_celebrities(conn: Connection) -> None:
    """The celebrity gallery: celebrities and celebrity_faces (earlier versions create tables
    from the current schema, so they may already be there)."""
    metadata.create_all(conn, tables=[metadata.tables["celebrities"],
                                      metadata.tables["celebrity_faces"]], checkfirst=True)


def _v6_video_jobs(conn: Connection) -> None:
    """video_jobs: durable stored-video jobs and their results."""
    from candor.store.schema import video_jobs

    video_jobs.create(conn, checkfirst=True)


#: the tables migration 7 adds
_V7_TABLES = ["reviews", "review_candidates", "operators", "console_sessions", "face_thumbnails"]


def _v7_review_console(conn: Connection) -> None:
    """Human review (reviews, review_candidates), the console (operators, console_sessions)
    and face thumbnails (collections.keep_thumbnails, face_thumbnails). Version 1 creates
    tables from the current schema, so the column may already be there."""
    if "keep_thumbnails" not in {c["name"] for c in inspect(conn).get_columns("collections")}:
        conn.exec_driver_sql("ALTER TABLE collections ADD COLUMN keep_thumbnails BOOLEAN "
                             "NOT NULL DEFAULT 0")
    metadata.create_all(conn, tables=[metadata.tables[n] for n in _V7_TABLES], checkfirst=True)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _v1_initial),
    (2, "audit_records.details", _v2_audit_details),
    (3, "collections.owner_org (tenancy)", _v3_owner_org),
    (4, "seen_signatures (replay protection)", _v4_seen_signatures),
    (5, "celebrity gallery", _v5_celebrities),
    (6, "video_jobs", _v6_video_jobs),
    (7, "reviews, operators, console sessions, face thumbnails", _v7_review_console),
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
        _apply(engine, number, name, fn)


def _apply(engine: Engine, number: int, name: str, fn: Callable[[Connection], None]) -> None:
    """Run one migration in one transaction, with SQLite's foreign keys off (a table rebuild
    must not cascade), checked before it commits; a concurrent migrator that got there first
    makes this a no-op."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection if sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys = OFF")  # only outside a transaction
        try:
            with conn.begin():
                if current_version(conn) >= number:
                    return
                fn(conn)
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise RuntimeError(f"migration {number} ({name}) broke a foreign key")
                conn.execute(schema_migrations.insert().values(
                    version=number, name=name, applied_at=datetime.now(timezone.utc)))
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys = ON")
