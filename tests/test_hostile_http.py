"""A hostile user against a real ``candor serve``: each test is a defect found by attacking the
HTTP API (signed with botocore's SigV4Auth, sent over loopback), kept as a regression test.

Every hostile request must get a typed Rekognition-style error (never a 500, never a
traceback), and leave the stored data and the audit ledger intact: a sentinel collection with
one indexed face is checked after each attack, and ``candor audit verify`` runs at the end.
The generic fuzzing of request members lives in test_fuzz.py; this module holds what it did
not reach (object names of S3Object images and videos, the signed headers).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from test_fuzz import free_port

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CANDOR_TEST_DATA", ROOT / ".." / "shared" / "data" / "faces")).resolve()
SAMPLES = DATA / "samples" / "identities"
CANDOR = [sys.executable, "-m", "candor.cli"]
REGION = "us-east-1"
SENTINEL = "sentinel"

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"test photos not found at {DATA}")


class Server:
    """``candor serve`` with a local bucket of photos and an S3 endpoint nobody listens on."""

    def __init__(self, tmp: Path) -> None:
        self.data_dir = tmp / "data"
        self.port = free_port()
        bucket = tmp / "photos"  # a photo, and a symlink loop (the operator's folder may hold one)
        bucket.mkdir()
        shutil.copy(SAMPLES / "biden" / "biden.jpg", bucket / "biden.jpg")
        (bucket / "loop").symlink_to(bucket / "loop")
        self.err = tmp / "serve.err"
        out = tmp / "serve.out"
        self.proc = subprocess.Popen(
            [*CANDOR, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
             "--workers", "2", "--retention-interval", "0", "--log-level", "warning",
             "--bucket", f"photos={bucket}",
             "--s3-endpoint-url", f"http://127.0.0.1:{free_port()}"],
            stdout=out.open("w"), stderr=self.err.open("w"))
        for _ in range(600):
            assert self.proc.poll() is None, self.err.read_text()
            if "AWS_SECRET_ACCESS_KEY" in out.read_text():
                try:
                    if self.send("GET", "/healthz", b"", {})[0] == 200:
                        break
                except OSError:
                    pass
            time.sleep(0.2)
        else:
            raise AssertionError("candor serve did not come up:\n" + self.err.read_text())
        lines = dict(line.split("=", 1) for line in out.read_text().splitlines()
                     if line.startswith("AWS_"))
        self.creds = Credentials(lines["AWS_ACCESS_KEY_ID"], lines["AWS_SECRET_ACCESS_KEY"])

    def send(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def signed(self, body: bytes, target: str | None) -> dict:
        """Headers of a POST / signed by botocore (X-Amz-Target signed when given here)."""
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        if target is not None:
            headers["X-Amz-Target"] = f"RekognitionService.{target}"
        req = AWSRequest(method="POST", url=f"http://127.0.0.1:{self.port}/", data=body,
                         headers=headers)
        SigV4Auth(self.creds, "rekognition", REGION).add_auth(req)
        return dict(req.headers.items())

    def call(self, operation: str, params: dict) -> tuple[int, dict]:
        body = json.dumps(params).encode()
        status, _, payload = self.send("POST", "/", body, self.signed(body, operation))
        return status, json.loads(payload)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory, store_backend):
    srv = Server(tmp_path_factory.mktemp("hostile-http"))
    status, out = srv.call("CreateCollection", {"CollectionId": SENTINEL})
    assert status == 200, out
    photo = base64.b64encode((SAMPLES / "biden" / "biden.jpg").read_bytes()).decode()
    status, out = srv.call("IndexFaces", {"CollectionId": SENTINEL, "Image": {"Bytes": photo}})
    assert status == 200 and len(out["FaceRecords"]) == 1, out
    srv.face_id = out["FaceRecords"][0]["Face"]["FaceId"]
    yield srv
    srv.stop()


def refused(server: Server, operation: str, params: dict, code: str, status: int = 400) -> dict:
    """``params`` sent to ``operation`` get error ``code`` (AWS's shape), and the sentinel
    collection still holds its face."""
    got, out = server.call(operation, params)
    assert (got, out.get("__type")) == (status, code), out
    assert set(out) == {"__type", "Message"} and "Traceback" not in out["Message"], out
    sentinel_intact(server)
    return out


def sentinel_intact(server: Server) -> None:
    status, out = server.call("ListFaces", {"CollectionId": SENTINEL})
    assert status == 200, out
    assert [f["FaceId"] for f in out["Faces"]] == [server.face_id]


# -- the signature must cover the operation ---------------------------------------------------
def test_an_unsigned_target_cannot_turn_a_captured_read_into_a_delete(server):
    """Before: a request signed without X-Amz-Target (host, date and content type only) was
    accepted for any target, so a captured DescribeCollection sent again as DeleteCollection
    deleted the collection (200). Now: InvalidSignatureException, and the collection stays."""
    body = json.dumps({"CollectionId": SENTINEL}).encode()
    headers = server.signed(body, target=None)
    assert "x-amz-target" not in headers["Authorization"]
    for operation in ("DescribeCollection", "DeleteCollection"):
        status, _, payload = server.send(
            "POST", "/", body, {**headers, "X-Amz-Target": f"RekognitionService.{operation}"})
        out = json.loads(payload)
        assert (status, out["__type"]) == (403, "InvalidSignatureException"), out
        assert "X-Amz-Target" in out["Message"]
    sentinel_intact(server)
    # the same request signed as every SDK signs it is served
    status, out = server.call("DescribeCollection", {"CollectionId": SENTINEL})
    assert (status, out["FaceCount"]) == (200, 1), out


# -- S3Object names ---------------------------------------------------------------------------
#: names no file can have: a NUL, a lone surrogate (not encodable as a path), an over-long part
IMPOSSIBLE_NAMES = ["biden\x00.jpg", "\ud800", "x" * 300, "loop/biden.jpg"]


@pytest.mark.parametrize("name", IMPOSSIBLE_NAMES, ids=["nul", "surrogate", "too-long", "loop"])
def test_impossible_object_names_in_a_local_bucket(server, name):
    """Before: 500 InternalServerError (ValueError, UnicodeEncodeError, OSError or, through a
    symlink loop, RuntimeError from the path) for an image and for a video. Now:
    InvalidS3ObjectException."""
    refused(server, "DetectFaces", {"Image": {"S3Object": {"Bucket": "photos", "Name": name}}},
            "InvalidS3ObjectException")
    refused(server, "StartFaceDetection",
            {"Video": {"S3Object": {"Bucket": "photos", "Name": name}}},
            "InvalidS3ObjectException")


def test_an_object_key_botocore_cannot_encode(server):
    """Before: a lone surrogate in the key of an object fetched from the S3 endpoint raised
    UnicodeEncodeError inside botocore: 500. Now: InvalidS3ObjectException."""
    remote = {"S3Object": {"Bucket": "elsewhere", "Name": "\ud800"}}
    refused(server, "DetectFaces", {"Image": remote}, "InvalidS3ObjectException")
    refused(server, "SearchFacesByImage", {"CollectionId": SENTINEL, "Image": remote},
            "InvalidS3ObjectException")
    refused(server, "StartFaceDetection", {"Video": remote}, "InvalidS3ObjectException")
    # the local bucket still serves its photos
    status, out = server.call(
        "DetectFaces", {"Image": {"S3Object": {"Bucket": "photos", "Name": "biden.jpg"}}})
    assert status == 200 and len(out["FaceDetails"]) == 1, out


# -- images -----------------------------------------------------------------------------------
def scan_bomb(scans: int) -> bytes:
    """A 9 MP grey progressive JPEG whose last scan is repeated ``scans`` more times (about
    20 bytes each): libjpeg decodes every block once per scan."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("L", (3000, 3000), 128).save(buf, "JPEG", progressive=True, quality=50)
    data = buf.getvalue()
    assert data.endswith(b"\xff\xd9")
    last = data[data.rindex(b"\xff\xda"):-2]
    return data[:-2] + last * scans + b"\xff\xd9"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding(server):
    """Before: a 58 KB progressive JPEG repeating a scan 1,000 times was decoded (about 10 s
    of CPU; a 5 MB one, half an hour): 200. Now: InvalidImageFormatException, nothing decoded."""
    blob = base64.b64encode(scan_bomb(1000)).decode()
    before = cpu_seconds(server.proc.pid)
    out = refused(server, "DetectFaces", {"Image": {"Bytes": blob}}, "InvalidImageFormatException")
    assert "scans" in out["Message"]
    refused(server, "IndexFaces", {"CollectionId": SENTINEL, "Image": {"Bytes": blob}},
            "InvalidImageFormatException")
    spent = cpu_seconds(server.proc.pid) - before
    assert spent < 5, f"the server spent {spent:.1f} s of CPU on two 58 KB images"
    # an ordinary progressive JPEG (10 scans) is still served
    status, out = server.call("DetectFaces", {"Image": {"Bytes": base64.b64encode(
        scan_bomb(0)).decode()}})
    assert status == 200, out


def segment_floods() -> dict[str, bytes]:
    """Images of 10,001 empty segments (about 40-120 KB each): Pillow reads each with Python
    (5 MB of them, 3 to 4 s of CPU)."""
    import struct
    import zlib

    from PIL import Image as PILImage

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    jpeg, png = io.BytesIO(), io.BytesIO()
    PILImage.new("RGB", (200, 200)).save(jpeg, "JPEG")
    PILImage.new("RGB", (200, 200)).save(png, "PNG")
    jpeg, png = jpeg.getvalue(), png.getvalue()
    tables = jpeg.index(b"\xff\xdb")
    return {"jpeg-comments": jpeg[:2] + b"\xff\xfe\x00\x02" * 10_001 + jpeg[2:],
            "jpeg-fill-bytes": jpeg[:tables] + b"\xff" * 10_001 + jpeg[tables:],
            "png-chunks": png[:33] + chunk(b"abCd", b"") * 10_001 + png[33:]}


@pytest.mark.parametrize("kind", sorted(segment_floods()))
def test_images_of_thousands_of_empty_segments_are_refused(server, kind):
    """Before: decoded, each segment read by a few lines of Python (about 4 s of CPU for a
    5 MB image): 200. Now: InvalidImageFormatException before Pillow reads the header."""
    blob = base64.b64encode(segment_floods()[kind]).decode()
    out = refused(server, "DetectFaces", {"Image": {"Bytes": blob}}, "InvalidImageFormatException")
    assert "10000 markers or chunks" in out["Message"]


# -- video jobs -----------------------------------------------------------------------------
def test_a_face_search_job_on_a_video_whose_rows_ffmpeg_pads(server):
    """Before: frames of a video 970 pixels wide (FFmpeg pads its rows) were strided arrays,
    which dlib's face chips refuse: the job FAILED with "InternalServerError: TypeError".
    Now it succeeds, and finds the sentinel's face (a JPEG is a one-frame video to FFmpeg)."""
    status, out = server.call("StartFaceSearch", {
        "CollectionId": SENTINEL, "Video": {"S3Object": {"Bucket": "photos", "Name": "biden.jpg"}}})
    assert status == 200, out
    for _ in range(300):
        status, result = server.call("GetFaceSearch", {"JobId": out["JobId"]})
        assert status == 200, result
        if result["JobStatus"] != "IN_PROGRESS":
            break
        time.sleep(0.2)
    assert result["JobStatus"] == "SUCCEEDED", result
    assert result["VideoMetadata"]["FrameWidth"] == 970
    found = {m["Face"]["FaceId"] for p in result["Persons"] for m in p.get("FaceMatches", [])}
    assert found == {server.face_id}, result
    sentinel_intact(server)


# -- bodies ---------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_an_unterminated_string_of_escaped_quotes_costs_no_more_than_its_bytes(server):
    """Before: the nesting check blanked out strings with a regular expression that, on a
    string of ``\\"`` with no closing quote, restarted at every quote: quadratic, holding the
    GIL (this 90 KB body: about 40 s of CPU, the server frozen meanwhile; 256 KB: minutes).
    Now: SerializationException for a few milliseconds of CPU."""
    body = b'{"CollectionId": "' + b'\\"' * 45_000
    before = cpu_seconds(server.proc.pid)
    status, _, payload = server.send("POST", "/", body, server.signed(body, "ListCollections"))
    spent = cpu_seconds(server.proc.pid) - before
    out = json.loads(payload)
    assert (status, out["__type"]) == (400, "SerializationException"), out
    assert spent < 10, f"the server spent {spent:.1f} s of CPU on one 90 KB body"
    sentinel_intact(server)


def test_connections_that_never_send_their_bodies_block_no_one(server):
    """Before: requests still receiving their bodies counted as requests in progress, with no
    time limit, so 66 connections that sent headers and one byte of body (no key needed) made
    every other caller's request a ThrottlingException for as long as they stayed open. Now
    a request's body costs only the bytes it has sent: the others are served."""
    slow = []
    try:
        for _ in range(66):  # more than max(64, 16 x workers) requests in progress
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                         b"X-Amz-Target: RekognitionService.DetectFaces\r\n\r\n{")
            slow.append(sock)
        for _ in range(300):  # until the server has taken them in (64 at least are read)
            _, _, metrics = server.send("GET", "/metrics", b"", {})
            gauge = re.search(rb"^candor_http_in_flight ([0-9.]+)$", metrics, re.M)
            if gauge and float(gauge.group(1)) >= 64:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the server did not take the 66 requests in")
        status, out = server.call("DescribeCollection", {"CollectionId": SENTINEL})
        assert (status, out.get("FaceCount")) == (200, 1), out
    finally:
        for sock in slow:
            sock.close()
    sentinel_intact(server)


def test_the_body_budget_still_bounds_the_bytes_held():
    """What replaced "throttled before its body is read": bodies are read under a budget of
    bytes; a request whose bytes would pass it is throttled and holds nothing afterwards."""
    import asyncio

    from starlette.requests import Request

    from candor.api.transport import BodyBudget, read_body
    from candor.errors import InvalidParameter, Throttling

    budget = BodyBudget(10)

    async def send(*chunks: bytes | None) -> bytes:
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                    if c is not None else {"type": "http.disconnect"} for i, c in enumerate(chunks)]

        async def receive():
            return messages.pop(0)

        request = Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)
        return await read_body(request, 100, InvalidParameter, budget)

    assert asyncio.run(send(b"12345", b"678")) == b"12345678" and budget.used == 8
    with pytest.raises(Throttling):
        asyncio.run(send(b"12", b"345"))
    assert budget.used == 8  # the refused request released what it had taken
    budget.release(8)
    assert asyncio.run(send(b"1234567890")) == b"1234567890"
    budget.release(10)
    with pytest.raises(InvalidParameter, match="disconnected"):  # a client that goes away
        asyncio.run(send(b"123", None))
    assert budget.used == 0


# -- afterwards -------------------------------------------------------------------------------
def test_zz_the_ledger_verifies_afterwards(server):
    """Last in the module: no attack left the audit chain broken."""
    sentinel_intact(server)
    server.stop()
    done = subprocess.run([*CANDOR, "audit", "verify", "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in server.err.read_text()


