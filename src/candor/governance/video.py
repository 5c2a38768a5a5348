"""Video jobs in the audit ledger.

The gate records StartFaceSearch / StartFaceDetection / StartCelebrityRecognition when they
are called (decision, rule, threshold, the JobId). The work happens later, so when a job
finishes one more record is appended under the principal that started it: the video's SHA-256
(never the video), frames analysed, faces found, the matches returned (FaceIds and
similarities; for celebrities the Ids named with their best Confidence, the gallery version and
the threshold the job ran with) and the job's outcome.
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
    gallery: dict[str, Any] = {}
    if job.operation == "StartFaceSearch":
        from candor.scoring.similarity import IDENTIFICATION_THRESHOLD

        threshold = float(job.params.get("FaceMatchThreshold", IDENTIFICATION_THRESHOLD))
    elif job.operation == "StartCelebrityRecognition":
        gallery = dict(job.params.get("CandorGallery") or {})
        threshold = gallery.get("threshold")
        for c in job.results or []:
            celebrity = c.get("Celebrity") or {}
            if celebrity.get("Id"):
                matches[celebrity["Id"]] = max(matches.get(celebrity["Id"], 0.0),
                                               float(celebrity.get("Confidence") or 0.0))
    key = "CelebrityId" if job.operation == "StartCelebrityRecognition" else "FaceId"
    return {
        "request_id": job.job_id, "principal": job.principal, "org": job.org,
        "category": job.category, "operation": job.operation,
        "collection": job.params.get("CollectionId"),
        "image_sha256": [job.video_sha256] if job.video_sha256 else None,
        "faces_found": job.faces, "threshold": threshold,
        "matches": [{key: k, "Similarity": round(v, 4)} for k, v in sorted(matches.items())]
        if job.operation in ("StartFaceSearch", "StartCelebrityRecognition") else None,
        "decision": "allow" if job.status == "SUCCEEDED" else "failed",
        "details": {"job_id": job.job_id, "job_status": job.status, "frames_analysed": job.frames,
                    **({"error": job.status_message} if job.status_message else {}),
                    **({"gallery_version": gallery["version"], "gallery_people": gallery.get("people")}
                       if "version" in gallery else {})},
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
