"""Hostile input against a real ``candor serve``: no request, however malformed, gets a 5xx.

Requests are generated (seeded, so every run sends the same ones) from botocore's model of
Rekognition for each operation candor implements: a valid-looking request, then mutations of
it (members missing, wrong types, huge and hostile strings, extreme numbers, nulls, bad base64,
deep nesting, bodies that are not JSON objects) and a few hostile images (truncated JPEG, PNG
bomb, random bytes, 1x1). Each is signed with botocore's SigV4Auth and sent over loopback.
Afterwards the server must still be healthy (/healthz, a real DetectFaces) and its audit
ledger must verify. Most requests fail validation fast; image cases are kept few so the test
runs in CI on two cores.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import random
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.loaders import Loader
from botocore.model import ServiceModel, Shape
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CANDOR_TEST_DATA", ROOT / ".." / "shared" / "data" / "faces")).resolve()
SAMPLES = DATA / "samples"
CANDOR = [sys.executable, "-m", "candor.cli"]
REGION = "us-east-1"
SEED = 20261130
#: how many generated requests each operation gets (18 operations: over 2,000 in all)
PER_OPERATION = 115
COLLECTION = "fuzz"

OPERATIONS = sorted([
    "DetectFaces", "CompareFaces", "CreateCollection", "DeleteCollection", "ListCollections",
    "DescribeCollection", "IndexFaces", "ListFaces", "DeleteFaces", "SearchFaces",
    "SearchFacesByImage", "CreateUser", "DeleteUser", "ListUsers", "AssociateFaces",
    "DisassociateFaces", "SearchUsers", "SearchUsersByImage"])

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(),
                                reason=f"test photos not found at {DATA} (set CANDOR_TEST_DATA)")

MODEL = ServiceModel(Loader().load_service_model("rekognition", "service-2"), "rekognition")

HOSTILE_STRINGS = [
    "", " ", "\x00", "a\x00b", "../../etc/passwd", "' OR 1=1 --", "%s%s%n", "\u202e\u0000",
    "\ud800", "é" * 300, "🙂" * 50, "A" * 100_000, "fuzz" * 64, "-", ".", "fuzz",
    "arn:aws:rekognition:us-east-1:1:collection/fuzz", "{\"json\": 1}", "\\", "null",
]
EXTREME_NUMBERS: list[Any] = [
    0, -1, 1, 2**31, 2**63, -(2**63) - 1, 10**400, -(10**400), 1e308, -1e308, 5e-324, -0.0,
    0.5, 100.0000001, 4096, 4097, True, False, 1.5,
]
#: JSON texts json.dumps will not write: spliced into bodies by hand
RAW_NUMBERS = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1" * 5000, "0x10", "01",
               "1.e5", "-"]


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    PILImage.new(mode, (width, height)).save(buf, "PNG", optimize=False)
    return buf.getvalue()


def _jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (width, height), (128, 100, 90)).save(buf, "JPEG", quality=50)
    return buf.getvalue()


def hostile_images(rng: random.Random) -> list[bytes]:
    """Few but nasty: each is decoded (or refused) by the server."""
    face = (SAMPLES / "identities" / "biden" / "biden.jpg").read_bytes()
    return [
        face[: len(face) // 2],               # truncated JPEG
        _png(7000, 7000, "1"),                # PNG bomb: 49 MP declared in a few KB
        _jpeg(7000, 7000),                    # huge JPEG: decoded reduced
        bytes(rng.getrandbits(8) for _ in range(4096)),  # random bytes
        _png(1, 1),                           # 1x1
        b"\xff\xd8\xff" + bytes(64),          # JPEG magic, nothing after
        b"\x89PNG\r\n\x1a\n" + bytes(64),     # PNG magic, nothing after
        b"GIF89a" + bytes(32),                # a format Rekognition refuses
    ]


class Generator:
    """Requests for one operation from its botocore input shape, valid and mutated."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def valid(self, shape: Shape, depth: int = 0) -> Any:
        """A value that satisfies ``shape`` (images: one byte, so decoding fails fast)."""
        kind, meta = shape.type_name, shape.metadata
        if kind == "structure":
            out = {}
            for name, member in shape.members.items():
                if name in shape.required_members or self.rng.random() < 0.5:
                    if name == "S3Object" and "Bytes" in out:
                        continue  # one image source at a time
                    out[name] = self.valid(member, depth + 1)
            return out
        if kind == "list":
            n = max(meta.get("min", 0), min(meta.get("max", 3), self.rng.randint(0, 3)))
            return [self.valid(shape.member, depth + 1) for _ in range(n)]
        if kind == "map":
            return {"k": self.valid(shape.value, depth + 1)}
        if kind == "string":
            if "enum" in meta:
                return self.rng.choice(meta["enum"])
            if shape.name == "CollectionId":
                return COLLECTION
            if "FaceId" in shape.name:
                return "11111111-2222-3333-4444-555555555555"
            return "fuzz-" + str(self.rng.randint(0, 9))
        if kind in ("integer", "long"):
            return self.rng.randint(meta.get("min", 0), min(meta.get("max", 100), 100))
        if kind in ("float", "double"):
            return round(self.rng.uniform(meta.get("min", 0), meta.get("max", 100)), 3)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "blob":
            return base64.b64encode(b"x").decode()
        return None

    def hostile(self, shape: Shape) -> Any:
        """A value of the wrong kind, or of the right kind past every limit."""
        r = self.rng.random()
        if r < 0.25:
            return self.rng.choice([None, [], {}, True, 1.5, "str", [1, "a"], {"a": [{}]}])
        kind = shape.type_name
        if kind == "string":
            return self.rng.choice(HOSTILE_STRINGS)
        if kind in ("integer", "long", "float", "double"):
            return self.rng.choice(EXTREME_NUMBERS)
        if kind == "blob":
            return self.rng.choice(["not base64!", "====", "eA", "", "\u00ff\u00fe",
                                    "A" * 1001, 12, base64.b64encode(b"\x00" * 100).decode()])
        if kind == "list":
            return self.rng.choice([[None] * 5, ["x"] * 5000, [[[]]], "not a list"])
        if kind == "structure":
            return self.rng.choice([{"Bytes": None}, {"Unknown": 1}, "struct", [{}]])
        return self.rng.choice(HOSTILE_STRINGS)

    def mutate(self, shape: Shape, request: dict) -> dict:
        """``request`` with one to three members removed, retyped or pushed past limits."""
        out = json.loads(json.dumps(request))
        for _ in range(self.rng.randint(1, 3)):
            target, target_shape = out, shape
            # walk down into a nested structure now and then (Image.Bytes, S3Object.Bucket)
            while True:
                names = list(target_shape.members)
                name = self.rng.choice(names)
                member = target_shape.members[name]
                if (member.type_name == "structure" and isinstance(target.get(name), dict)
                        and self.rng.random() < 0.5):
                    target, target_shape = target[name], member
                    continue
                break
            action = self.rng.random()
            if action < 0.2:
                target.pop(name, None)
            elif action < 0.25:
                target["Unexpected" + name] = self.hostile(member)
            else:
                target[name] = self.hostile(member)
        return out


def request_bodies(rng: random.Random) -> list[tuple[str, bytes]]:
    """(operation, body) pairs: generated from the model, plus raw bodies JSON cannot say."""
    gen = Generator(rng)
    out: list[tuple[str, bytes]] = []
    for name in OPERATIONS:
        shape = MODEL.operation_model(name).input_shape
        for i in range(PER_OPERATION):
            request = gen.valid(shape)
            if i % 10:  # one in ten stays valid-looking (so handlers run on it)
                request = gen.mutate(shape, request)
            out.append((name, json.dumps(request).encode()))
        number_member = next((m for m, s in shape.members.items()
                              if s.type_name in ("integer", "float")), None)
        for raw in RAW_NUMBERS if number_member else []:
            out.append((name, f'{{"CollectionId": "{COLLECTION}", "{number_member}": {raw}}}'
                        .encode()))
        out += [
            (name, b"[" * 100_000),
            (name, b'{"CollectionId": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
            (name, b'{"a": ' * 70 + b"1" + b"}" * 70),
            (name, b"not json"), (name, b"[]"), (name, b'"string"'), (name, b"\xff\xfe"),
            (name, b'{"CollectionId": "' + b"\\u0000" * 1000 + b'"}'),
            (name, b'{"CollectionId": "fuzz", "CollectionId": 1}'),
        ]
    for image in hostile_images(rng):
        blob = base64.b64encode(image).decode()
        out.append(("DetectFaces", json.dumps({"Image": {"Bytes": blob}}).encode()))
        out.append(("IndexFaces", json.dumps({"CollectionId": COLLECTION,
                                              "Image": {"Bytes": blob}}).encode()))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``candor serve`` in a subprocess, with the admin key it prints on first start."""

    def __init__(self, tmp: Path) -> None:
        self.data_dir = tmp / "data"
        self.port = free_port()
        self.out, self.err = tmp / "serve.out", tmp / "serve.err"
        self.proc = subprocess.Popen(
            [*CANDOR, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
             "--workers", "2", "--policy", "open", "--retention-interval", "0",
             "--log-level", "warning"],
            stdout=self.out.open("w"), stderr=self.err.open("w"))
        for _ in range(400):
            assert self.proc.poll() is None, self.err.read_text()
            try:
                if self.send("GET", "/")[0] and self.send("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise AssertionError("candor serve did not come up:\n" + self.err.read_text())
        lines = dict(line.split("=", 1) for line in self.out.read_text().splitlines()
                     if line.startswith("AWS_"))
        self.creds = Credentials(lines["AWS_ACCESS_KEY_ID"], lines["AWS_SECRET_ACCESS_KEY"])

    def send(self, method: str, path: str, body: bytes = b"", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def call(self, operation: str, body: bytes):
        """One request signed by botocore's SigV4Auth, as an SDK would send it."""
        req = AWSRequest(method="POST", url=f"http://127.0.0.1:{self.port}/", data=body,
                         headers={"X-Amz-Target": f"RekognitionService.{operation}",
                                  "Content-Type": "application/x-amz-json-1.1"})
        SigV4Auth(self.creds, "rekognition", REGION).add_auth(req)
        return self.send("POST", "/", body, dict(req.headers.items()))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory, store_backend):
    srv = Server(tmp_path_factory.mktemp("fuzz"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fuzzed(server):
    """Every generated request sent once (four at a time): (operation, body, status, payload)."""
    status, _, body = server.call("CreateCollection", json.dumps({"CollectionId": COLLECTION})
                                  .encode())
    assert status == 200, body
    bodies = request_bodies(random.Random(SEED))
    assert len(bodies) >= 2000

    def send(item):
        operation, body = item
        status, _, payload = server.call(operation, body)
        return operation, body, status, payload

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(send, bodies))


def test_generated_requests_never_get_a_5xx(fuzzed):
    failures, codes = [], {}
    for operation, body, status, payload in fuzzed:
        if status >= 500:
            failures.append((operation, body[:300], status, payload[:300]))
            continue
        if status >= 400:  # AWS's error shape, never a page or a traceback
            error = json.loads(payload)
            assert set(error) == {"__type", "Message"}, payload
            codes[error["__type"]] = codes.get(error["__type"], 0) + 1
    assert not failures, f"{len(failures)} responses >= 500, e.g. {failures[:5]}"
    # the fuzz reached past validation: typed errors of several kinds, not one blanket refusal
    assert {"InvalidParameterException", "SerializationException",
            "InvalidImageFormatException", "ImageTooLargeException"} <= set(codes), codes


@pytest.mark.parametrize("method, path", [
    ("GET", "/x"), ("PUT", "/"), ("POST", "/foo"), ("GET", "/"), ("DELETE", "/"),
    ("PATCH", "/healthz"), ("OPTIONS", "/"), ("GET", "/%ff/../.."),
])
def test_other_paths_and_methods_get_aws_errors(server, method, path):
    status, headers, payload = server.send(method, path, b"{}")
    assert 400 <= status < 500
    assert headers["content-type"].startswith("application/x-amz-json-1.1")
    assert json.loads(payload)["__type"] == "UnknownOperationException"


def test_server_is_healthy_after_and_the_ledger_verifies(server, fuzzed):
    status, _, payload = server.send("GET", "/healthz")
    assert status == 200, payload
    photo = (SAMPLES / "identities" / "biden" / "biden.jpg").read_bytes()
    status, _, payload = server.call("DetectFaces", json.dumps(
        {"Image": {"Bytes": base64.b64encode(photo).decode()}}).encode())
    assert status == 200, payload
    assert len(json.loads(payload)["FaceDetails"]) == 1
    server.stop()
    done = subprocess.run([*CANDOR, "audit", "verify", "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
