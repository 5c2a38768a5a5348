"""Moving a data dir's database to another engine: ``candor db migrate --from D --to URL``.

Every table is copied row for row with its keys, in dependency order, in one transaction on
the target: collections, faces (embeddings become pgvector vectors), users, keys, idempotency
tokens, the pagination-token secret and instance id (``settings``, so tokens handed out
before the move stay valid), reviews, operators, video jobs, and the audit ledger with its
``seq``, ``prev_hash`` and ``hash`` untouched, so the chain verifies on the target exactly as
it did on the source. Key counters are carried over (SQLite's AUTOINCREMENT high-water mark,
not just the largest key left), so no key of a deleted face is ever handed out again.

The target must be empty (freshly migrated: only ``settings`` and ``schema_migrations``
rows); a partly copied target is impossible, since the copy commits once or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import Table, func, select, text

from candor.errors import InvalidParameter
from candor.store.database import Database
from candor.store.schema import metadata, schema_migrations, settings

BATCH = 2_000


def _utc(row: dict) -> dict:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return {k: (v.replace(tzinfo=timezone.utc) if isinstance(v, datetime) and v.tzinfo is None
                else v) for k, v in row.items()}


def _high_water(source: Database, table: Table) -> int:
    """The largest key the source ever gave out in ``table`` (deleted ones included)."""
    key = list(table.primary_key.columns)[0]
    with source.read() as conn:
        top = conn.execute(select(func.max(key))).scalar() or 0
        if source.is_sqlite:
            seq = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = ?",
                                       (table.name,)).scalar() if conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").first() else None
            top = max(top, seq or 0)
    return int(top)


def copy_database(source: Database, target: Database,
                  progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Copy every row of ``source`` into the empty ``target``; returns rows copied per table."""
    if source.schema_version != target.schema_version:
        raise InvalidParameter(f"schema versions differ: source {source.schema_version}, "
                               f"target {target.schema_version}")
    tables = [t for t in metadata.sorted_tables if t is not schema_migrations]
    copied: dict[str, int] = {}
    with target.write() as dst:
        for table in tables:
            if table is settings:
                continue
            if dst.execute(select(func.count()).select_from(table)).scalar_one():
                raise InvalidParameter(f"the target database is not empty ({table.name} has "
                                       "rows): migrate into a new database")
        for table in tables:
            n = 0
            if table is settings:
                dst.execute(table.delete())
            with source.read() as src:
                result = src.execute(select(table))
                while rows := result.mappings().fetchmany(BATCH):
                    dst.execute(table.insert(), [_utc(dict(r)) for r in rows])
                    n += len(rows)
                    if progress:
                        progress(table.name, n)
            copied[table.name] = n
        if target.is_postgres:  # the next key after the source's high-water mark
            for table in tables:
                key = list(table.primary_key.columns)
                if len(key) == 1 and key[0].autoincrement is True:
                    top = _high_water(source, table)
                    if top:
                        dst.execute(text("SELECT setval(pg_get_serial_sequence(:t, :c), :v)"),
                                    {"t": table.name, "c": key[0].name, "v": top})
    return copied
