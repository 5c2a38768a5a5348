"""Collections: creating, describing, listing, deleting them, and their retention periods.

:class:`CollectionsPart` is one part of :class:`candor.store.Store`. A collection row carries
two generation counters (faces, users), bumped by every change in the same transaction, which
is how the vector cache knows whether an index it holds is current.

Tenancy: a collection belongs to an organisation (``owner_org``) and its id is unique within
that organisation only. Methods take the owner as ``org`` (default: the operator, whose
namespace every collection created before tenancy migrated to); which organisation a caller
may reach is decided above the store (:mod:`candor.service.caller`).
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, delete, func, select, update
from sqlalchemy.engine import Row

from candor.config import OPERATOR_ORG
from candor.errors import ResourceAlreadyExists, ResourceNotFound
from candor.store.database import Database, utcnow
from candor.store.reviews import drop_probe_copies
from candor.store.schema import collections as T_coll
from candor.store.schema import faces as T_faces
from candor.store.schema import idempotency_tokens as T_tokens
from candor.store.schema import users as T_users

# Statements run by every IndexFaces / SearchFacesByImage request, built once: building a
# statement and its cache key anew costs ~0.2 ms of Python per call, held under the GIL.
_NAMED = select(T_coll).where(T_coll.c.collection_id == bindparam("named")).order_by(
    T_coll.c.owner_org)
_BUMP_NAMED = {
    column: update(T_coll).where(T_coll.c.owner_org == bindparam("owner"),
                                 T_coll.c.collection_id == bindparam("named"))
    .values({column: T_coll.c[column] + 1}).returning(T_coll.c.id, T_coll.c[column])
    for column in ("face_generation", "user_generation")}


class CollectionsPart:
    """Collection rows and their generation counters."""

    def create_collection(self, collection_id: str, face_model_version: str,
                          tags: dict | None = None, *, org: str = OPERATOR_ORG) -> Row:
        """Create ``collection_id`` in ``org``'s namespace (another org may hold the same id)."""
        with self.write() as conn:
            if self._collection_row(conn, collection_id, org) is not None:
                raise ResourceAlreadyExists(f"The collection id: {collection_id} already exists")
            conn.execute(T_coll.insert().values(
                owner_org=org, collection_id=collection_id, face_model_version=face_model_version,
                created_at=utcnow(), tags=tags or {}, face_generation=0, user_generation=0))
            return self._collection_row(conn, collection_id, org)

    def _collection_row(self, conn: Connection, collection_id: str, org: str) -> Row | None:
        return conn.execute(select(T_coll).where(T_coll.c.owner_org == org,
                                                 T_coll.c.collection_id == collection_id)).first()

    def collection(self, collection_id: str, conn: Connection | None = None, *,
                   org: str) -> Row:
        """``org``'s collection ``collection_id``, or ResourceNotFound. ``org`` is required:
        the service finds a request's collection with
        :func:`candor.service.caller.resolve_collection`, which knows the caller."""
        if conn is None:
            with self.read() as c:
                return self.collection(collection_id, c, org=org)
        row = self._collection_row(conn, collection_id, org)
        if row is None:
            raise ResourceNotFound(f"The collection id: {collection_id} does not exist")
        return row

    def collections_named(self, collection_id: str, conn: Connection | None = None) -> list[Row]:
        """Every organisation's collection called ``collection_id`` (by owner)."""
        if conn is None:
            with self.read() as c:
                return self.collections_named(collection_id, c)
        return list(conn.execute(_NAMED, {"named": collection_id}).all())

    def collection_counts(self, coll_pk: int) -> tuple[int, int]:
        with self.read() as conn:
            n_faces = conn.execute(select(func.count()).select_from(T_faces)
                                   .where(T_faces.c.collection_pk == coll_pk)).scalar_one()
            n_users = conn.execute(select(func.count()).select_from(T_users)
                                   .where(T_users.c.collection_pk == coll_pk)).scalar_one()
        return int(n_faces), int(n_users)

    def user_face_count(self, coll_pk: int) -> int:
        """The collection's faces associated with a user: what a user search compares with
        through the users' templates (candor.scoring.fpir.user_search_size)."""
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(T_faces).where(
                (T_faces.c.collection_pk == coll_pk) & T_faces.c.user_pk.is_not(None))).scalar_one())

    def list_collections(self, after: list | None, limit: int,
                         org: str | None = OPERATOR_ORG) -> tuple[list[Row], bool]:
        """``org``'s collections (``None``: every organisation's) in (id, owner) order after
        position ``after`` (``[collection_id, owner_org]``); and whether more follow."""
        q = select(T_coll).order_by(T_coll.c.collection_id, T_coll.c.owner_org).limit(limit + 1)
        if org is not None:
            q = q.where(T_coll.c.owner_org == org)
        if after is not None:
            after_id, after_org = after
            q = q.where((T_coll.c.collection_id > after_id)
                        | ((T_coll.c.collection_id == after_id) & (T_coll.c.owner_org > after_org)))
        with self.read_replica() as conn:  # a listing: the replica may serve it
            rows = conn.execute(q).all()
        return rows[:limit], len(rows) > limit

    def all_collections(self, conn: Connection | None = None, *,
                        org: str | None = None) -> list[Row]:
        """Every collection row (of ``org`` when given), in (id, owner) order (erasure)."""
        if conn is None:
            with self.read() as c:
                return self.all_collections(c, org=org)
        q = select(T_coll).order_by(T_coll.c.collection_id, T_coll.c.owner_org)
        if org is not None:
            q = q.where(T_coll.c.owner_org == org)
        return list(conn.execute(q).all())

    def delete_collection(self, collection_id: str, *, org: str = OPERATOR_ORG) -> None:
        """Delete the collection and everything in it; when it returns, its embeddings are in
        no file of the data dir (database, WAL, saved indexes)."""
        with self.write() as conn:
            row = self.collection(collection_id, conn, org=org)
            shas = conn.execute(select(T_faces.c.image_sha256).distinct().where(
                T_faces.c.collection_pk == row.id)).scalars().all()
            drop_probe_copies(conn, T_faces.c.collection_pk == row.id)
            # explicit deletes (not only ON DELETE CASCADE) so that it works without FK enforcement
            conn.execute(delete(T_faces).where(T_faces.c.collection_pk == row.id))
            conn.execute(delete(T_users).where(T_users.c.collection_pk == row.id))
            conn.execute(delete(T_tokens).where(T_tokens.c.owner_org == org,
                                                T_tokens.c.collection_id == collection_id))
            conn.execute(delete(T_coll).where(T_coll.c.id == row.id))
            Database.mark_erasing(conn)
        self.vectors.drop(row.id)
        self.forget_photos(shas)

    def _bump(self, conn: Connection, coll_pk: int, column: str) -> int:
        """Advance a generation counter; its new value (UPDATE ... RETURNING: one statement,
        SQLite >= 3.35 and PostgreSQL)."""
        col = T_coll.c[column]
        return int(conn.execute(update(T_coll).where(T_coll.c.id == coll_pk)
                                .values({column: col + 1}).returning(col)).scalar_one())

    def _bump_named(self, conn: Connection, collection_id: str, org: str,
                    column: str) -> tuple[int, int]:
        """:meth:`_bump` on ``org``'s collection ``collection_id``, found in the same statement
        (a write need not look the collection up first): its key and new value, or
        ResourceNotFound when it is gone."""
        found = conn.execute(_BUMP_NAMED[column], {"owner": org, "named": collection_id}).first()
        if found is None:
            raise ResourceNotFound(f"The collection id: {collection_id} does not exist")
        return int(found[0]), int(found[1])

    # ---------------------------------------------------------------- retention

    def set_retention(self, collection_id: str, days: int | None, *,
                      org: str = OPERATOR_ORG) -> None:
        """Keep the collection's faces for ``days`` (None: until deleted)."""
        with self.write() as conn:
            coll = self.collection(collection_id, conn, org=org)
            conn.execute(update(T_coll).where(T_coll.c.id == coll.id).values(retention_days=days))

    def retention_rows(self) -> list[Row]:
        """Every organisation's collections that have a retention period."""
        with self.read() as conn:
            return list(conn.execute(select(T_coll).where(T_coll.c.retention_days.is_not(None))
                                     .order_by(T_coll.c.collection_id, T_coll.c.owner_org)).all())

    def retention_periods(self) -> dict[str, int]:
        """Collections that have a retention period, with it in days, named by
        :func:`collection_label` (the id alone for the operator's own)."""
        return {collection_label(r): int(r.retention_days) for r in self.retention_rows()}


def collection_label(row: Row) -> str:
    """How tools and receipts name a collection across organisations: its id for the
    operator's own, ``org/id`` for another organisation's (a CollectionId cannot hold ``/``)."""
    if row.owner_org == OPERATOR_ORG:
        return row.collection_id
    return f"{row.owner_org}/{row.collection_id}"
