"""Persistence for collections, faces and users: a SQL database (the truth) plus vector indexes.

SQLite by default, at ``<data_dir>/candor.db``, in WAL mode with ``synchronous=FULL``: a write
that returned has reached the disk, and a ``kill -9`` at any moment leaves either the whole
transaction or none of it. Writers take the write lock up front (``BEGIN IMMEDIATE``), so two
processes (a long ``candor index`` run and a server) queue instead of failing half-way.
The store keeps images out: it holds embeddings and face metadata only.

This module speaks plain Python values; :mod:`candor.service.collections` maps them to and from
Rekognition's wire shapes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, create_engine, delete, event, func, select, update
from sqlalchemy.engine import Engine, Row

from candor import config
from candor.errors import (
    InvalidPaginationToken,
    InvalidParameter,
    ResourceAlreadyExists,
    ResourceNotFound,
)
from candor.store import migrations, schema
from candor.store.schema import collections as T_coll
from candor.store.schema import faces as T_faces
from candor.store.schema import users as T_users
from candor.store.vectors import DIM, VectorIndex

__all__ = ["Store", "FaceRow", "open_store", "save_open_indexes", "to_blob", "from_blob"]

DB_NAME = "candor.db"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def to_blob(vector: np.ndarray) -> bytes:
    v = np.asarray(vector, dtype=np.float32).reshape(DIM)
    return v.astype("<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def _unit_mean(vectors: list[np.ndarray]) -> np.ndarray | None:
    if not vectors:
        return None
    m = np.mean(np.stack(vectors), axis=0)
    n = float(np.linalg.norm(m))
    return (m / n).astype(np.float32) if n > 0 else None


@dataclass(frozen=True)
class FaceRow:
    """A stored face, as the service layer needs it."""

    key: int
    face_id: str
    image_id: str
    external_image_id: str | None
    bbox: dict
    confidence: float
    model_version: str
    user_id: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> FaceRow:
        return cls(key=row.id, face_id=row.face_id, image_id=row.image_id,
                   external_image_id=row.external_image_id,
                   bbox={"Width": row.bbox_width, "Height": row.bbox_height,
                         "Left": row.bbox_left, "Top": row.bbox_top},
                   confidence=row.confidence, model_version=row.model_version,
                   user_id=row.user_id, created_at=as_utc(row.created_at))


_FACE_COLUMNS = [T_faces.c.id, T_faces.c.face_id, T_faces.c.image_id, T_faces.c.external_image_id,
                 T_faces.c.bbox_width, T_faces.c.bbox_height, T_faces.c.bbox_left,
                 T_faces.c.bbox_top, T_faces.c.confidence, T_faces.c.model_version,
                 T_faces.c.created_at, T_users.c.user_id]


def _face_select():
    return select(*_FACE_COLUMNS).select_from(
        T_faces.outerjoin(T_users, T_faces.c.user_pk == T_users.c.id))


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DB_NAME}"


def _configure_sqlite(engine: Engine) -> None:
    """WAL + synchronous=FULL (durable commits), foreign keys, a generous busy timeout, and
    explicit BEGIN so that writers can take the lock up front (BEGIN IMMEDIATE)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        write = conn.get_execution_options().get("candor_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Store:
    """One database and its vector indexes. Thread-safe; several processes may share a data dir."""

    def __init__(self, data_dir: str | os.PathLike | None = None, url: str | None = None,
                 index_kind: str | None = None) -> None:
        self.data_dir = config.data_dir(data_dir)
        self.url = url or sqlite_url(self.data_dir)
        self.engine = create_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self.writer = self.engine.execution_options(candor_write=True)
        self.schema_version = migrations.migrate(self.writer)
        with self.engine.connect() as conn:
            settings = dict(conn.execute(
                select(schema.settings.c.key, schema.settings.c.value)).all())
        self._token_key = bytes.fromhex(settings["token_key"])
        self.instance_id = settings["instance_id"]
        # flat (exact, default) or hnsw (approximate; deletions make it rebuild)
        self.index_kind = index_kind or config.DEFAULT_INDEX
        if self.index_kind not in config.INDEX_KINDS:
            raise InvalidParameter(f"the vector index must be flat or hnsw, not {self.index_kind!r}")
        self._indexes: dict[tuple[str, int], VectorIndex] = {}
        self._locks: dict[tuple[str, int], threading.RLock] = {}
        self._locks_guard = threading.Lock()

    # ---------------------------------------------------------------- plumbing

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed (durably) on normal exit, rolled back on error."""
        with self.writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        """Save changed vector indexes, then release the database."""
        self.save_indexes()
        self.engine.dispose()

    def integrity_check(self) -> str:
        """SQLite's own ``PRAGMA integrity_check`` ("ok" when sound), plus foreign keys."""
        if not self.is_sqlite:
            return "ok"
        with self.engine.connect() as conn:
            result = conn.exec_driver_sql("PRAGMA integrity_check").scalars().all()
            fk = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        if fk:
            result = [*result, f"{len(fk)} foreign key violations"]
        return "\n".join(result)

    # ---------------------------------------------------------------- collections

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

    def delete_collection(self, collection_id: str) -> None:
        with self.write() as conn:
            row = self.collection(collection_id, conn)
            # explicit deletes (not only ON DELETE CASCADE) so that it works without FK enforcement
            conn.execute(delete(T_faces).where(T_faces.c.collection_pk == row.id))
            conn.execute(delete(T_users).where(T_users.c.collection_pk == row.id))
            conn.execute(delete(schema.idempotency_tokens)
                         .where(schema.idempotency_tokens.c.collection_id == collection_id))
            conn.execute(delete(T_coll).where(T_coll.c.id == row.id))
        self._drop_indexes(row.id)

    # ---------------------------------------------------------------- faces

    def add_faces(self, collection_id: str, faces: list[dict]) -> list[FaceRow]:
        """Store faces (each: embedding, bbox dict, confidence, image_id, external_image_id,
        model_version, image_sha256) in one transaction; returns them with their FaceIds."""
        now = utcnow()
        with self.write() as conn:
            coll = self.collection(collection_id, conn)
            rows = [{
                "collection_pk": coll.id, "face_id": str(uuid.uuid4()),
                "image_id": f["image_id"], "external_image_id": f.get("external_image_id"),
                "image_sha256": f.get("image_sha256"),
                "bbox_width": float(f["bbox"]["Width"]), "bbox_height": float(f["bbox"]["Height"]),
                "bbox_left": float(f["bbox"]["Left"]), "bbox_top": float(f["bbox"]["Top"]),
                "confidence": float(f["confidence"]), "model_version": f["model_version"],
                "embedding": to_blob(f["embedding"]), "user_pk": None, "created_at": now,
            } for f in faces]
            if not rows:
                return []
            conn.execute(T_faces.insert(), rows)
            gen = self._bump(conn, coll.id, "face_generation")
            stored = conn.execute(_face_select().where(
                T_faces.c.face_id.in_([r["face_id"] for r in rows]))).all()
        by_id = {r.face_id: FaceRow.from_row(r) for r in stored}
        out = [by_id[r["face_id"]] for r in rows]
        self._apply(("faces", coll.id), gen, add=[(f.key, fa["embedding"])
                                                  for f, fa in zip(out, faces, strict=True)])
        return out

    def _bump(self, conn: Connection, coll_pk: int, column: str) -> int:
        col = T_coll.c[column]
        conn.execute(update(T_coll).where(T_coll.c.id == coll_pk).values({column: col + 1}))
        return int(conn.execute(select(col).where(T_coll.c.id == coll_pk)).scalar_one())

    def list_faces(self, coll_pk: int, after_key: int, limit: int, user_pk: int | None = None,
                   face_ids: list[str] | None = None) -> tuple[list[FaceRow], bool]:
        q = (_face_select().where(T_faces.c.collection_pk == coll_pk, T_faces.c.id > after_key)
             .order_by(T_faces.c.id).limit(limit + 1))
        if user_pk is not None:
            q = q.where(T_faces.c.user_pk == user_pk)
        if face_ids is not None:
            q = q.where(T_faces.c.face_id.in_(face_ids))
        with self.read() as conn:
            rows = conn.execute(q).all()
        return [FaceRow.from_row(r) for r in rows[:limit]], len(rows) > limit

    def faces_by_id(self, coll_pk: int, face_ids: Iterable[str],
                    conn: Connection | None = None) -> dict[str, FaceRow]:
        ids = list(dict.fromkeys(face_ids))
        if conn is None:
            with self.read() as c:
                return self.faces_by_id(coll_pk, ids, c)
        out: dict[str, FaceRow] = {}
        for i in range(0, len(ids), 500):
            rows = conn.execute(_face_select().where(T_faces.c.collection_pk == coll_pk,
                                                     T_faces.c.face_id.in_(ids[i:i + 500]))).all()
            out.update({r.face_id: FaceRow.from_row(r) for r in rows})
        return out

    def faces_by_key(self, keys: Iterable[int]) -> dict[int, FaceRow]:
        keys = [int(k) for k in keys]
        out: dict[int, FaceRow] = {}
        with self.read() as conn:
            for i in range(0, len(keys), 500):
                rows = conn.execute(_face_select().where(T_faces.c.id.in_(keys[i:i + 500]))).all()
                out.update({r.id: FaceRow.from_row(r) for r in rows})
        return out

    def face_embedding(self, coll_pk: int, face_id: str) -> np.ndarray | None:
        with self.read() as conn:
            blob = conn.execute(select(T_faces.c.embedding).where(
                T_faces.c.collection_pk == coll_pk, T_faces.c.face_id == face_id)).scalar()
        return None if blob is None else from_blob(blob)

    def delete_faces(self, collection_id: str, face_ids: list[str]) -> tuple[list[str], list[dict]]:
        """Delete faces not associated with a user. Returns (deleted FaceIds, failures with
        FaceId, UserId, Reasons), as DeleteFaces reports them."""
        with self.write() as conn:
            coll = self.collection(collection_id, conn)
            found = self.faces_by_id(coll.id, face_ids, conn)
            deleted, failed, keys = [], [], []
            for fid in dict.fromkeys(face_ids):
                face = found.get(fid)
                if face is None:
                    failed.append({"FaceId": fid, "Reasons": ["FACE_NOT_FOUND"]})
                elif face.user_id is not None:
                    failed.append({"FaceId": fid, "UserId": face.user_id,
                                   "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]})
                else:
                    deleted.append(fid)
                    keys.append(face.key)
            gen = None
            if keys:
                for i in range(0, len(keys), 500):
                    conn.execute(delete(T_faces).where(T_faces.c.id.in_(keys[i:i + 500])))
                gen = self._bump(conn, coll.id, "face_generation")
        if gen is not None:
            self._apply(("faces", coll.id), gen, remove=keys)
        return deleted, failed

    # ---------------------------------------------------------------- users

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
        """Remove the user; its faces stay, unassociated. Returns the new user generation."""
        conn.execute(update(T_faces).where(T_faces.c.user_pk == user_pk).values(user_pk=None))
        conn.execute(delete(T_users).where(T_users.c.id == user_pk))
        return self._bump(conn, coll_pk, "user_generation")

    def set_user_faces(self, conn: Connection, coll_pk: int, user_pk: int, add: list[int],
                       remove: list[int]) -> tuple[int, str]:
        """Link/unlink face keys to a user and recompute its unit-mean embedding.
        Returns (face count, status)."""
        for i in range(0, len(add), 500):
            conn.execute(update(T_faces).where(T_faces.c.id.in_(add[i:i + 500]))
                         .values(user_pk=user_pk))
        for i in range(0, len(remove), 500):
            conn.execute(update(T_faces).where(T_faces.c.id.in_(remove[i:i + 500]))
                         .values(user_pk=None))
        blobs = conn.execute(select(T_faces.c.embedding)
                             .where(T_faces.c.user_pk == user_pk)).scalars().all()
        mean = _unit_mean([from_blob(b) for b in blobs])
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
        with self.read() as conn:
            rows = conn.execute(q).all()
        return rows[:limit], len(rows) > limit

    def users_by_key(self, keys: Iterable[int]) -> dict[int, Row]:
        keys = [int(k) for k in keys]
        with self.read() as conn:
            rows = conn.execute(select(T_users).where(T_users.c.id.in_(keys))).all() if keys else []
        return {r.id: r for r in rows}

    # ---------------------------------------------------------------- idempotency

    def idempotent_response(self, conn: Connection, collection_id: str, operation: str,
                            token: str, request_hash: str) -> dict | None | bool:
        """The stored response for a token (dict), ``None`` if the token is new, or ``False``
        if the token was used with different parameters."""
        row = conn.execute(select(schema.idempotency_tokens).where(
            schema.idempotency_tokens.c.collection_id == collection_id,
            schema.idempotency_tokens.c.operation == operation,
            schema.idempotency_tokens.c.token == token)).first()
        if row is None:
            return None
        return row.response if row.request_hash == request_hash else False

    def remember_response(self, conn: Connection, collection_id: str, operation: str, token: str,
                          request_hash: str, response: dict) -> None:
        conn.execute(schema.idempotency_tokens.insert().values(
            collection_id=collection_id, operation=operation, token=token,
            request_hash=request_hash, response=response, created_at=utcnow()))

    # ---------------------------------------------------------------- pagination tokens

    def make_token(self, scope: str, position) -> str:
        """A NextToken that only this database issues: payload + HMAC (forgeries are refused)."""
        payload = base64.urlsafe_b64encode(json.dumps([scope, position]).encode()).decode()
        mac = hmac.new(self._token_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{payload}.{mac}"

    def read_token(self, token: str, scope: str):
        try:
            payload, mac = token.rsplit(".", 1)
            good = hmac.new(self._token_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
            if not hmac.compare_digest(mac, good):
                raise ValueError("bad signature")
            got_scope, position = json.loads(base64.urlsafe_b64decode(payload.encode()))
            if got_scope != scope:
                raise ValueError("token from another request")
        except (ValueError, TypeError, UnicodeError) as exc:
            raise InvalidPaginationToken("Invalid pagination token: it was not issued for "
                                         "this request") from exc
        return position

    # ---------------------------------------------------------------- vector indexes

    def _lock(self, key: tuple[str, int]) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.RLock())

    def _index_path(self, key: tuple[str, int]) -> Path:
        return self.data_dir / "index" / f"{key[0]}-{key[1]}.{self.index_kind}.faiss"

    def _index_meta(self, key: tuple[str, int]) -> dict:
        return {"instance": self.instance_id, "kind": key[0], "collection_pk": key[1],
                "index_kind": self.index_kind}

    def _apply(self, key: tuple[str, int], generation: int, add=(), remove=()) -> None:
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

    def _drop_indexes(self, coll_pk: int) -> None:
        for kind in ("faces", "users"):
            key = (kind, coll_pk)
            with self._lock(key):
                self._indexes.pop(key, None)
                path = self._index_path(key)
                for p in (path, path.with_suffix(".json")):
                    p.unlink(missing_ok=True)

    def face_index(self, coll_pk: int) -> VectorIndex:
        """The collection's face index, brought up to the database's current state."""
        return self._synced(("faces", coll_pk))

    def user_index(self, coll_pk: int) -> VectorIndex:
        """An exact index over the collection's users' unit-mean embeddings (users with faces)."""
        return self._synced(("users", coll_pk))

    def _synced(self, key: tuple[str, int]) -> VectorIndex:
        kind, coll_pk = key
        gen_col = T_coll.c.face_generation if kind == "faces" else T_coll.c.user_generation
        with self._lock(key):
            with self.read() as conn:
                generation = conn.execute(select(gen_col).where(T_coll.c.id == coll_pk)).scalar()
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
                                np.stack([from_blob(r.embedding) for r in rows]))
                else:
                    if idx is None:
                        idx = (VectorIndex.load(self._index_path(key), self._index_meta(key),
                                                self.index_kind) or VectorIndex(self.index_kind))
                    added = self._catch_up(conn, idx, coll_pk)
                    if added >= 50_000:  # a big (re)build is worth keeping for the next process
                        self._save(key, idx)
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

    def _save(self, key: tuple[str, int], idx: VectorIndex) -> None:
        idx.save(self._index_path(key), self._index_meta(key))

    def save_indexes(self) -> None:
        """Write every changed face index to the data dir (a cache: losing it costs a rebuild)."""
        for key, idx in list(self._indexes.items()):
            if key[0] == "faces" and idx.dirty:
                with self._lock(key):
                    self._save(key, idx)

    # ---------------------------------------------------------------- image hashes

    def indexed_image_hashes(self, coll_pk: int, hashes: Iterable[str]) -> set[str]:
        """Which of ``hashes`` (SHA-256 of image bytes, hex) have a face stored in the
        collection: what ``candor index`` skips unless told to re-index."""
        wanted = sorted({h.lower() for h in hashes})
        found: set[str] = set()
        with self.read() as conn:
            for i in range(0, len(wanted), 500):
                found.update(conn.execute(
                    select(T_faces.c.image_sha256).distinct().where(
                        T_faces.c.collection_pk == coll_pk,
                        T_faces.c.image_sha256.in_(wanted[i:i + 500]))).scalars())
        return found


_stores: dict[tuple[str, str | None], Store] = {}
_stores_lock = threading.Lock()


def open_store(data_dir: str | os.PathLike | None = None, url: str | None = None,
               index_kind: str | None = None) -> Store:
    """The process-wide store for a data dir and database (one engine and one set of indexes
    per database). ``url`` None means SQLite in the data dir."""
    path = str(config.data_dir(data_dir).resolve())
    key = (path, url)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(path, url=url, index_kind=index_kind)
        return store


def save_open_indexes() -> None:
    """Save the changed vector indexes of every store open in this process (CLI exit)."""
    with _stores_lock:
        stores = list(_stores.values())
    for store in stores:
        store.save_indexes()
