"""Faces: the stored row (:class:`FaceRow`), embeddings as blobs, and the face operations.

:class:`FacesPart` is one part of :class:`candor.store.Store`; it relies on the store's
transactions (``read``/``write``), ``collection``, ``_bump`` and vector cache (``vectors``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, delete, select
from sqlalchemy.engine import Row

from candor.config import OPERATOR_ORG
from candor.store.database import Database, as_utc, utcnow
from candor.store.reviews import drop_probe_copies
from candor.store.schema import face_thumbnails as T_thumbs
from candor.store.schema import faces as T_faces
from candor.store.schema import users as T_users
from candor.store.vectors import DIM

_BATCH = 500  # keys per IN (...) clause
#: IndexFaces' insert, built once (a statement built per call costs ~0.1 ms of Python, under the GIL)
_INSERT_FACES = T_faces.insert().returning(T_faces.c.id, sort_by_parameter_order=True)


def to_blob(vector: np.ndarray) -> bytes:
    v = np.asarray(vector, dtype=np.float32).reshape(DIM)
    return v.astype("<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


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
    user_pk: int | None = None  # the user's key when ``user_id`` is set

    @classmethod
    def from_row(cls, row: Row) -> FaceRow:
        return cls(key=row.id, face_id=row.face_id, image_id=row.image_id,
                   external_image_id=row.external_image_id,
                   bbox={"Width": row.bbox_width, "Height": row.bbox_height,
                         "Left": row.bbox_left, "Top": row.bbox_top},
                   confidence=row.confidence, model_version=row.model_version,
                   user_id=row.user_id, created_at=as_utc(row.created_at),
                   user_pk=row.user_pk if row.user_id is not None else None)


_FACE_COLUMNS = [T_faces.c.id, T_faces.c.face_id, T_faces.c.image_id, T_faces.c.external_image_id,
                 T_faces.c.bbox_width, T_faces.c.bbox_height, T_faces.c.bbox_left,
                 T_faces.c.bbox_top, T_faces.c.confidence, T_faces.c.model_version,
                 T_faces.c.created_at, T_faces.c.user_pk, T_users.c.user_id]


def face_select():
    """Faces with their user's UserId (an outer join: a face need not belong to a user)."""
    return select(*_FACE_COLUMNS).select_from(
        T_faces.outerjoin(T_users, T_faces.c.user_pk == T_users.c.id))


class FacesPart:
    """Adding, listing, looking up and deleting faces."""

    def add_faces(self, collection_id: str, faces: list[dict], *, org: str = OPERATOR_ORG,
                  within: Callable[[Connection, list[FaceRow]], None] | None = None,
                  ) -> list[FaceRow]:
        """Store faces (each: embedding, bbox dict, confidence, image_id, external_image_id,
        model_version, image_sha256; optional thumbnail JPEG) in one transaction; returns
        them with their FaceIds. ``within(conn, rows)`` runs inside that transaction once the
        faces are in it (``candor index`` appends the audit records of a group of photos
        there, so faces and records commit together)."""
        now = utcnow()
        with self.write() as conn:
            if not faces:
                self.collection(collection_id, conn, org=org)
                if within is not None:
                    within(conn, [])
                return []
            # four statements per photo where there were seven (SELECT the collection, INSERT,
            # UPDATE + SELECT its generation, SELECT the faces back): the collection is found
            # by the UPDATE that bumps it, the face keys come back from the INSERT
            coll_pk, gen = self._bump_named(conn, collection_id, org, "face_generation")
            rows = [{
                "collection_pk": coll_pk, "face_id": str(uuid.uuid4()),
                "image_id": f["image_id"], "external_image_id": f.get("external_image_id"),
                "image_sha256": f.get("image_sha256"),
                "bbox_width": float(f["bbox"]["Width"]), "bbox_height": float(f["bbox"]["Height"]),
                "bbox_left": float(f["bbox"]["Left"]), "bbox_top": float(f["bbox"]["Top"]),
                "confidence": float(f["confidence"]), "model_version": f["model_version"],
                "embedding": to_blob(f["embedding"]), "user_pk": None, "created_at": now,
            } for f in faces]
            keys = conn.execute(_INSERT_FACES, rows).scalars().all()
            out = [FaceRow(key=int(key), face_id=r["face_id"], image_id=r["image_id"],
                           external_image_id=r["external_image_id"],
                           bbox={"Width": r["bbox_width"], "Height": r["bbox_height"],
                                 "Left": r["bbox_left"], "Top": r["bbox_top"]},
                           confidence=r["confidence"], model_version=r["model_version"],
                           user_id=None, created_at=as_utc(now))
                   for key, r in zip(keys, rows, strict=True)]
            thumbs = [{"face_pk": row.key, "jpeg": f["thumbnail"]}
                      for row, f in zip(out, faces, strict=True) if f.get("thumbnail")]
            if thumbs:  # kept for reviewers; gone with the face (ON DELETE CASCADE)
                conn.execute(T_thumbs.insert(), thumbs)
            if within is not None:
                within(conn, out)
        self.vectors.apply(("faces", coll_pk), gen,
                           add=[(f.key, fa["embedding"]) for f, fa in zip(out, faces, strict=True)])
        return out

    def list_faces(self, coll_pk: int, after_key: int, limit: int, user_pk: int | None = None,
                   face_ids: list[str] | None = None) -> tuple[list[FaceRow], bool]:
        q = (face_select().where(T_faces.c.collection_pk == coll_pk, T_faces.c.id > after_key)
             .order_by(T_faces.c.id).limit(limit + 1))
        if user_pk is not None:
            q = q.where(T_faces.c.user_pk == user_pk)
        if face_ids is not None:
            q = q.where(T_faces.c.face_id.in_(face_ids))
        with self.read_replica() as conn:  # a listing: the replica may serve it
            rows = conn.execute(q).all()
        return [FaceRow.from_row(r) for r in rows[:limit]], len(rows) > limit

    def faces_by_id(self, coll_pk: int, face_ids: Iterable[str],
                    conn: Connection | None = None) -> dict[str, FaceRow]:
        ids = list(dict.fromkeys(face_ids))
        if conn is None:
            with self.read() as c:
                return self.faces_by_id(coll_pk, ids, c)
        out: dict[str, FaceRow] = {}
        for i in range(0, len(ids), _BATCH):
            rows = conn.execute(face_select().where(
                T_faces.c.collection_pk == coll_pk, T_faces.c.face_id.in_(ids[i:i + _BATCH]))).all()
            out.update({r.face_id: FaceRow.from_row(r) for r in rows})
        return out

    def faces_by_key(self, keys: Iterable[int]) -> dict[int, FaceRow]:
        keys = [int(k) for k in keys]
        out: dict[int, FaceRow] = {}
        with self.read() as conn:
            for i in range(0, len(keys), _BATCH):
                rows = conn.execute(face_select().where(T_faces.c.id.in_(keys[i:i + _BATCH]))).all()
                out.update({r.id: FaceRow.from_row(r) for r in rows})
        return out

    def faces_where(self, conn: Connection, coll_pk: int, *, external_image_id: str | None = None,
                    user_pk: int | None = None,
                    created_before: datetime | None = None) -> list[FaceRow]:
        """The collection's faces matching every given condition (erasure and retention):
        indexed under an ExternalImageId, associated with a user, or older than a cutoff."""
        q = face_select().where(T_faces.c.collection_pk == coll_pk).order_by(T_faces.c.id)
        if external_image_id is not None:
            q = q.where(T_faces.c.external_image_id == external_image_id)
        if user_pk is not None:
            q = q.where(T_faces.c.user_pk == user_pk)
        if created_before is not None:
            q = q.where(T_faces.c.created_at < created_before)
        return [FaceRow.from_row(r) for r in conn.execute(q).all()]

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

    def face_embedding(self, coll_pk: int, face_id: str) -> np.ndarray | None:
        with self.read() as conn:
            blob = conn.execute(select(T_faces.c.embedding).where(
                T_faces.c.collection_pk == coll_pk, T_faces.c.face_id == face_id)).scalar()
        return None if blob is None else from_blob(blob)

    def delete_faces(self, collection_id: str, face_ids: list[str], *,
                     org: str = OPERATOR_ORG) -> tuple[list[str], list[dict]]:
        """Delete faces not associated with a user. Returns (deleted FaceIds, failures with
        FaceId, UserId, Reasons), as DeleteFaces reports them. When it returns, the deleted
        embeddings are in no file of the data dir (see :mod:`candor.store.database`)."""
        with self.write() as conn:
            coll = self.collection(collection_id, conn, org=org)
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
            gen, shas = None, []
            if keys:
                drop_probe_copies(conn, T_faces.c.id.in_(keys))
                for i in range(0, len(keys), _BATCH):
                    shas += conn.execute(select(T_faces.c.image_sha256).where(
                        T_faces.c.id.in_(keys[i:i + _BATCH]))).scalars().all()
                    conn.execute(delete(T_faces).where(T_faces.c.id.in_(keys[i:i + _BATCH])))
                gen = self._bump(conn, coll.id, "face_generation")
                Database.mark_erasing(conn)
        if gen is not None:
            self.vectors.apply(("faces", coll.id), gen, remove=keys)
            self.vectors.erased(coll.id)
            self.forget_photos(shas)
        return deleted, failed

    def forget_photos(self, shas: list[str | None]) -> None:
        """The evaluation cache in the data dir keeps embeddings by photo SHA-256, as faces
        do: a deleted face's photo goes from it too (:func:`candor.eval.embeddings.forget_photos`)."""
        from candor.eval.embeddings import forget_photos  # the cache's format is eval's

        forget_photos(self.data_dir, shas)
