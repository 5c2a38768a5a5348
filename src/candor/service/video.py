"""Stored video: StartFaceDetection / GetFaceDetection and StartFaceSearch / GetFaceSearch.

Start* checks the request, finds the video (``Video.S3Object``: a local bucket of ``candor
serve --bucket NAME=DIR``, else the ``--s3-endpoint-url`` store, downloaded into the data dir),
writes the job and returns its JobId; the job runs on :mod:`candor.service.jobs`. Get* reads
the job's status and results, in Rekognition's shapes, paginated with MaxResults / NextToken,
and only for the organisation that started it (others get ResourceNotFoundException, as
across AWS accounts). ClientRequestToken makes Start idempotent per organisation.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from candor.errors import IdempotentParameterMismatch, InvalidS3Object, ResourceNotFound
from candor.face.video import bucket_path, parse_buckets, probe, sample_frames, sha256_file
from candor.scoring.similarity import IDENTIFICATION_THRESHOLD
from candor.service import Service, operation
from candor.service.caller import Caller, current_caller, resolve_collection
from candor.service.common import same_model, store_of
from candor.service.jobs import LOCATE, WORK, runner_of
from candor.store.jobs import JobRow

DEFAULT_MAX_RESULTS = 1000
MAX_RESULTS = 1000
#: the jobs whose faces are embedded (once per track segment): they compare faces
EMBEDS = ("StartFaceSearch", "StartCelebrityRecognition")


# -- where the video is ---------------------------------------------------------------------
def video_file(service: Service, spec: dict, job_id: str) -> Path:
    """The local file of ``Video.S3Object``: a local bucket's file, or the object downloaded
    by the door's media fetcher (``service.media``, set by the HTTP gateway)."""
    s3 = (spec or {}).get("S3Object") or {}
    bucket, name = s3.get("Bucket"), s3.get("Name")
    if not bucket or not name:
        raise InvalidS3Object("Video.S3Object needs Bucket and Name")
    buckets = {**parse_buckets(service.settings.buckets),
               **service.__dict__.get("local_buckets", {})}
    path = bucket_path(buckets, bucket, name)
    if path is not None:
        return path
    media = service.__dict__.get("media")
    if media is None or not getattr(media, "endpoint_url", None):
        raise InvalidS3Object(
            f"s3://{bucket}/{name}: no such bucket here; serve a folder as a bucket with "
            "candor serve --bucket NAME=DIR, or name an S3 store with --s3-endpoint-url")
    dest = service.data_dir / "videos" / job_id
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    media.download(s3, dest)
    return dest


def _locate_again(service: Service, job: JobRow) -> Path:
    """A job taken over from another node: its video through this node's buckets or S3."""
    return video_file(service, job.params.get("Video") or {}, job.job_id)


LOCATE.append(_locate_again)


def _request_hash(params: dict) -> str:
    keep = {k: v for k, v in params.items() if k != "ClientRequestToken"}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def _start(service: Service, operation_name: str, params: dict) -> dict:
    store = store_of(service)
    caller = current_caller()
    token = params.get("ClientRequestToken")
    digest = _request_hash(params)
    if token:
        known = store.job_by_token(caller.org, operation_name, token)
        if known is not None:
            if known.request_hash != digest:
                raise IdempotentParameterMismatch(
                    "ClientRequestToken was used with different parameters")
            return {"JobId": known.job_id}
    if operation_name == "StartFaceSearch":
        same_model(resolve_collection(store, params["CollectionId"]))
    job_id = uuid.uuid4().hex
    path = video_file(service, params["Video"], job_id)
    runner = runner_of(service)  # this node owns the job from the start (leases: jobs.py)
    store.create_job(job_id=job_id, operation=operation_name, org=caller.org,
                     principal=caller.principal, category=caller.category,
                     params=_jsonable(params), client_token=token, request_hash=digest,
                     job_tag=params.get("JobTag"), video_path=str(path),
                     owner=runner.node_id, lease=runner.lease)
    runner.submit(job_id)
    return {"JobId": job_id}


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str))


@operation("StartFaceDetection")
def start_face_detection(service: Service, params: dict) -> dict:
    return _start(service, "StartFaceDetection", params)


@operation("StartFaceSearch")
def start_face_search(service: Service, params: dict) -> dict:
    return _start(service, "StartFaceSearch", params)


# -- the work ---------------------------------------------------------------------------------
def _frames(service: Service, job: JobRow, progress):
    """(info, tracked frames) of the job's video, reporting progress as frames go by."""
    from candor.face.tracking import track_faces

    info = probe(job.video_path)
    sha = sha256_file(job.video_path)
    store_of(service).update_job(job.job_id, video_sha256=sha, video_metadata=info.metadata())
    fps = float(service.settings.video_fps)
    attributes = ["ALL"] if job.params.get("FaceAttributes") == "ALL" else ["DEFAULT"]
    counts = {"frames": 0, "faces": 0}

    def seen(ff) -> None:
        counts["frames"] += 1
        counts["faces"] += len(ff.faces)
        progress(100.0 * ff.frame.timestamp_ms / max(info.duration_ms, 1), counts["frames"],
                 counts["faces"])

    frames = track_faces(service.engine, sample_frames(job.video_path, fps), attributes,
                         embed=job.operation in EMBEDS, fps=fps,
                         min_face=int(service.settings.video_min_face),
                         detector=service.settings.video_detector, on_frame=seen)
    return info, sha, frames, counts


def _detection_work(service: Service, job: JobRow, progress) -> dict:
    info, sha, frames, counts = _frames(service, job, progress)
    faces = [{"Timestamp": tf.timestamp_ms, "Face": tf.face.detail.to_dict()}
             for ff in frames for tf in ff.faces]
    return {"results": faces, "frames": counts["frames"], "faces": counts["faces"],
            "video_sha256": sha, "video_metadata": info.metadata()}


def _search_work(service: Service, job: JobRow, progress) -> dict:
    from candor.service.search import face_matches

    store = store_of(service)
    coll = resolve_collection(store, job.params["CollectionId"], caller=Caller(job.org))
    threshold = float(job.params.get("FaceMatchThreshold", IDENTIFICATION_THRESHOLD))
    info, sha, frames, counts = _frames(service, job, progress)
    persons: list[dict] = []
    segment: dict[int, list] = {}
    for ff in frames:
        for tf in ff.faces:
            if tf.new_segment or tf.index not in segment:  # one search per track segment
                segment[tf.index] = face_matches(store, coll.id, tf.embedding, 10, threshold,
                                                  scoring=service.scoring)
            detail = tf.face.detail.to_dict()
            persons.append({"Timestamp": tf.timestamp_ms,
                            "Person": {"Index": tf.index, "BoundingBox": detail["BoundingBox"],
                                       "Face": detail},
                            "FaceMatches": [dict(m) for m in segment[tf.index]]})
    matches = sum(len(p["FaceMatches"]) for p in persons)
    return {"results": persons, "frames": counts["frames"], "faces": counts["faces"],
            "matches": matches, "video_sha256": sha, "video_metadata": info.metadata()}


WORK["StartFaceDetection"] = _detection_work
WORK["StartFaceSearch"] = _search_work


# -- reading results --------------------------------------------------------------------------
def _job_of_caller(service: Service, job_id: str, operation_name: str) -> JobRow:
    job = store_of(service).job(job_id)
    caller = current_caller()
    if job is None or job.operation != operation_name or job.org != caller.org:
        raise ResourceNotFound(f"The job id: {job_id} does not exist")
    return job


def _page(service: Service, job: JobRow, items: list, params: dict, scope: str):
    store = store_of(service)
    start = 0
    if params.get("NextToken"):
        start = int(store.read_token(params["NextToken"], scope))
    size = min(int(params.get("MaxResults", DEFAULT_MAX_RESULTS)), MAX_RESULTS)
    page = items[start:start + size]
    token = store.make_token(scope, start + size) if start + size < len(items) else None
    return page, token


def _envelope(job: JobRow) -> dict[str, Any]:
    out: dict[str, Any] = {"JobStatus": job.status}
    if job.status_message:
        out["StatusMessage"] = job.status_message
    elif job.status == "IN_PROGRESS":  # Rekognition has no progress field: candor says it here
        out["StatusMessage"] = (f"{job.progress:.0f}% analysed: {job.frames} frames, "
                                f"{job.faces} faces")
    if job.video_metadata:
        out["VideoMetadata"] = job.video_metadata
    return out


def _tail(job: JobRow, out: dict) -> dict:
    out["JobId"] = job.job_id
    out["Video"] = job.params.get("Video")
    if job.job_tag:
        out["JobTag"] = job.job_tag
    return out


def get_results(service: Service, params: dict, start_operation: str, member: str, scope: str,
                orders: dict[str, Callable[[dict], Any]] | None = None) -> dict:
    """A Get* response for any video job: the envelope, then one page of the stored results
    under ``member``, in the order ``SortBy`` names (``orders`` maps each non-default SortBy to
    its sort key; without it the results have one order and the token scope carries no sort)."""
    job = _job_of_caller(service, params["JobId"], start_operation)
    out = _envelope(job)
    if job.status == "SUCCEEDED":
        items = list(job.results or [])
        token_scope = f"{scope}:{job.job_id}"
        if orders is not None:
            sort_by = params.get("SortBy", "TIMESTAMP")
            if sort_by in orders:
                items.sort(key=orders[sort_by])
            token_scope += f":{sort_by}"
        page, token = _page(service, job, items, params, token_scope)
        out[member] = page
        if token:
            out["NextToken"] = token
    return _tail(job, out)


@operation("GetFaceDetection")
def get_face_detection(service: Service, params: dict) -> dict:
    return get_results(service, params, "StartFaceDetection", "Faces", "fd")


@operation("GetFaceSearch")
def get_face_search(service: Service, params: dict) -> dict:
    return get_results(service, params, "StartFaceSearch", "Persons", "fs",
                       {"INDEX": lambda p: (p["Person"]["Index"], p["Timestamp"])})
