"""The bodies of schema revisions 0001-0007: candor's schema history from before Alembic.

Schema changes are Alembic revisions (``candor/store/revisions/versions/``), run by
:mod:`candor.store.upgrade` (``alembic upgrade head``, one transaction per revision, for SQLite
and PostgreSQL alike; docs/migrations.md). The first seven were a home-grown numbered list
before that; their bodies stay here, unchanged in what they do, and revisions ``0001`` ...
``0007`` call them, so a data dir made by the old scheme (``schema_migrations`` at version N) is
stamped at revision N and upgraded in place.

- A released body is never edited in a way that changes its result: a schema change is a new
  revision *plus* the matching edit in ``schema.py``. ``tests/test_migrations.py`` checks that
  upgrading an empty database gives exactly the tables and columns ``schema.py`` declares.
- Version 1 creates its tables from the *current* ``schema.py``, so each later body first looks
  whether its change is already there.
- :func:`migrate` is the entry point :class:`~candor.store.database.Database` calls; a database
  newer than this code is refused (:class:`~candor.errors.SchemaTooNew`), not guessed at.
"""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.schema import CreateTable

from candor.config import OPERATOR_ORG
from candor.errors import SchemaTooNew
from candor.store.schema import metadata, settings
from candor.store.upgrade import LATEST, current_version, upgrade

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


__all__ = ["LATEST", "SchemaTooNew", "current_version", "migrate"]


def migrate(engine: Engine) -> int:
    """Bring the database at ``engine`` to the latest revision (``alembic upgrade head``,
    adopting a pre-Alembic database first); returns its schema version, :data:`LATEST`."""
    return upgrade(engine)
