"""Persistence for collections, faces and users: a SQL database (the truth) plus vector indexes.

:class:`Store` is the one facade the other layers use. It is made of parts, one concept each:

- :mod:`~candor.store.database`: the engine, SQLite's configuration (WAL, ``synchronous=FULL``,
  ``BEGIN IMMEDIATE``, ``secure_delete``), transactions, checkpoints, integrity check;
- :mod:`~candor.store.collections`, :mod:`~candor.store.faces`, :mod:`~candor.store.users`:
  the rows and the operations on them;
- :mod:`~candor.store.celebrities`: the operator's celebrity gallery (RecognizeCelebrities);
- :mod:`~candor.store.operators`: console accounts and sessions;
- :mod:`~candor.store.reviews`: calls held for human review, their candidates and verdicts;
- :mod:`~candor.store.tokens`: signed pagination tokens and idempotency responses;
- :mod:`~candor.store.vector_cache`: the per-collection FAISS indexes, in memory and saved;
- :mod:`~candor.store.schema`, :mod:`~candor.store.migrations` and :mod:`~candor.store.upgrade`
  (Alembic revisions, docs/migrations.md), :mod:`~candor.store.vectors`.

The store keeps images out: it holds embeddings and face metadata, and only two small crops
for human reviewers (a held call's probe face, until decided; a thumbnail per face in a
collection with ``keep_thumbnails``, deleted with the face). It speaks plain Python
values; :mod:`candor.service.collections` maps them to and from Rekognition's wire shapes. When
a deleting call (DeleteFaces, DeleteUser, DeleteCollection, erasure, a retention purge) returns,
the removed embeddings are in no file of the data dir (see docs/collections.md).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, select

from candor import config
from candor.errors import InvalidParameter
from candor.store.celebrities import CelebritiesPart, Gallery
from candor.store.collections import CollectionsPart
from candor.store.database import DB_NAME, Database, as_utc, sqlite_url, utcnow
from candor.store.faces import FaceRow, FacesPart, from_blob, to_blob
from candor.store.jobs import JobsPart
from candor.store.operators import OperatorsPart
from candor.store.reviews import ReviewsPart
from candor.store.schema import settings as T_settings
from candor.store.tokens import TokensPart
from candor.store.users import UsersPart
from candor.store.vector_cache import VectorCache
from candor.store.vectors import VectorIndex

__all__ = ["Store", "FaceRow", "Gallery", "DB_NAME", "open_store", "save_open_indexes", "to_blob",
           "from_blob", "as_utc", "utcnow"]

INDEX_KINDS = ("flat", "hnsw")


class Store(CollectionsPart, FacesPart, UsersPart, TokensPart, CelebritiesPart, JobsPart,
            ReviewsPart, OperatorsPart):
    """One database and its vector indexes. Thread-safe; several processes may share a data dir.

    ``url`` is a SQLAlchemy URL (default: SQLite at ``<data_dir>/candor.db``); ``index_kind`` is
    ``flat`` (exact, default) or ``hnsw`` (approximate; deletions make it rebuild).
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, url: str | None = None,
                 index_kind: str | None = None, replica_url: str | None = None) -> None:
        self.index_kind = index_kind or "flat"
        if self.index_kind not in INDEX_KINDS:
            raise InvalidParameter(f"the vector index must be flat or hnsw, not {self.index_kind!r}")
        self.data_dir = config.data_dir(data_dir)
        self.db = Database(url or sqlite_url(self.data_dir), replica_url=replica_url)
        with self.db.read() as conn:
            settings = dict(conn.execute(select(T_settings.c.key, T_settings.c.value)).all())
        self._token_key = bytes.fromhex(settings["token_key"])
        self.instance_id = settings["instance_id"]
        self.vectors = self._vectors()

    def _vectors(self) -> VectorCache:
        """Where face vectors are searched, chosen by the engine behind one interface: FAISS
        indexes cached in this process on SQLite, pgvector in the database on PostgreSQL (so
        that no node of several holds a private copy)."""
        if self.db.is_postgres:
            from candor.store.pgvector_index import PgVectors

            return PgVectors(self.db, self.data_dir, self.index_kind, self.instance_id)
        return VectorCache(self.db, self.data_dir, self.index_kind, self.instance_id)

    # ---------------------------------------------------------------- the database

    @property
    def url(self) -> str:
        return self.db.url

    @property
    def engine(self):
        return self.db.engine

    @property
    def writer(self):
        """The engine whose transactions begin IMMEDIATE (the audit ledger writes through it)."""
        return self.db.writer

    @property
    def is_sqlite(self) -> bool:
        return self.db.is_sqlite

    @property
    def schema_version(self) -> int:
        return self.db.schema_version

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed (durably) on normal exit, rolled back on error."""
        with self.db.write() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.db.read() as conn:
            yield conn

    @contextmanager
    def read_replica(self) -> Iterator[Connection]:
        """For searches and listings: the read replica when there is one and it is caught up
        (:meth:`Database.read_replica`), else the database itself."""
        with self.db.read_replica() as conn:
            yield conn

    def integrity_check(self) -> str:
        """SQLite's own ``PRAGMA integrity_check`` ("ok" when sound), plus foreign keys."""
        return self.db.integrity_check()

    def checkpoint(self) -> bool:
        """Empty the write-ahead log into the database (see :meth:`Database.checkpoint`)."""
        return self.db.checkpoint()

    def close(self) -> None:
        """Save changed vector indexes, empty the write-ahead log, release the database."""
        self.vectors.save()
        self.db.close()

    # ---------------------------------------------------------------- vector indexes

    def face_index(self, coll_pk: int) -> VectorIndex:  # or a PgVectorIndex on PostgreSQL
        """The collection's face index, brought up to the database's current state."""
        return self.vectors.face_index(coll_pk)

    def user_index(self, coll_pk: int) -> VectorIndex:
        """An exact index over the collection's users' unit-mean embeddings (users with faces)."""
        return self.vectors.user_index(coll_pk)

    def save_indexes(self) -> None:
        """Write every changed face index to the data dir, then empty the write-ahead log: this
        is what a process does on its way out (CLI exit, server stop), so that a clean stop
        leaves no WAL content behind."""
        self.vectors.save()
        self.db.checkpoint()


_stores: dict[tuple[str, str | None, str, str | None], Store] = {}
_stores_lock = threading.Lock()


def open_store(data_dir: str | os.PathLike | None = None, url: str | None = None,
               index_kind: str | None = None, replica_url: str | None = None) -> Store:
    """The process-wide store for a data dir (one engine and one set of indexes per database)."""
    path = str(config.data_dir(data_dir).resolve())
    key = (path, url, index_kind or "flat", replica_url)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(path, url=url, index_kind=index_kind,
                                         replica_url=replica_url)
        return store


def save_open_indexes() -> None:
    """Save the changed vector indexes of every store open in this process (CLI exit)."""
    with _stores_lock:
        stores = list(_stores.values())
    for store in stores:
        store.save_indexes()
