"""Video jobs in the audit ledger.

The gate records StartFaceSearch / StartFaceDetection when they are called (decision, rule,
threshold, the JobId). The work happens later, so when a job finishes one more record is
appended under the principal that started it: the video's SHA-256 (never the video), frames
analysed, faces found, the matches returned (FaceIds and similarities) and the job's outcome.
"""

from __future__ import annotations

from typing import Any

from candor.governance.ledger import Ledger
from candor.store.jobs import JobRow


def job_record(job: JobRow) -> dict[str, Any]:
    """The ledger fields of a finished job."""
    matches: dict[str, float] = {}
    if job.operation == "StartFaceSearch":
        for person in job.results or []:
            for m in person.get("FaceMatches") or []:
                face_id = (m.get("Face") or {}).get("FaceId")
                if face_id:
                    matches[face_id] = max(matches.get(face_id, 0.0), float(m["Similarity"]))
    threshold = None
    if job.operation == "StartFaceSearch":
        from candor.scoring.similarity import IDENTIFICATION_THRESHOLD

        threshold = float(job.params.get("FaceMatchThreshold", IDENTIFICATION_THRESHOLD))
    return {
        "request_id": job.job_id, "principal": job.principal, "org": job.org,
        "category": job.category, "operation": job.operation,
        "collection": job.params.get("CollectionId"),
        "image_sha256": [job.video_sha256] if job.video_sha256 else None,
        "faces_found": job.faces, "threshold": threshold,
        "matches": [{"FaceId": k, "Similarity": round(v, 4)} for k, v in sorted(matches.items())]
        if job.operation == "StartFaceSearch" else None,
        "decision": "allow" if job.status == "SUCCEEDED" else "failed",
        "details": {"job_id": job.job_id, "job_status": job.status, "frames_analysed": job.frames,
                    **({"error": job.status_message} if job.status_message else {})},
    }


def record_jobs(service: Any, ledger: Ledger) -> None:
    """Append a ledger record whenever a job of ``service`` finishes (once per ledger)."""
    registered = getattr(service, "__dict__", {}).setdefault("_job_ledgers", set())
    key = id(ledger.table)
    if key in registered:
        return
    registered.add(key)

    def record(job: JobRow) -> None:
        fields = job_record(job)
        if "details" not in ledger.table.c:
            fields.pop("details")
        ledger.append(**fields)

    service.__dict__.setdefault("_job_listeners", []).append(record)
