"""Video jobs: one row per StartFaceDetection / StartFaceSearch / StartCelebrityRecognition, its
progress and results.

:class:`JobsPart` is one part of :class:`candor.store.Store`. Jobs live in the database, not in
memory, so that a server stopped in any way (``kill -9`` included) finds its unfinished jobs on
the next start (:meth:`unfinished`) and resumes or fails them; results stay until
``expires_at`` (:meth:`purge_jobs`), and erasure removes a person's matches from stored results
(:meth:`erase_job_matches`), as does removing a person from the celebrity gallery
(:meth:`erase_job_celebrity`).

Ownership (several nodes on one database, docs/video.md): a job in progress belongs to the node
in ``owner`` until ``lease_expires``. The node renews its leases (:meth:`renew_leases`); any node
may take over a job whose lease has expired or that has none (:meth:`claim_job`, one conditional
UPDATE, so two nodes racing for it cannot both win); and every write a runner makes while
running a job is conditional on still owning it (``update_job(..., owner=...)``), so a node
that lost its job can never overwrite the new owner's work. Lease times come from the
database's clock on PostgreSQL (nodes' clocks may differ) and from the machine's on SQLite
(every node of a SQLite store is on one machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, or_, select, update

from candor.store.database import Database, as_utc, utcnow
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
    owner: str | None = None
    lease_expires: datetime | None = None


def _row(r) -> JobRow:
    values = dict(r._mapping)
    for key in ("created_at", "updated_at", "completed_at", "expires_at", "lease_expires"):
        if values[key] is not None:
            values[key] = as_utc(values[key])
    return JobRow(**values)


def db_now(conn: Connection) -> datetime:
    """Now by the clock every node shares: the database server's on PostgreSQL (the time of
    the call, not of the transaction's start, which may lie before a wait for the write lock),
    the machine's on SQLite (one file, one machine)."""
    if conn.dialect.name == "postgresql":
        return as_utc(conn.execute(select(func.clock_timestamp())).scalar_one())
    return utcnow()


def _claimable(now: datetime):
    """A job in progress whose lease has expired or that never had one."""
    return (T_jobs.c.status == "IN_PROGRESS") & or_(T_jobs.c.lease_expires.is_(None),
                                                   T_jobs.c.lease_expires <= now)


class JobsPart:
    """Create, read, update, claim, resume and purge video jobs."""

    def create_job(self, owner: str | None = None, lease: float | None = None,
                   **fields: Any) -> JobRow:
        """A new job IN_PROGRESS, owned by ``owner`` for ``lease`` seconds when given."""
        with self.write() as conn:
            now = db_now(conn)
            values = {"status": "IN_PROGRESS", "progress": 0.0, "frames": 0, "faces": 0,
                      "matches": 0, "attempts": 0, "created_at": now, "updated_at": now,
                      "owner": owner, **fields}
            if owner is not None and lease is not None:
                values["lease_expires"] = now + timedelta(seconds=lease)
            conn.execute(T_jobs.insert().values(**values))
        return self.job(values["job_id"])

    def claim_job(self, job_id: str, owner: str, lease: float, own: bool = False) -> bool:
        """Take job ``job_id`` for ``owner`` for ``lease`` seconds if it is in progress and its
        lease has expired (or, with ``own``, if ``owner`` already holds it: a node restarted
        under the same id takes back its own jobs). True if this call took it."""
        with self.write() as conn:
            now = db_now(conn)
            free = _claimable(now)
            if own:
                free = (T_jobs.c.status == "IN_PROGRESS") & (free | (T_jobs.c.owner == owner))
            done = conn.execute(update(T_jobs).where(T_jobs.c.job_id == job_id, free).values(
                owner=owner, lease_expires=now + timedelta(seconds=lease), updated_at=now))
            return done.rowcount == 1

    def renew_leases(self, job_ids: set[str], owner: str, lease: float) -> set[str]:
        """Extend ``owner``'s leases on ``job_ids``; returns those it no longer holds (finished,
        or taken over by another node after its lease expired)."""
        if not job_ids:
            return set()
        with self.write() as conn:
            now = db_now(conn)
            mine = (T_jobs.c.job_id.in_(job_ids), T_jobs.c.owner == owner,
                    T_jobs.c.status == "IN_PROGRESS")
            conn.execute(update(T_jobs).where(*mine).values(
                lease_expires=now + timedelta(seconds=lease)))
            held = set(conn.execute(select(T_jobs.c.job_id).where(*mine)).scalars())
        return set(job_ids) - held

    def release_jobs(self, job_ids: set[str], owner: str) -> None:
        """End ``owner``'s leases on ``job_ids`` now (a node stopping cleanly), so that another
        node takes them over at once instead of after the lease."""
        if not job_ids:
            return
        with self.write() as conn:
            conn.execute(update(T_jobs).where(
                T_jobs.c.job_id.in_(job_ids), T_jobs.c.owner == owner,
                T_jobs.c.status == "IN_PROGRESS").values(lease_expires=db_now(conn)))

    def claimable_jobs(self, owner: str | None = None) -> list[JobRow]:
        """Jobs in progress that a node may take over: lease expired or none, oldest first;
        with ``owner``, that node's own jobs too, whatever their lease."""
        with self.read() as conn:
            free = _claimable(db_now(conn))
            if owner is not None:
                free = free | ((T_jobs.c.status == "IN_PROGRESS") & (T_jobs.c.owner == owner))
            rows = conn.execute(select(T_jobs).where(free).order_by(T_jobs.c.created_at)).all()
        return [_row(r) for r in rows]

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

    def update_job(self, job_id: str, owner: str | None = None, lease: float | None = None,
                   **fields: Any) -> bool:
        """Set ``fields`` of the job; with ``owner``, only while that node holds it (and, with
        ``lease``, renewing its lease for that many seconds). True if the row was written."""
        fields["updated_at"] = utcnow()
        where = [T_jobs.c.job_id == job_id]
        if owner is not None:
            where += [T_jobs.c.owner == owner, T_jobs.c.status == "IN_PROGRESS"]
        with self.write() as conn:
            if owner is not None and lease is not None:
                fields["lease_expires"] = db_now(conn) + timedelta(seconds=lease)
            return conn.execute(update(T_jobs).where(*where).values(**fields)).rowcount == 1

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
                Database.mark_erasing(conn)  # results name people: no copy left in the files
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
            if removed:  # the old rows leave candor.db and its log too (a checkpoint)
                Database.mark_erasing(conn)
        return removed
