"""The vector cache: one FAISS index per collection (faces) kept in memory and in files.

The database is the truth; an index is a cache of it, tagged with the collection generation it
was last brought up to. A committed change is mirrored into a current in-memory index
(:meth:`VectorCache.apply`); an index that missed a change (another process wrote) is repaired
from the database at the next search (:meth:`VectorCache.face_index`). Face indexes are saved
under ``<data_dir>/index/`` so that a new process does not re-read every embedding.

Erasure: a saved file must never hold a vector the database no longer has. After a deletion
the collection's file is rewritten from a current in-memory index or deleted
(:meth:`VectorCache.erased`), and an index is re-synced with the database just before it is
saved, so that a process that missed another's deletion does not write the vector back.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, select

from candor.errors import ResourceNotFound
from candor.store.database import Database
from candor.store.schema import collections as T_coll
from candor.store.schema import faces as T_faces
from candor.store.schema import users as T_users
from candor.store.vectors import DIM, VectorIndex

Key = tuple[str, int]  # ("faces" | "users", collection key)

#: a (re)build that added this many vectors is saved at once, for the next process
SAVE_AFTER_BUILD = 50_000


class VectorCache:
    """The per-collection indexes of one store. Thread-safe (a lock per index)."""

    def __init__(self, db: Database, data_dir: Path, index_kind: str, instance_id: str) -> None:
        self.db, self.data_dir, self.index_kind = db, data_dir, index_kind
        self.instance_id = instance_id
        self._indexes: dict[Key, VectorIndex] = {}
        self._locks: dict[Key, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, key: Key) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.RLock())

    def index_path(self, key: Key) -> Path:
        return self.data_dir / "index" / f"{key[0]}-{key[1]}.{self.index_kind}.faiss"

    def _meta(self, key: Key) -> dict:
        return {"instance": self.instance_id, "kind": key[0], "collection_pk": key[1],
                "index_kind": self.index_kind}

    def _unlink(self, key: Key) -> None:
        """Delete the saved files of this index, of every index kind (flat, hnsw) and any
        temporary file a crashed save left."""
        folder = self.data_dir / "index"
        if folder.is_dir():
            for p in folder.glob(f"{key[0]}-{key[1]}.*"):
                p.unlink(missing_ok=True)

    # ---------------------------------------------------------------- changes

    def apply(self, key: Key, generation: int, add=(), remove=()) -> None:
        """Mirror a committed change into the in-memory index if that index was current just
        before it; otherwise leave it to be re-synced at the next search."""
        with self._lock(key):
            idx = self._indexes.get(key)
            if idx is None:
                return
            if idx.generation != generation - 1 or (remove and self.index_kind != "flat"):
                idx.generation = None
                return
            if remove:
                idx.remove(list(remove))
            if add:
                idx.add(np.array([k for k, _ in add], dtype=np.int64),
                        np.stack([np.asarray(v, np.float32) for _, v in add]))
            idx.generation = generation

    def erased(self, coll_pk: int) -> None:
        """After faces of the collection were deleted (and :meth:`apply` ran): rewrite its saved
        index from the in-memory one if that is current, else delete the saved files."""
        key = ("faces", coll_pk)
        with self._lock(key):
            idx = self._indexes.get(key)
            current = idx is not None and idx.generation is not None \
                and idx.generation == self._generation(key)
            saved = self.index_path(key).exists()
            self._unlink(key)
            if current and saved:
                idx.save(self.index_path(key), self._meta(key))

    def drop(self, coll_pk: int) -> None:
        """Forget a deleted collection's indexes, in memory and on disk."""
        for kind in ("faces", "users"):
            key = (kind, coll_pk)
            with self._lock(key):
                self._indexes.pop(key, None)
                self._unlink(key)

    # ---------------------------------------------------------------- reading

    def face_index(self, coll_pk: int) -> VectorIndex:
        """The collection's face index, brought up to the database's current state."""
        return self._synced(("faces", coll_pk))

    def user_index(self, coll_pk: int) -> VectorIndex:
        """An exact index over the collection's users' unit-mean embeddings (users with faces)."""
        return self._synced(("users", coll_pk))

    def _generation(self, key: Key, conn: Connection | None = None) -> int | None:
        if conn is None:
            with self.db.read() as c:
                return self._generation(key, c)
        col = T_coll.c.face_generation if key[0] == "faces" else T_coll.c.user_generation
        return conn.execute(select(col).where(T_coll.c.id == key[1])).scalar()

    def _synced(self, key: Key) -> VectorIndex:
        kind, coll_pk = key
        with self._lock(key):
            with self.db.read() as conn:
                generation = self._generation(key, conn)
                if generation is None:
                    raise ResourceNotFound("The collection does not exist")
                idx = self._indexes.get(key)
                if idx is not None and idx.generation == generation:
                    return idx
                if kind == "users":  # small: rebuilt whole
                    idx = VectorIndex("flat")
                    rows = conn.execute(select(T_users.c.id, T_users.c.embedding).where(
                        T_users.c.collection_pk == coll_pk, T_users.c.embedding.is_not(None))).all()
                    if rows:
                        idx.add(np.array([r.id for r in rows], np.int64),
                                np.stack([np.frombuffer(r.embedding, "<f4") for r in rows]))
                else:
                    if idx is None:
                        idx = (VectorIndex.load(self.index_path(key), self._meta(key), self.index_kind)
                               or VectorIndex(self.index_kind))
                    added = self._catch_up(conn, idx, coll_pk)
                    idx.generation = generation
                    if added >= SAVE_AFTER_BUILD:  # a big (re)build is worth keeping
                        idx.save(self.index_path(key), self._meta(key))
                idx.generation = generation
                self._indexes[key] = idx
            return idx

    def _catch_up(self, conn: Connection, idx: VectorIndex, coll_pk: int) -> int:
        """Make ``idx`` hold exactly the collection's faces: keys are never reused, so the
        difference of key sets is the whole repair. Returns how many vectors were added."""
        db_keys = np.fromiter(conn.execute(select(T_faces.c.id).where(
            T_faces.c.collection_pk == coll_pk)).scalars(), dtype=np.int64)
        have = idx.keys()
        gone = np.setdiff1d(have, db_keys, assume_unique=True)
        new = np.setdiff1d(db_keys, have, assume_unique=True)
        if len(gone):
            if self.index_kind == "flat":
                idx.remove(gone)
            else:  # HNSW cannot remove: rebuild
                idx.__init__(self.index_kind)
                new = db_keys
        if len(new) == 0:
            return 0
        if idx.ntotal == 0:  # a full build: stream the collection rather than list its keys
            result = conn.execute(select(T_faces.c.id, T_faces.c.embedding)
                                  .where(T_faces.c.collection_pk == coll_pk))
            batches = iter(lambda: result.fetchmany(20_000), [])
        else:
            batches = (conn.execute(select(T_faces.c.id, T_faces.c.embedding).where(
                T_faces.c.id.in_([int(k) for k in new[i:i + 20_000]]))).all()
                for i in range(0, len(new), 20_000))
        for rows in batches:
            keys = np.array([r.id for r in rows], np.int64)
            vectors = np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4")
            idx.add(keys, vectors.reshape(len(rows), DIM).astype(np.float32))
        return len(new)

    # ---------------------------------------------------------------- saving

    def save(self) -> None:
        """Write every changed face index to the data dir (a cache: losing it costs a rebuild),
        each first brought up to the database, so that no deleted vector is written back."""
        for key, idx in list(self._indexes.items()):
            if key[0] == "faces" and idx.dirty:
                with self._lock(key):
                    self._save_current(key)

    def _save_current(self, key: Key, attempts: int = 3) -> None:
        for _ in range(attempts):
            try:
                idx = self._synced(key)
            except ResourceNotFound:  # deleted by another process meanwhile
                self.drop(key[1])
                return
            idx.save(self.index_path(key), self._meta(key))
            if self._generation(key) == idx.generation:
                return
        self._unlink(key)  # the collection kept changing: no file rather than a stale one
