"""The durable job runner: video jobs on a bounded worker pool beside the request handlers.

A job is a row in the store (:mod:`candor.store.jobs`) before its JobId is returned, so it
survives anything that stops the process. Jobs run on ``settings.video_workers`` threads
(default 1: a video job uses both cores through the decoder and the pipeline, and the request
handlers keep their own pool), write their progress as they go, and keep their results until
``settings.job_retention_days`` after completion.

Several nodes may share one database (docs/video.md, "Jobs across nodes"). Every job in
progress has an owner, the node running it, and a lease of ``settings.job_lease_seconds``
that the node's heartbeat renews every third of a lease while it holds the job (queued or
running; a running job's progress writes renew it too). The node that received the Start call
owns the job from the moment it is written.
Another node takes a job over only when its lease has expired, by one conditional UPDATE
(:meth:`~candor.store.jobs.JobsPart.claim_job`): a live node never loses its job, and of two
nodes racing for an orphan one wins. :meth:`JobRunner.start` (the HTTP gateway calls it on
start-up) takes back at once the jobs still owned by this node's id when it holds the data
dir's node lock (:mod:`candor.service.node`: the previous process of this node is dead), and
from then on its heartbeat takes over expired jobs while it has a free worker. A job taken over
runs again from the start when its video can be read (or fetched again) here, and fails with
a StatusMessage saying why otherwise; a job started :data:`MAX_ATTEMPTS` times fails instead
of looping. Writes made while running are conditional on still owning the job, so a node that
lost one (stalled longer than a lease) stops it at its next frame and writes nothing.

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
from pathlib import Path
from typing import IO, Any

from candor.errors import CandorError, InvalidVideo
from candor.service.node import claim_node, persistent_id, transient_id
from candor.store.database import utcnow
from candor.store.jobs import JobRow

log = logging.getLogger("candor.jobs")

MAX_ATTEMPTS = 3
#: what a job's work function gets: the job row and a progress callback(percent, frames, faces)
Work = Callable[[Any, JobRow, Callable[..., None]], dict]
WORK: dict[str, Work] = {}
#: finds a taken-over job's video on this node again (registered by candor.service.video):
#: (service, job) -> a readable local path; raises a CandorError when it cannot
LOCATE: list[Callable[[Any, JobRow], str]] = []


class JobStopped(Exception):
    """The runner is stopping: the job stays IN_PROGRESS and another node (or this one,
    restarted) takes it up."""


class JobLost(JobStopped):
    """Another node took the job over (this one did not renew its lease in time)."""


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
        self.lease = float(self.settings.job_lease_seconds)
        #: the owner name of this runner's jobs (a data dir's node id once :meth:`start` holds
        #: its node lock)
        self.node_id = transient_id()
        self.listeners: list[Callable[[JobRow], None]] = [
            lambda job: notify(job, self.settings.notify_url)]
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future] = {}
        self._held: set[str] = set()  # jobs this runner owns, queued or running
        self._lost: set[str] = set()  # jobs another node took over while this one held them
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._heart: threading.Thread | None = None
        self._takes_over = False  # only a serving node takes other nodes' jobs
        self._node_lock: IO | None = None

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> JobRunner:
        """Become this data dir's node if no live process is, take back this node's orphaned
        jobs and any expired ones, purge expired results, and keep a heartbeat."""
        self._stopping.clear()
        if self._node_lock is None:
            self._node_lock = claim_node(self.service.data_dir)
            if self._node_lock is not None:
                self.node_id = persistent_id(self.service.data_dir)
        log.info("video jobs run as node %s (lease %.0f s)", self.node_id, self.lease)
        self.store.purge_jobs()
        self._drop_finished_copies()
        self._takes_over = True
        self.take_over(own=self._node_lock is not None)
        self._ensure_heartbeat()
        return self

    def stop(self, wait: bool = True) -> None:
        """Stop taking jobs; running ones stop at their next frame and stay IN_PROGRESS, their
        leases ended so that another node takes them over at once."""
        self._stopping.set()
        self._takes_over = False
        self._wake.set()
        with self._lock:
            heart = self._heart
        if heart is not None:  # first the heartbeat, so that it takes over nothing more
            heart.join(timeout=30)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)
        with self._lock:
            held, self._held = set(self._held), set()
        try:
            self.store.release_jobs(held, self.node_id)
        except Exception:  # the database is gone: the leases simply run out
            log.warning("could not release the leases of video jobs %s", sorted(held))
        if self._node_lock is not None:
            self._node_lock.close()
            self._node_lock = None

    def submit(self, job_id: str) -> None:
        """Run a job this node owns (it wrote it, or claimed it)."""
        with self._lock:
            if self._pool is None:
                self._stopping.clear()
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="candor-job")
            self._held.add(job_id)
            self._futures[job_id] = self._pool.submit(self._run, job_id)
        self._ensure_heartbeat()

    def wait(self, job_id: str, timeout: float | None = None) -> JobRow | None:
        """Wait for a job this runner runs, then return its row."""
        future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout)
        return self.store.job(job_id)

    # -- ownership -------------------------------------------------------------------------
    def take_over(self, own: bool = False) -> list[str]:
        """Claim jobs whose lease expired while this runner has a free worker (and, with
        ``own``, every job still owned by this node id); returns the JobIds it took."""
        taken = []
        for job in self.store.claimable_jobs(owner=self.node_id if own else None):
            mine = own and job.owner == self.node_id
            with self._lock:
                if job.job_id in self._held or (not mine and len(self._held) >= self.workers):
                    continue
            if self._stopping.is_set() or not self.store.claim_job(
                    job.job_id, self.node_id, self.lease, own=mine):
                continue
            taken.append(job.job_id)
            log.info("taking over video job %s (owner was %s)", job.job_id, job.owner)
            self._adopt(self.store.job(job.job_id) or job, previous=job.owner)
        return taken

    def _adopt(self, job: JobRow, previous: str | None) -> None:
        """Run a job just claimed from a stopped node, or fail it saying why it cannot run."""
        who = f"node {previous}" if previous else "the server"
        if job.attempts >= MAX_ATTEMPTS:
            self._finish(job.job_id, "FAILED", status_message=(
                f"INTERRUPTED: the job was interrupted {job.attempts} times ({who} stopped while "
                "running it) and was not started again"))
            return
        if not job.video_path or not os.path.isfile(job.video_path):
            try:
                if not LOCATE:
                    raise FileNotFoundError(job.video_path)
                path = str(LOCATE[0](self.service, job))
                self.store.update_job(job.job_id, owner=self.node_id, video_path=path)
            except Exception as exc:
                log.info("video of job %s not readable here: %s", job.job_id, exc)
                self._finish(job.job_id, "FAILED", status_message=(
                    f"INTERRUPTED: {who} stopped while running the job and its video is not "
                    f"readable on node {self.node_id}; start the job again"))
                return
        self.submit(job.job_id)

    def _ensure_heartbeat(self) -> None:
        with self._lock:
            if self._heart is None:
                self._heart = threading.Thread(target=self._beat, name="candor-job-lease",
                                               daemon=True)
                self._heart.start()

    def _beat(self) -> None:
        """Renew this node's leases every third of a lease; on a serving node, take over
        expired jobs when a worker is free. Ends when the runner stops, or when it holds no
        job and does not take over others' (a CLI run)."""
        me = threading.current_thread()
        while True:
            with self._lock:  # decided under the lock, so that a submit starts a new beat
                if self._stopping.is_set() or not (self._held or self._takes_over):
                    if self._heart is me:
                        self._heart = None
                    return
                held = set(self._held)
            try:
                lost = self.store.renew_leases(held, self.node_id, self.lease)
                with self._lock:
                    self._lost |= {j for j in lost if j in self._held}
                if self._takes_over:
                    self.take_over()
            except Exception as exc:  # a database outage: try again at the next beat
                log.warning("video job heartbeat failed: %s", exc)
            self._wake.wait(max(self.lease / 3.0, 0.2))
            self._wake.clear()

    # -- one job ---------------------------------------------------------------------------
    def _run(self, job_id: str) -> None:
        try:
            self._run_owned(job_id)
        finally:
            with self._lock:
                self._held.discard(job_id)
                self._lost.discard(job_id)
            self._wake.set()  # a worker is free: look for orphaned jobs now

    def _run_owned(self, job_id: str) -> None:
        job = self.store.job(job_id)
        if job is None or job.status != "IN_PROGRESS" or job.owner != self.node_id:
            return
        if not self.store.update_job(job_id, owner=self.node_id, attempts=job.attempts + 1,
                                     progress=0.0):
            return
        last = [0.0]

        def progress(percent: float, frames: int, faces: int) -> None:
            if job_id in self._lost:
                raise JobLost()
            if self._stopping.is_set():
                raise JobStopped()
            now = time.monotonic()
            if now - last[0] >= 0.5:
                last[0] = now
                if not self.store.update_job(job_id, owner=self.node_id, lease=self.lease,
                                             frames=frames, faces=faces,
                                             progress=round(min(percent, 99.9), 1)):
                    raise JobLost()

        try:
            outcome = WORK[job.operation](self.service, job, progress)
        except JobLost:
            log.warning("video job %s was taken over by another node; stopped here", job_id)
            return
        except JobStopped:  # the lease ends now, so that another node need not wait for it
            log.info("video job %s stopped; another node or the next start takes it up", job_id)
            try:
                self.store.release_jobs({job_id}, self.node_id)
            except Exception:  # the database is gone: the lease simply runs out
                log.warning("could not release the lease of video job %s", job_id)
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
        if not self.store.update_job(job_id, owner=self.node_id, status=status, completed_at=now,
                                     expires_at=expires, lease_expires=None, **fields):
            log.warning("video job %s is no longer this node's; its outcome is not written",
                        job_id)
            return
        job = self.store.job(job_id)
        if job is not None:
            self._drop_copy(job.video_path)
        extra = self.service.__dict__.get("_job_listeners", [])  # candor.governance.video
        for listener in [*self.listeners, *extra]:
            try:
                listener(job)
            except Exception:
                log.exception("listener of video job %s failed", job_id)

    def _drop_copy(self, video_path: str | None) -> None:
        """A video downloaded from an S3 endpoint into ``<data dir>/videos/`` (service.video)
        is needed only while its job runs: a finished job's copy is deleted (footage of
        people is not kept for nothing; a node taking a job over downloads it again)."""
        folder = (Path(self.service.data_dir) / "videos").resolve()
        if video_path and Path(video_path).resolve().parent == folder:
            Path(video_path).unlink(missing_ok=True)

    def _drop_finished_copies(self) -> None:
        """At start: copies a stopped node left of jobs that are no longer running (or were
        purged; a copy without a job younger than an hour may be a Start call's in flight)."""
        folder = Path(self.service.data_dir) / "videos"
        if folder.is_dir():
            for path in folder.iterdir():
                job = self.store.job(path.name)
                if job is not None and job.status != "IN_PROGRESS" or job is None and \
                        time.time() - path.stat().st_mtime > 3600:
                    path.unlink(missing_ok=True)


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
