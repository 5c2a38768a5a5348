"""Users: a UserId in a collection, the faces associated with it, and their unit-mean embedding.

:class:`UsersPart` is one part of :class:`candor.store.Store`. The service opens the write
transaction (AssociateFaces and friends check several things first), so most of these methods
take its connection.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import Connection, delete, select, update
from sqlalchemy.engine import Row

from candor.store.database import Database, utcnow
from candor.store.faces import from_blob, to_blob
from candor.store.schema import faces as T_faces
from candor.store.schema import users as T_users

_BATCH = 500


def unit_mean(vectors: list[np.ndarray]) -> np.ndarray | None:
    if not vectors:
        return None
    m = np.mean(np.stack(vectors), axis=0)
    n = float(np.linalg.norm(m))
    return (m / n).astype(np.float32) if n > 0 else None


class UsersPart:
    """User rows, face associations and the per-user mean embedding."""

    def user(self, coll_pk: int, user_id: str, conn: Connection | None = None) -> Row | None:
        if conn is None:
            with self.read() as c:
                return self.user(coll_pk, user_id, c)
        return conn.execute(select(T_users).where(T_users.c.collection_pk == coll_pk,
                                                  T_users.c.user_id == user_id)).first()

    def create_user(self, conn: Connection, coll_pk: int, user_id: str) -> None:
        now = utcnow()
        conn.execute(T_users.insert().values(collection_pk=coll_pk, user_id=user_id,
                                             status="CREATED", face_count=0, embedding=None,
                                             created_at=now, updated_at=now))
        self._bump(conn, coll_pk, "user_generation")

    def delete_user(self, conn: Connection, coll_pk: int, user_pk: int) -> int:
        """Remove the user; its faces stay, unassociated. Returns the new user generation.
        Its mean embedding leaves every file once the caller's transaction commits."""
        conn.execute(update(T_faces).where(T_faces.c.user_pk == user_pk).values(user_pk=None))
        conn.execute(delete(T_users).where(T_users.c.id == user_pk))
        Database.mark_erasing(conn)
        return self._bump(conn, coll_pk, "user_generation")

    def set_user_faces(self, conn: Connection, coll_pk: int, user_pk: int, add: list[int],
                       remove: list[int]) -> tuple[int, str]:
        """Link/unlink face keys to a user and recompute its unit-mean embedding.
        Returns (face count, status)."""
        for i in range(0, len(add), _BATCH):
            conn.execute(update(T_faces).where(T_faces.c.id.in_(add[i:i + _BATCH]))
                         .values(user_pk=user_pk))
        for i in range(0, len(remove), _BATCH):
            conn.execute(update(T_faces).where(T_faces.c.id.in_(remove[i:i + _BATCH]))
                         .values(user_pk=None))
        blobs = conn.execute(select(T_faces.c.embedding)
                             .where(T_faces.c.user_pk == user_pk)).scalars().all()
        mean = unit_mean([from_blob(b) for b in blobs])
        status = "ACTIVE" if blobs else "CREATED"
        conn.execute(update(T_users).where(T_users.c.id == user_pk).values(
            face_count=len(blobs), embedding=None if mean is None else to_blob(mean),
            status=status, updated_at=utcnow()))
        self._bump(conn, coll_pk, "user_generation")
        return len(blobs), status

    def user_face_keys(self, conn: Connection, user_pk: int) -> list[int]:
        return list(conn.execute(select(T_faces.c.id)
                                 .where(T_faces.c.user_pk == user_pk)).scalars())

    def list_users(self, coll_pk: int, after: str | None, limit: int) -> tuple[list[Row], bool]:
        q = (select(T_users).where(T_users.c.collection_pk == coll_pk)
             .order_by(T_users.c.user_id).limit(limit + 1))
        if after is not None:
            q = q.where(T_users.c.user_id > after)
        with self.read_replica() as conn:  # a listing: the replica may serve it
            rows = conn.execute(q).all()
        return rows[:limit], len(rows) > limit

    def users_by_key(self, keys: Iterable[int]) -> dict[int, Row]:
        keys = [int(k) for k in keys]
        with self.read() as conn:
            rows = conn.execute(select(T_users).where(T_users.c.id.in_(keys))).all() if keys else []
        return {r.id: r for r in rows}
