"""Stored-video jobs on two ``candor serve`` nodes sharing one PostgreSQL.

(a) Node A runs a face-detection job while node B starts: B does not touch it (the job keeps
A as its owner and is run once), A finishes it, and GetFaceDetection through B returns A's
result. (b) A is killed with ``kill -9`` in the middle of a job: once A's lease has expired, B
takes the job over and completes it; a second job of A's, whose video B cannot read, fails
with a StatusMessage saying so. No job vanishes or stays IN_PROGRESS. (c) A node stopped
cleanly ends its lease at once, and restarted on its data dir it runs the job to the end.

Leases are short here (``CANDOR_JOB_LEASE_SECONDS``) so that the test does not wait long, and
frames are sampled densely (``CANDOR_VIDEO_FPS``) so that a job outlasts a node's start-up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from serve_helper import CANDOR, DATA, free_port

VIDEOS = DATA / "video"
CLIP = "short_hamilton_clip.mp4"
#: test (a) needs a job that outlasts a second node's start-up and a lease: every frame of the
#: 1080p sample through HOG (YuNet, the video default where installed, can finish the clip first)
LONG_JOB = {"video": "street_1080p.mp4", "CANDOR_VIDEO_DETECTOR": "hog"}
LEASE = 10.0
pytestmark = pytest.mark.skipif(not (VIDEOS / CLIP).is_file(), reason="sample video not found")


class Node:
    """One ``candor serve --database URL`` process with the sample videos as bucket ``videos``."""

    def __init__(self, data: Path, url: str, log_dir: Path, *args: str,
                 lease: float = LEASE, detector: str = "auto") -> None:
        self.data, port = data, free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log = log_dir / f"node-{port}.err"
        env = {**os.environ, "CANDOR_JOB_LEASE_SECONDS": str(lease), "CANDOR_VIDEO_FPS": "30",
               "CANDOR_VIDEO_DETECTOR": detector}
        self.proc = subprocess.Popen(
            [*CANDOR, "serve", "--port", str(port), "--data-dir", str(data), "--workers", "2",
             "--database", url, "--bucket", f"videos={VIDEOS}", *args], env=env,
            stdout=(log_dir / f"node-{port}.out").open("w"), stderr=self.log.open("w"))

    def wait_up(self) -> Node:
        for _ in range(900):
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(self.endpoint + "/healthz", timeout=5):
                    return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("candor serve did not come up:\n" + self.log.read_text())

    @property
    def node_id(self) -> str:
        return (self.data / "node-id").read_text().strip()

    def client(self, key_id: str, secret: str):
        import boto3
        from botocore.config import Config

        return boto3.client("rekognition", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key_id, aws_secret_access_key=secret,
                            config=Config(retries={"max_attempts": 1}, connect_timeout=30,
                                          read_timeout=120))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait_for(predicate, timeout: float = 900, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def all_faces(client, job_id: str) -> dict:
    out, token = None, None
    while True:
        page = client.get_face_detection(JobId=job_id, **({"NextToken": token} if token else {}))
        if out is None:
            out = {k: v for k, v in page.items() if k not in ("NextToken", "ResponseMetadata")}
        else:
            out["Faces"] += page["Faces"]
        token = page.get("NextToken")
        if not token:
            return out


def test_a_node_starting_leaves_a_live_nodes_job_alone(tmp_path, pg_url):
    from candor.api.keys import KeyStore
    from candor.store import Store

    a = Node(tmp_path / "a", pg_url, tmp_path, detector=LONG_JOB["CANDOR_VIDEO_DETECTOR"]).wait_up()
    b = None
    try:
        key, secret = KeyStore.open(tmp_path / "a", pg_url).create("acme", "general")
        ca = a.client(key.access_key_id, secret)
        job_id = ca.start_face_detection(Video={"S3Object": {"Bucket": "videos",
                                                             "Name": LONG_JOB["video"]}})["JobId"]
        store = Store(tmp_path / "observer", url=pg_url)
        wait_for(lambda: store.job(job_id).frames > 0)  # A is running it
        b = Node(tmp_path / "b", pg_url, tmp_path).wait_up()  # B starts: its start-up sweep ran
        time.sleep(1.2 * LEASE)  # B's heartbeat (every third of a lease) has looked 3 times
        during = store.job(job_id)
        assert during.status == "IN_PROGRESS", "the job ended before B was up: nothing tested"
        assert during.owner == a.node_id and during.attempts == 1
        assert during.lease_expires > during.created_at
        cb = b.client(key.access_key_id, secret)
        done = wait_for(lambda: (r := cb.get_face_detection(JobId=job_id))["JobStatus"]
                        != "IN_PROGRESS" and r)
        assert done["JobStatus"] == "SUCCEEDED", done.get("StatusMessage")
        final = store.job(job_id)
        assert final.owner == a.node_id and final.attempts == 1  # run once, by A
        through_b, through_a = all_faces(cb, job_id), all_faces(ca, job_id)
        assert through_b["Faces"] and through_b == through_a
        assert "taking over" not in b.log.read_text()
        store.db.engine.dispose()
    finally:
        for node in (a, b):
            if node is not None:
                node.stop()


def test_a_killed_nodes_jobs_are_taken_over_after_its_lease(tmp_path, pg_url):
    from candor.api.keys import KeyStore
    from candor.store import Store

    own_bucket = tmp_path / "only-on-a"
    own_bucket.mkdir()
    shutil.copy(VIDEOS / CLIP, own_bucket / "copy.mp4")
    a = Node(tmp_path / "a", pg_url, tmp_path, "--bucket", f"mine={own_bucket}").wait_up()
    b = Node(tmp_path / "b", pg_url, tmp_path).wait_up()
    try:
        key, secret = KeyStore.open(tmp_path / "a", pg_url).create("acme", "general")
        ca, cb = a.client(key.access_key_id, secret), b.client(key.access_key_id, secret)
        running = ca.start_face_detection(Video={"S3Object": {"Bucket": "videos",
                                                              "Name": CLIP}})["JobId"]
        queued = ca.start_face_detection(Video={"S3Object": {"Bucket": "mine",
                                                             "Name": "copy.mp4"}})["JobId"]
        store = Store(tmp_path / "observer", url=pg_url)
        wait_for(lambda: store.job(running).frames > 0)
        a_id = a.node_id
        assert {store.job(j).owner for j in (running, queued)} == {a_id}
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(timeout=30)
        (own_bucket / "copy.mp4").unlink()  # the second job's video is gone with A

        done = wait_for(lambda: (r := cb.get_face_detection(JobId=running))["JobStatus"]
                        != "IN_PROGRESS" and r)
        assert done["JobStatus"] == "SUCCEEDED", done.get("StatusMessage")
        assert done["Faces"] and done["VideoMetadata"]["FrameWidth"] == 640
        row = store.job(running)
        assert row.owner == b.node_id and row.attempts == 2  # A's attempt, then B's
        failed = wait_for(lambda: (r := cb.get_face_detection(JobId=queued))["JobStatus"]
                          != "IN_PROGRESS" and r)
        assert failed["JobStatus"] == "FAILED"
        assert failed["StatusMessage"].startswith("INTERRUPTED: node " + a_id)
        assert "not readable on node " + b.node_id in failed["StatusMessage"]
        assert store.claimable_jobs() == []  # nothing left IN_PROGRESS
        store.db.engine.dispose()
    finally:
        for node in (a, b):
            node.stop()


def test_a_node_stopped_cleanly_ends_its_lease_and_restarted_finishes_the_job(tmp_path, pg_url):
    from candor.api.keys import KeyStore
    from candor.store import Store

    a = Node(tmp_path / "a", pg_url, tmp_path, lease=3600).wait_up()  # a lease that never ends
    try:
        key, secret = KeyStore.open(tmp_path / "a", pg_url).create("acme", "general")
        job_id = a.client(key.access_key_id, secret).start_face_detection(
            Video={"S3Object": {"Bucket": "videos", "Name": CLIP}})["JobId"]
        store = Store(tmp_path / "observer", url=pg_url)
        wait_for(lambda: store.job(job_id).frames > 0)
        node_id = a.node_id
        a.stop()  # SIGTERM: the running job stops at its next frame and its lease ends
        assert a.proc.returncode is not None
        row = store.job(job_id)
        assert row.status == "IN_PROGRESS" and row.owner == node_id
        assert [j.job_id for j in store.claimable_jobs()] == [job_id]  # free for any node now
        a = Node(tmp_path / "a", pg_url, tmp_path, lease=3600).wait_up()
        done = wait_for(lambda: (r := a.client(key.access_key_id, secret).get_face_detection(
            JobId=job_id))["JobStatus"] != "IN_PROGRESS" and r)
        assert done["JobStatus"] == "SUCCEEDED", done.get("StatusMessage")
        row = store.job(job_id)
        assert row.owner == node_id and row.attempts == 2 and a.node_id == node_id
        store.db.engine.dispose()
    finally:
        a.stop()
