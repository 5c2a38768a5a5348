"""The durable job runner: video jobs on a bounded worker pool beside the request handlers.

A job is a row in the store (:mod:`candor.store.jobs`) before its JobId is returned, so it
survives anything that stops the process. :meth:`JobRunner.start` (the HTTP gateway calls it
on start-up) takes up every job still IN_PROGRESS: it runs it again from the start when its
video is still readable, and fails it with a StatusMessage saying why otherwise; a job that
was interrupted :data:`MAX_ATTEMPTS` times fails instead of looping. Jobs run on
``settings.video_workers`` threads (default 1: a video job uses both cores through the
decoder and the pipeline, and the request handlers keep their own pool), write their progress
as they go, and keep their results until ``settings.job_retention_days`` after completion.

When a job finishes, every listener gets its row (the governance layer records the job in the
audit ledger; :func:`notify` POSTs Rekognition's completion message to ``--notify-url``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from candor.errors import CandorError, InvalidVideo
from candor.store.database import utcnow
from candor.store.jobs import JobRow

log = logging.getLogger("candor.jobs")

MAX_ATTEMPTS = 3
#: what a job's work function gets: the job row and a progress callback(percent, frames, faces)
Work = Callable[[Any, JobRow, Callable[..., None]], dict]
WORK: dict[str, Work] = {}


class JobStopped(Exception):
    """The runner is stopping: the job stays IN_PROGRESS and is taken up on the next start."""


def status_message(exc: BaseException) -> str:
    """A FAILED job's StatusMessage: a stable word, then what happened."""
    if isinstance(exc, InvalidVideo):
        return f"{exc.reason}: {exc.message}"
    if isinstance(exc, CandorError):
        return f"{exc.code}: {exc.message}"
    return f"InternalServerError: {type(exc).__name__}"


class JobRunner:
    """Runs the jobs of one service (see the module docstring)."""

    def __init__(self, service: Any) -> None:
        from candor.service.common import store_of

        self.service = service
        self.store = store_of(service)
        self.settings = service.settings
        self.workers = max(1, int(self.settings.video_workers))
        self.listeners: list[Callable[[JobRow], None]] = [
            lambda job: notify(job, self.settings.notify_url)]
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> JobRunner:
        """Take up the jobs a stopped process left IN_PROGRESS, and purge expired results."""
        self._stopping.clear()
        self.store.purge_jobs()
        for job in self.store.unfinished():
            if job.attempts >= MAX_ATTEMPTS:
                self._finish(job.job_id, "FAILED", status_message=(
                    f"INTERRUPTED: the job was interrupted {job.attempts} times (the server "
                    "stopped while running it) and was not started again"))
            elif not job.video_path or not os.path.isfile(job.video_path):
                self._finish(job.job_id, "FAILED", status_message=(
                    "INTERRUPTED: the server restarted while the job ran and its video is no "
                    "longer readable; start the job again"))
            else:
                log.info("resuming video job %s after a restart", job.job_id)
                self.submit(job.job_id)
        return self

    def stop(self, wait: bool = True) -> None:
        """Stop taking jobs; running ones stop at their next frame and stay IN_PROGRESS."""
        self._stopping.set()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    def submit(self, job_id: str) -> None:
        with self._lock:
            if self._pool is None:
                self._stopping.clear()
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="candor-job")
            self._futures[job_id] = self._pool.submit(self._run, job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRow | None:
        """Wait for a job this runner runs, then return its row."""
        future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout)
        return self.store.job(job_id)

    # -- one job ---------------------------------------------------------------------------
    def _run(self, job_id: str) -> None:
        job = self.store.job(job_id)
        if job is None or job.status != "IN_PROGRESS":
            return
        self.store.update_job(job_id, attempts=job.attempts + 1, progress=0.0)
        last = [0.0]

        def progress(percent: float, frames: int, faces: int) -> None:
            if self._stopping.is_set():
                raise JobStopped()
            now = time.monotonic()
            if now - last[0] >= 0.5:
                last[0] = now
                self.store.update_job(job_id, progress=round(min(percent, 99.9), 1),
                                      frames=frames, faces=faces)

        try:
            outcome = WORK[job.operation](self.service, job, progress)
        except JobStopped:
            log.info("video job %s stopped; it resumes on the next start", job_id)
            return
        except Exception as exc:  # every failure becomes the job's status, never a crash
            if not isinstance(exc, CandorError):
                log.exception("video job %s failed", job_id)
            self._finish(job_id, "FAILED", status_message=status_message(exc))
            return
        self._finish(job_id, "SUCCEEDED", progress=100.0, **outcome)

    def _finish(self, job_id: str, status: str, **fields: Any) -> None:
        now = utcnow()
        expires = now + timedelta(days=float(self.settings.job_retention_days))
        self.store.update_job(job_id, status=status, completed_at=now, expires_at=expires,
                              **fields)
        job = self.store.job(job_id)
        extra = self.service.__dict__.get("_job_listeners", [])  # candor.governance.video
        for listener in [*self.listeners, *extra]:
            try:
                listener(job)
            except Exception:
                log.exception("listener of video job %s failed", job_id)


def runner_of(service: Any) -> JobRunner:
    """The job runner of a service (one per service object, made on first use)."""
    with _runners_lock:
        runner = service.__dict__.get("_job_runner")
        if runner is None:
            runner = service.__dict__["_job_runner"] = JobRunner(service)
        return runner


_runners_lock = threading.Lock()


def completion_message(job: JobRow) -> dict:
    """Rekognition's completion message (what it publishes to the job's SNS topic)."""
    s3 = ((job.params.get("Video") or {}).get("S3Object") or {})
    message = {"JobId": job.job_id, "Status": job.status, "API": job.operation,
               "Timestamp": int((job.completed_at or utcnow()).timestamp() * 1000),
               "Video": {"S3ObjectName": s3.get("Name"), "S3Bucket": s3.get("Bucket")}}
    if job.job_tag:
        message["JobTag"] = job.job_tag
    return message


def notify(job: JobRow, url: str | None) -> None:
    """POST the completion message to ``url`` (``--notify-url``) when the job asked for
    notification (candor has no SNS: the NotificationChannel is accepted and this webhook
    stands in)."""
    if not url or not job.params.get("NotificationChannel"):
        return
    body = json.dumps(completion_message(job)).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (operator's URL)
            response.read()
    except OSError as exc:
        log.warning("could not notify %s of video job %s: %s", url, job.job_id, exc)
