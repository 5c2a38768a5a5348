"""Reviews: calls whose candidate matches a policy held for a person to confirm or reject.

:class:`ReviewsPart` is one part of :class:`candor.store.Store`. A review keeps the probe's
face crop only while it is undecided: deciding it, or its expiry, removes the crop in the same
transaction that changes its status. The logic (what is held, who may see and decide) is in
:mod:`candor.governance.review`; this module is rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from candor.store.database import as_utc
from candor.store.schema import collections as T_coll
from candor.store.schema import face_thumbnails as T_thumbs
from candor.store.schema import faces as T_faces
from candor.store.schema import review_candidates as T_cand
from candor.store.schema import reviews as T_reviews

PENDING, DECIDED, EXPIRED = "PENDING", "DECIDED", "EXPIRED"
CONFIRMED, REJECTED = "CONFIRMED", "REJECTED"


def drop_probe_copies(conn: Any, faces_where: Any) -> int:
    """In the caller's transaction, before faces are deleted: drop every review probe that is
    a copy of the thumbnail of a face matching ``faces_where`` (a SearchFaces by FaceId held
    for review keeps that face's thumbnail as its probe, which the face's own ON DELETE
    CASCADE does not reach). Only pending reviews have probes, so this is a few rows."""
    copy = (select(T_thumbs.c.face_pk).join(T_faces, T_faces.c.id == T_thumbs.c.face_pk)
            .where(faces_where, T_thumbs.c.jpeg == T_reviews.c.probe_jpeg))
    return conn.execute(T_reviews.update().where(
        T_reviews.c.probe_jpeg.is_not(None), copy.exists()).values(probe_jpeg=None)).rowcount or 0


def _review(row: Any, candidates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = dict(row._mapping)
    for key in ("created_at", "expires_at", "decided_at"):
        if out.get(key) is not None:
            out[key] = as_utc(out[key])
    out["has_probe"] = out.pop("probe_jpeg", None) is not None
    if candidates is not None:
        out["candidates"] = candidates
    return out


class ReviewsPart:
    """Rows of ``reviews`` and ``review_candidates``."""

    def create_review(self, review: dict[str, Any], candidates: list[dict[str, Any]]) -> None:
        """Store one held call and its candidates (``candidate``, ``similarity``, ``match``)."""
        with self.write() as conn:
            conn.execute(T_reviews.insert().values(status=PENDING, **review))
            if candidates:
                conn.execute(T_cand.insert(), [
                    {"review_id": review["review_id"], "position": i, **c}
                    for i, c in enumerate(candidates)])

    def review(self, review_id: str) -> dict[str, Any] | None:
        """One review with its candidates in the order the operation ranked them."""
        with self.read() as conn:
            row = conn.execute(select(T_reviews).where(
                T_reviews.c.review_id == review_id)).first()
            if row is None:
                return None
            cands = conn.execute(select(T_cand).where(T_cand.c.review_id == review_id)
                                 .order_by(T_cand.c.position)).all()
        return _review(row, [dict(c._mapping) for c in cands])

    def review_probe(self, review_id: str) -> bytes | None:
        """The probe's face crop (JPEG) of an undecided review, else None."""
        with self.read() as conn:
            return conn.execute(select(T_reviews.c.probe_jpeg).where(
                T_reviews.c.review_id == review_id)).scalar()

    def reviews(self, status: str | None = None, org: str | None = None,
                limit: int = 200) -> list[dict[str, Any]]:
        """Reviews, newest first (candidates not loaded; ``candidate_count`` given)."""
        counts = (select(T_cand.c.review_id, func.count().label("n"))
                  .group_by(T_cand.c.review_id).subquery())
        q = (select(T_reviews, func.coalesce(counts.c.n, 0).label("candidate_count"))
             .outerjoin(counts, counts.c.review_id == T_reviews.c.review_id)
             .order_by(T_reviews.c.created_at.desc()).limit(limit))
        if status:
            q = q.where(T_reviews.c.status == status)
        if org:
            q = q.where(T_reviews.c.org == org)
        with self.read() as conn:
            return [_review(r) for r in conn.execute(q).all()]

    def count_reviews(self, status: str) -> int:
        with self.read() as conn:
            return conn.execute(select(func.count()).select_from(T_reviews).where(
                T_reviews.c.status == status)).scalar() or 0

    def decide_review(self, review_id: str, verdicts: dict[str, tuple[str, str]],
                      by: str, at: datetime) -> bool:
        """Set each named candidate's verdict and reason, mark the review decided and drop
        its probe crop, in one transaction. False when the review is not pending (decided
        by someone else meanwhile, or expired)."""
        with self.write() as conn:
            done = conn.execute(T_reviews.update().where(
                T_reviews.c.review_id == review_id, T_reviews.c.status == PENDING).values(
                status=DECIDED, decided_at=at, decided_by=by, probe_jpeg=None)).rowcount
            if not done:
                return False
            for candidate, (verdict, reason) in verdicts.items():
                conn.execute(T_cand.update().where(
                    T_cand.c.review_id == review_id, T_cand.c.candidate == candidate).values(
                    verdict=verdict, reason=reason))
        self._erased()
        return True

    def expire_reviews(self, now: datetime) -> list[str]:
        """Mark pending reviews past their expiry EXPIRED and drop their probe crops."""
        with self.write() as conn:
            ids = list(conn.execute(select(T_reviews.c.review_id).where(
                T_reviews.c.status == PENDING, T_reviews.c.expires_at <= now)).scalars())
            if ids:
                conn.execute(T_reviews.update().where(T_reviews.c.review_id.in_(ids)).values(
                    status=EXPIRED, probe_jpeg=None))
        if ids:
            self._erased()
        return ids

    def erase_review_candidates(self, face_ids: set[str],
                                users: dict[str, set[str]] | None = None) -> int:
        """Erasure reaches reviews too: candidates naming an erased face are removed from every
        review (never released, no trace of the match kept), as are erased users (``users``:
        collection id -> UserIds) from the reviews of a collection of that name; returns how
        many. (Probes copied from a face's thumbnail go with the face: :func:`drop_probe_copies`.)"""
        ids = sorted(face_ids)
        removed = 0
        with self.write() as conn:
            for i in range(0, len(ids), 500):
                removed += conn.execute(T_cand.delete().where(
                    T_cand.c.candidate.in_(ids[i:i + 500]))).rowcount or 0
            for collection_id, user_ids in (users or {}).items():
                removed += conn.execute(T_cand.delete().where(
                    T_cand.c.candidate.in_(sorted(user_ids)),
                    T_cand.c.review_id.in_(select(T_reviews.c.review_id).where(
                        T_reviews.c.collection_id == collection_id)))).rowcount or 0
        if removed:
            self._erased()
        return removed

    def _erased(self) -> None:
        """Image bytes were removed: empty the write-ahead log too (secure_delete zeroes the
        database's copy), as the store's other deletions do."""
        checkpoint = getattr(self, "checkpoint", None)
        if checkpoint is not None:
            checkpoint()

    # -- face thumbnails, for reviewers (collections created with --keep-thumbnails) -------

    def set_keep_thumbnails(self, collection_id: str, org: str, keep: bool = True) -> bool:
        """Turn thumbnails on (or off: existing ones are deleted) for ``org``'s collection."""
        with self.write() as conn:
            pk = conn.execute(select(T_coll.c.id).where(
                T_coll.c.collection_id == collection_id, T_coll.c.owner_org == org)).scalar()
            if pk is None:
                return False
            conn.execute(T_coll.update().where(T_coll.c.id == pk).values(keep_thumbnails=keep))
            if not keep:
                conn.execute(T_thumbs.delete().where(T_thumbs.c.face_pk.in_(
                    select(T_faces.c.id).where(T_faces.c.collection_pk == pk))))
        if not keep:
            self._erased()
        return True

    def thumbnail(self, face_id: str) -> bytes | None:
        with self.read() as conn:
            return conn.execute(select(T_thumbs.c.jpeg).join(
                T_faces, T_faces.c.id == T_thumbs.c.face_pk).where(
                T_faces.c.face_id == face_id)).scalar()

    def thumbnail_ids(self, face_ids: list[str]) -> set[str]:
        """Which of ``face_ids`` have a thumbnail."""
        if not face_ids:
            return set()
        with self.read() as conn:
            return set(conn.execute(select(T_faces.c.face_id).join(
                T_thumbs, T_thumbs.c.face_pk == T_faces.c.id).where(
                T_faces.c.face_id.in_(face_ids))).scalars())


class ReviewRows(ReviewsPart):
    """The review rows of a database given by its engine alone (a gate whose ledger is not a
    :class:`~candor.store.Store`'s keeps its reviews next to its ledger)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    @contextmanager
    def write(self) -> Iterator[Any]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Any]:
        with self.engine.connect() as conn:
            yield conn
