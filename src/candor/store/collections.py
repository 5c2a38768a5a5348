"""Collections: creating, describing, listing, deleting them, and their retention periods.

:class:`CollectionsPart` is one part of :class:`candor.store.Store`. A collection row carries
two generation counters (faces, users), bumped by every change in the same transaction, which
is how the vector cache knows whether an index it holds is current.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.engine import Row

from candor.errors import ResourceAlreadyExists, ResourceNotFound
from candor.store.database import Database, utcnow
from candor.store.schema import collections as T_coll
from candor.store.schema import faces as T_faces
from candor.store.schema import idempotency_tokens as T_tokens
from candor.store.schema import users as T_users


class CollectionsPart:
    """Collection rows and their generation counters."""

    def create_collection(self, collection_id: str, face_model_version: str,
                          tags: dict | None = None) -> Row:
        with self.write() as conn:
            if self._collection_row(conn, collection_id) is not None:
                raise ResourceAlreadyExists(f"The collection id: {collection_id} already exists")
            conn.execute(T_coll.insert().values(
                collection_id=collection_id, face_model_version=face_model_version,
                created_at=utcnow(), tags=tags or {}, face_generation=0, user_generation=0))
            return self._collection_row(conn, collection_id)

    def _collection_row(self, conn: Connection, collection_id: str) -> Row | None:
        return conn.execute(select(T_coll).where(T_coll.c.collection_id == collection_id)).first()

    def collection(self, collection_id: str, conn: Connection | None = None) -> Row:
        """The collection's row, or ResourceNotFound."""
        if conn is None:
            with self.read() as c:
                return self.collection(collection_id, c)
        row = self._collection_row(conn, collection_id)
        if row is None:
            raise ResourceNotFound(f"The collection id: {collection_id} does not exist")
        return row

    def collection_counts(self, coll_pk: int) -> tuple[int, int]:
        with self.read() as conn:
            n_faces = conn.execute(select(func.count()).select_from(T_faces)
                                   .where(T_faces.c.collection_pk == coll_pk)).scalar_one()
            n_users = conn.execute(select(func.count()).select_from(T_users)
                                   .where(T_users.c.collection_pk == coll_pk)).scalar_one()
        return int(n_faces), int(n_users)

    def list_collections(self, after: str | None, limit: int) -> tuple[list[Row], bool]:
        """Collections in name order after ``after``; and whether more follow."""
        q = select(T_coll).order_by(T_coll.c.collection_id).limit(limit + 1)
        if after is not None:
            q = q.where(T_coll.c.collection_id > after)
        with self.read() as conn:
            rows = conn.execute(q).all()
        return rows[:limit], len(rows) > limit

    def all_collections(self, conn: Connection | None = None) -> list[Row]:
        """Every collection row, in name order (erasure across all collections)."""
        if conn is None:
            with self.read() as c:
                return self.all_collections(c)
        return list(conn.execute(select(T_coll).order_by(T_coll.c.collection_id)).all())

    def delete_collection(self, collection_id: str) -> None:
        """Delete the collection and everything in it; when it returns, its embeddings are in
        no file of the data dir (database, WAL, saved indexes)."""
        with self.write() as conn:
            row = self.collection(collection_id, conn)
            # explicit deletes (not only ON DELETE CASCADE) so that it works without FK enforcement
            conn.execute(delete(T_faces).where(T_faces.c.collection_pk == row.id))
            conn.execute(delete(T_users).where(T_users.c.collection_pk == row.id))
            conn.execute(delete(T_tokens).where(T_tokens.c.collection_id == collection_id))
            conn.execute(delete(T_coll).where(T_coll.c.id == row.id))
            Database.mark_erasing(conn)
        self.vectors.drop(row.id)

    def _bump(self, conn: Connection, coll_pk: int, column: str) -> int:
        col = T_coll.c[column]
        conn.execute(update(T_coll).where(T_coll.c.id == coll_pk).values({column: col + 1}))
        return int(conn.execute(select(col).where(T_coll.c.id == coll_pk)).scalar_one())

    # ---------------------------------------------------------------- retention

    def set_retention(self, collection_id: str, days: int | None) -> None:
        """Keep the collection's faces for ``days`` (None: until deleted)."""
        with self.write() as conn:
            coll = self.collection(collection_id, conn)
            conn.execute(update(T_coll).where(T_coll.c.id == coll.id).values(retention_days=days))

    def retention_periods(self) -> dict[str, int]:
        """Collections that have a retention period, with it in days."""
        with self.read() as conn:
            rows = conn.execute(select(T_coll.c.collection_id, T_coll.c.retention_days)
                                .where(T_coll.c.retention_days.is_not(None))).all()
        return {r[0]: int(r[1]) for r in rows}
