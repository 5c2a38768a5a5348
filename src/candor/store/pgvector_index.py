"""Face search on PostgreSQL: pgvector in the database, so no candor node holds a private copy.

On SQLite the store keeps a FAISS index per collection (:mod:`candor.store.vector_cache`), a
cache of the database that each process repairs from the collection's generation. On
PostgreSQL, where several nodes share one database, the faces' ``embedding`` column is a
``vector(128)`` with an HNSW index over inner product (:mod:`candor.store.schema`), and a
search is one query: ``ORDER BY embedding <#> :q LIMIT k`` (``<#>`` is the negative inner
product; embeddings are unit vectors, so inner product = cosine). Every node sees every
committed face at its next search; nothing to rebuild, save or invalidate. With a read
replica, searches run there once it has replayed what the primary had when they began
(:meth:`~candor.store.database.Database.read_replica`).

Exact or approximate, as on SQLite, by the index kind (``CANDOR_INDEX``): ``flat`` (the
default) scans the collection exactly (the planner may not use the HNSW index); ``hnsw`` uses
it, with pgvector's iterative scan so that a collection filter still yields ``k`` rows.

:class:`PgVectorIndex` offers what the search code asks of a FAISS-backed
:class:`~candor.store.vectors.VectorIndex` (``search``, ``ntotal``, and through ``.index`` the
batch search and the stored vectors), so the service layer is the same on both engines. The
users' index (small: one mean per user) stays the in-memory exact one on both, rebuilt from the
database whenever the collection's user generation moves, so it cannot go stale either.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, select, text

from candor.errors import ResourceNotFound
from candor.store.database import Database
from candor.store.schema import faces as T_faces
from candor.store.vector_cache import Key, VectorCache
from candor.store.vectors import DIM

#: HNSW candidates examined per search (pgvector's hnsw.ef_search; more = better recall)
EF_SEARCH = 200

_SEARCH = text(
    "SELECT id, embedding <#> CAST(:q AS vector) AS distance FROM faces "
    "WHERE collection_pk = :c ORDER BY embedding <#> CAST(:q AS vector) LIMIT :k")


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form; float32 values print and parse back exactly."""
    v = np.asarray(vector, dtype=np.float32).reshape(DIM)
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


class PgVectorIndex:
    """One collection's faces, searched in PostgreSQL (see the module docstring)."""

    kind = "pgvector"

    def __init__(self, db: Database, coll_pk: int, exact: bool, iterative: bool) -> None:
        self.db, self.coll_pk, self.exact, self.iterative = db, coll_pk, exact, iterative
        self.d = DIM

    @property
    def index(self) -> PgVectorIndex:
        """The FAISS-shaped surface (``search`` of a batch, ``reconstruct_batch``)."""
        return self

    @property
    def ntotal(self) -> int:
        with self.db.read_replica() as conn:
            return int(conn.execute(text("SELECT count(*) FROM faces WHERE collection_pk = :c"),
                                    {"c": self.coll_pk}).scalar_one())

    def keys(self) -> np.ndarray:
        """The collection's face keys (what a FAISS index of it would hold)."""
        with self.db.read_replica() as conn:
            return np.fromiter(conn.execute(text(
                "SELECT id FROM faces WHERE collection_pk = :c ORDER BY id"),
                {"c": self.coll_pk}).scalars(), dtype=np.int64)

    def _configure(self, conn: Connection, k: int) -> None:
        if self.exact:
            conn.exec_driver_sql("SET LOCAL enable_indexscan = off")
            return
        conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {min(1000, max(EF_SEARCH, int(k)))}")
        if self.iterative:
            conn.exec_driver_sql("SET LOCAL hnsw.iterative_scan = strict_order")

    def _nearest(self, conn: Connection, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = conn.execute(_SEARCH, {"q": vector_literal(vector), "c": self.coll_pk,
                                      "k": int(k)}).all()
        keys = np.array([r.id for r in rows], dtype=np.int64)
        cosines = np.array([-float(r.distance) for r in rows], dtype=np.float32)
        return cosines, keys

    def search(self, vector: np.ndarray, k: int = 10, *_):
        """Up to ``k`` (cosines, keys), best first; given a 2-D batch (FAISS's call, through
        ``.index``), (cosines, keys) arrays of shape (n, k), padded with key -1."""
        batch = np.asarray(vector, dtype=np.float32)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        with self.db.read_replica() as conn:
            self._configure(conn, k)
            if batch.ndim == 1:
                return self._nearest(conn, batch, k)
            cos = np.zeros((len(batch), k), np.float32)
            keys = np.full((len(batch), k), -1, np.int64)
            for i, row in enumerate(batch):
                c, ks = self._nearest(conn, row, k)
                cos[i, :len(ks)], keys[i, :len(ks)] = c, ks
            return cos, keys

    def reconstruct_batch(self, keys) -> np.ndarray:
        """The stored embeddings of ``keys`` (zeros for a key deleted meanwhile)."""
        keys = [int(k) for k in np.asarray(keys).reshape(-1)]
        out = np.zeros((len(keys), DIM), np.float32)
        if not keys:
            return out
        with self.db.read_replica() as conn:  # the typed column: embeddings come back as bytes
            rows = conn.execute(select(T_faces.c.id, T_faces.c.embedding).where(
                T_faces.c.id.in_(keys))).all()
        found = {r.id: r.embedding for r in rows}
        for i, key in enumerate(keys):
            if key in found:
                out[i] = np.frombuffer(found[key], dtype="<f4")
        return out

    def reconstruct(self, key: int) -> np.ndarray:
        return self.reconstruct_batch([key])[0]


class PgVectors(VectorCache):
    """The store's vector access on PostgreSQL: faces searched in the database, users in the
    in-memory exact index of :class:`VectorCache` (never saved, rebuilt by generation)."""

    def __init__(self, db: Database, data_dir, index_kind: str, instance_id: str) -> None:
        super().__init__(db, data_dir, index_kind, instance_id)
        with db.read() as conn:
            version = conn.execute(text(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar() or "0"
        self.iterative = tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)

    def face_index(self, coll_pk: int) -> PgVectorIndex:
        with self.db.read() as conn:
            if conn.execute(text("SELECT 1 FROM collections WHERE id = :c"),
                            {"c": coll_pk}).first() is None:
                raise ResourceNotFound("The collection does not exist")
        return PgVectorIndex(self.db, coll_pk, exact=self.index_kind == "flat",
                             iterative=self.iterative)

    def apply(self, key: Key, generation: int, add=(), remove=()) -> None:
        if key[0] != "faces":
            super().apply(key, generation, add, remove)

    def erased(self, coll_pk: int) -> None:
        """Nothing to rewrite: no face vector lives outside the database."""

    def save(self) -> None:
        """Nothing to save: the users' indexes are rebuilt from the database when needed."""
