"""Video jobs: one row per StartFaceDetection / StartFaceSearch / StartCelebrityRecognition, its
progress and results.

:class:`JobsPart` is one part of :class:`candor.store.Store`. Jobs live in the database, not in
memory, so that a server stopped in any way (``kill -9`` included) finds its unfinished jobs on
the next start (:meth:`unfinished`) and resumes or fails them; results stay until
``expires_at`` (:meth:`purge_jobs`), and erasure removes a person's matches from stored results
(:meth:`erase_job_matches`), as does removing a person from the celebrity gallery
(:meth:`erase_job_celebrity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from candor.store.database import as_utc, utcnow
from candor.store.schema import video_jobs as T_jobs

STATUSES = ("IN_PROGRESS", "SUCCEEDED", "FAILED")


@dataclass
class JobRow:
    job_id: str
    operation: str
    org: str | None
    principal: str | None
    category: str | None
    status: str
    status_message: str | None
    params: dict
    client_token: str | None
    request_hash: str | None
    job_tag: str | None
    video_path: str | None
    video_sha256: str | None
    video_metadata: dict | None
    progress: float
    frames: int
    faces: int
    matches: int
    attempts: int
    results: list | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None


def _row(r) -> JobRow:
    values = dict(r._mapping)
    for key in ("created_at", "updated_at", "completed_at", "expires_at"):
        if values[key] is not None:
            values[key] = as_utc(values[key])
    return JobRow(**values)


class JobsPart:
    """Create, read, update, resume and purge video jobs."""

    def create_job(self, **fields: Any) -> JobRow:
        now = utcnow()
        values = {"status": "IN_PROGRESS", "progress": 0.0, "frames": 0, "faces": 0,
                  "matches": 0, "attempts": 0, "created_at": now, "updated_at": now, **fields}
        with self.write() as conn:
            conn.execute(T_jobs.insert().values(**values))
        return self.job(values["job_id"])

    def job(self, job_id: str) -> JobRow | None:
        with self.read() as conn:
            r = conn.execute(select(T_jobs).where(T_jobs.c.job_id == job_id)).first()
        return _row(r) if r is not None else None

    def job_by_token(self, org: str | None, operation: str, token: str) -> JobRow | None:
        """The caller's job started with ClientRequestToken ``token`` (idempotency)."""
        with self.read() as conn:
            r = conn.execute(select(T_jobs).where(
                T_jobs.c.org == org, T_jobs.c.operation == operation,
                T_jobs.c.client_token == token).order_by(T_jobs.c.created_at.desc())).first()
        return _row(r) if r is not None else None

    def update_job(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = utcnow()
        with self.write() as conn:
            conn.execute(update(T_jobs).where(T_jobs.c.job_id == job_id).values(**fields))

    def unfinished(self) -> list[JobRow]:
        """Jobs still IN_PROGRESS (after a restart: the ones a stopped server was running)."""
        with self.read() as conn:
            rows = conn.execute(select(T_jobs).where(T_jobs.c.status == "IN_PROGRESS")
                                .order_by(T_jobs.c.created_at)).all()
        return [_row(r) for r in rows]

    def purge_jobs(self, now: datetime | None = None) -> list[str]:
        """Delete finished jobs whose retention ended; returns their JobIds."""
        now = now or utcnow()
        with self.write() as conn:
            ids = conn.execute(select(T_jobs.c.job_id).where(
                T_jobs.c.expires_at.is_not(None), T_jobs.c.expires_at <= now)).scalars().all()
            if ids:
                conn.execute(T_jobs.delete().where(T_jobs.c.job_id.in_(ids)))
        return list(ids)

    @staticmethod
    def erase_job_celebrity(conn, celebrity_id: str) -> int:
        """Remove every sighting of ``celebrity_id`` from stored StartCelebrityRecognition
        results, in the caller's transaction (the person's removal from the gallery); returns
        how many were removed."""
        removed = 0
        rows = conn.execute(select(T_jobs.c.job_id, T_jobs.c.results).where(
            T_jobs.c.operation == "StartCelebrityRecognition", T_jobs.c.results.is_not(None))).all()
        for job_id, results in rows:
            kept = [c for c in results or [] if (c.get("Celebrity") or {}).get("Id") != celebrity_id]
            if len(kept) != len(results or []):
                removed += len(results) - len(kept)
                conn.execute(update(T_jobs).where(T_jobs.c.job_id == job_id).values(
                    results=kept, matches=len(kept), updated_at=utcnow()))
        return removed

    def erase_job_matches(self, face_ids: set[str]) -> int:
        """Remove every FaceMatch naming one of ``face_ids`` from stored search results;
        returns how many matches were removed."""
        if not face_ids:
            return 0
        removed = 0
        with self.write() as conn:
            rows = conn.execute(select(T_jobs.c.job_id, T_jobs.c.results).where(
                T_jobs.c.operation == "StartFaceSearch", T_jobs.c.results.is_not(None))).all()
            for job_id, results in rows:
                changed = 0
                for person in results or []:
                    matches = person.get("FaceMatches") or []
                    kept = [m for m in matches if (m.get("Face") or {}).get("FaceId")
                            not in face_ids]
                    changed += len(matches) - len(kept)
                    person["FaceMatches"] = kept
                if changed:
                    removed += changed
                    count = sum(len(p.get("FaceMatches") or []) for p in results)
                    conn.execute(update(T_jobs).where(T_jobs.c.job_id == job_id).values(
                        results=results, matches=count, updated_at=utcnow()))
        return removed
