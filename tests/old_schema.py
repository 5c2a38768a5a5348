"""Old SQLite schemas for upgrade tests: a data dir made as an older candor left it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def strip_tenancy(db: Path, more_sql: str = "") -> None:
    """Give ``db``'s collections and idempotency tokens their shape from before tenancy (no
    owner_org or keep_thumbnails; a collection id unique instance-wide, as those versions
    declared it), keep the collections' id counter, then run ``more_sql``."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'collections'").fetchone()
        conn.executescript("""
            CREATE TABLE _old_collections (
                id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
                collection_id VARCHAR(255) NOT NULL,
                face_model_version VARCHAR(32) NOT NULL, created_at DATETIME NOT NULL,
                tags JSON NOT NULL, face_generation BIGINT NOT NULL,
                user_generation BIGINT NOT NULL, retention_days INTEGER,
                CONSTRAINT uq_collections_collection_id UNIQUE (collection_id));
            INSERT INTO _old_collections SELECT id, collection_id, face_model_version, created_at,
                tags, face_generation, user_generation, retention_days FROM collections;
            DROP TABLE collections;
            ALTER TABLE _old_collections RENAME TO collections;
            CREATE TABLE _old_tokens (
                id INTEGER NOT NULL, collection_id VARCHAR(255) NOT NULL,
                operation VARCHAR(64) NOT NULL, token VARCHAR(64) NOT NULL,
                request_hash VARCHAR(64) NOT NULL, response JSON NOT NULL,
                created_at DATETIME NOT NULL, CONSTRAINT pk_idempotency_tokens PRIMARY KEY (id),
                CONSTRAINT uq_idempotency_tokens_collection_id
                    UNIQUE (collection_id, operation, token));
            INSERT INTO _old_tokens SELECT id, collection_id, operation, token, request_hash,
                response, created_at FROM idempotency_tokens;
            DROP TABLE idempotency_tokens;
            ALTER TABLE _old_tokens RENAME TO idempotency_tokens;
        """ + more_sql)
        # the rebuild restarted the counter at the highest row: put the old one back
        conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'collections'", seq)
        assert "owner_org" not in {r[1] for r in conn.execute("PRAGMA table_info(collections)")}
