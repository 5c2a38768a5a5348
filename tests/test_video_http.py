"""Stored video over HTTP: a real ``candor serve --bucket`` driven by boto3; a job survives
``kill -9`` of the server; the completion message reaches ``--notify-url``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from test_http import CANDOR, DATA, REGION, free_port, key_lines

VIDEOS = DATA / "video"
pytestmark = pytest.mark.skipif(not VIDEOS.is_dir(), reason="sample videos not found")
CHANNEL = {"SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:candor-video",
           "RoleArn": "arn:aws:iam::123456789012:role/candor"}


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class Serve:
    def __init__(self, data_dir: Path, port: int, hook_url: str, log: Path) -> None:
        self.proc = subprocess.Popen(
            [*CANDOR, "serve", "--port", str(port), "--data-dir", str(data_dir), "--bucket",
             f"videos={VIDEOS}", "--bucket", f"photos={DATA / 'samples'}", "--notify-url",
             hook_url], stdout=(log.parent / (log.name + ".out")).open("a"),
            stderr=log.open("a"))
        self.out = log.parent / (log.name + ".out")
        deadline = time.time() + 180
        import http.client

        while time.time() < deadline:
            assert self.proc.poll() is None, log.read_text()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("candor serve did not come up:\n" + log.read_text())


def client(port: int, key: tuple[str, str]):
    return boto3.client("rekognition", endpoint_url=f"http://127.0.0.1:{port}",
                        region_name=REGION, aws_access_key_id=key[0],
                        aws_secret_access_key=key[1], config=Config(retries={"max_attempts": 1}))


def wait_done(rek, job_id: str, get: str = "get_face_detection", timeout: float = 900) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        resp = getattr(rek, get)(JobId=job_id)
        if resp["JobStatus"] != "IN_PROGRESS":
            return resp
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish")


def test_video_jobs_over_http_survive_kill_9_and_notify(tmp_path):
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hook.server_address[1]}/done"
    port = free_port()
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    first = Serve(data_dir, port, hook_url, log)
    try:
        key = key_lines(first.out.read_text())
        rek = client(port, key)
        # images from a local bucket too
        photo = sorted((DATA / "samples" / "identities" / "obama").iterdir())[0]
        faces = rek.detect_faces(Image={"S3Object": {
            "Bucket": "photos", "Name": f"identities/obama/{photo.name}"}})
        assert len(faces["FaceDetails"]) >= 1
        job = rek.start_face_detection(
            Video={"S3Object": {"Bucket": "videos", "Name": "short_hamilton_clip.mp4"}},
            JobTag="durable", NotificationChannel=CHANNEL, ClientRequestToken="kill-9")["JobId"]
        assert rek.get_face_detection(JobId=job)["JobStatus"] == "IN_PROGRESS"
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(30)
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
    second = Serve(data_dir, port, hook_url, log)
    try:
        rek = client(port, key)
        done = wait_done(rek, job)
        assert done["JobStatus"] == "SUCCEEDED", done.get("StatusMessage")
        assert done["JobTag"] == "durable" and done["Faces"]
        assert all(set(f) == {"Timestamp", "Face"} for f in done["Faces"])
        # the same token gives the same job, after the restart too
        again = rek.start_face_detection(
            Video={"S3Object": {"Bucket": "videos", "Name": "short_hamilton_clip.mp4"}},
            JobTag="durable", NotificationChannel=CHANNEL, ClientRequestToken="kill-9")
        assert again["JobId"] == job
        deadline = time.time() + 30
        while not Hook.received and time.time() < deadline:
            time.sleep(0.2)
        message = Hook.received[-1]
        assert message["JobId"] == job and message["Status"] == "SUCCEEDED"
        assert message["API"] == "StartFaceDetection" and message["JobTag"] == "durable"
        assert message["Video"] == {"S3ObjectName": "short_hamilton_clip.mp4",
                                    "S3Bucket": "videos"}
        # a bad object is refused at once; a job of another key's organisation is not found
        with pytest.raises(rek.exceptions.InvalidS3ObjectException):
            rek.start_face_detection(Video={"S3Object": {"Bucket": "videos", "Name": "x.mp4"}})
        created = subprocess.run([*CANDOR, "keys", "create", "--org", "other", "--data-dir",
                                  str(data_dir)], capture_output=True, text=True, timeout=120)
        other = client(port, key_lines(created.stdout))
        with pytest.raises(other.exceptions.ResourceNotFoundException):
            other.get_face_detection(JobId=job)
    finally:
        second.proc.terminate()
        try:
            second.proc.wait(60)
        except subprocess.TimeoutExpired:
            second.proc.kill()
        hook.shutdown()
