"""The HTTP API end to end: a real ``candor serve`` subprocess driven by boto3 and the aws CLI.

One server per module (models load once); every test talks to it over loopback exactly as an
AWS SDK user would, so what passes here is what users get.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import unquote, urlsplit

import boto3
import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator
from postgres_helper import db_rows
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CANDOR_TEST_DATA", ROOT / ".." / "shared" / "data" / "faces")).resolve()
SAMPLES = DATA / "samples"
REGION = "us-east-1"
CANDOR = [sys.executable, "-m", "candor.cli"]

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(),
                                reason=f"test photos not found at {DATA} (set CANDOR_TEST_DATA)")


def photo(rel: str) -> bytes:
    return (SAMPLES / rel).read_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, data_dir: Path) -> str:
    done = subprocess.run([*CANDOR, *args, "--data-dir", str(data_dir)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def key_lines(text: str) -> tuple[str, str]:
    found = dict(line.split("=", 1) for line in text.splitlines() if line.startswith("AWS_"))
    return found["AWS_ACCESS_KEY_ID"], found["AWS_SECRET_ACCESS_KEY"]


class FakeS3(BaseHTTPRequestHandler):
    """Just enough of an S3-compatible store for GetObject (path-style): the operator's S3."""

    objects: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's naming)
        data = self.objects.get(unquote(urlsplit(self.path).path))
        if data is None:
            body = b"<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>"
            self.send_response(404)
            self.send_header("Content-Type", "application/xml")
        else:
            body = data
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server:
    def __init__(self, tmp: Path) -> None:
        self.s3 = ThreadingHTTPServer(("127.0.0.1", 0), FakeS3)
        threading.Thread(target=self.s3.serve_forever, daemon=True).start()
        s3_url = f"http://127.0.0.1:{self.s3.server_address[1]}"
        self.data_dir = tmp / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = tmp / "serve.out"
        self.stderr_path = tmp / "serve.err"
        self.proc = subprocess.Popen(
            [*CANDOR, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
             "--workers", "2", "--policy", "moratorium-2020", "--s3-endpoint-url", s3_url],
            env=dict(os.environ, AWS_ACCESS_KEY_ID="s3-user", AWS_SECRET_ACCESS_KEY="s3-secret"),
            stdout=self.stdout_path.open("w"), stderr=self.stderr_path.open("w"))
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.stderr_path.read_text()
            try:
                status, _, _ = self.get("/healthz")
                if status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise AssertionError("candor serve did not come up:\n" + self.stderr_path.read_text())
        self.key_id, self.secret = key_lines(self.stdout_path.read_text())

    def get(self, path: str):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def client(self, key_id=None, secret=None, **config):
        return boto3.client(
            "rekognition", endpoint_url=self.url, region_name=REGION,
            aws_access_key_id=key_id or self.key_id, aws_secret_access_key=secret or self.secret,
            config=Config(retries={"max_attempts": 1}, **config))

    def raw(self, target: str, body: bytes, *, key_id=None, secret=None, when=None,
            send_body=None, headers=None, unsigned_headers=None):
        """A request signed by botocore's SigV4Auth (optionally at another time), sent as is."""
        req = AWSRequest(method="POST", url=self.url + "/", data=body, headers={
            "X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1",
            **(headers or {})})
        creds = Credentials(key_id or self.key_id, secret or self.secret)
        if when is None:
            SigV4Auth(creds, "rekognition", REGION).add_auth(req)
        else:
            with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
                SigV4Auth(creds, "rekognition", REGION).add_auth(req)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("POST", "/", body=body if send_body is None else send_body,
                     headers={**dict(req.headers.items()), **(unsigned_headers or {})})
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, (
            json.loads(payload) if payload else None)

    def stop(self) -> None:
        self.s3.shutdown()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory, store_backend):
    srv = Server(tmp_path_factory.mktemp("http"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def rek(server):
    return server.client()


def assert_model_shape(client, operation: str, response: dict) -> None:
    """The parsed response satisfies botocore's own output shape for the operation."""
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    shape = client.meta.service_model.operation_model(operation).output_shape
    report = ParamValidator().validate(body, shape)
    assert not report.has_errors(), report.generate_report()


def audit_count(server) -> int:
    return db_rows(server.data_dir, "SELECT count(*) FROM audit_records")[0][0]


def exists(rek, collection_id: str) -> bool:
    try:
        rek.describe_collection(CollectionId=collection_id)
        return True
    except rek.exceptions.ResourceNotFoundException:
        return False


# ------------------------------------------------------------------ first start, keys


def test_first_start_prints_an_admin_key_that_works(server, rek):
    assert server.key_id.startswith("AKCA") and len(server.secret) >= 40
    assert rek.list_collections()["CollectionIds"] == []
    listed = run_cli("keys", "list", "--json", data_dir=server.data_dir)
    assert server.key_id in listed and server.secret not in listed
    assert server.secret not in server.stderr_path.read_text()  # never in the log


# ------------------------------------------------------------------ faces round trip


def test_detect_faces_round_trip(server, rek):
    response = rek.detect_faces(Image={"Bytes": photo("groups/couple.jpg")}, Attributes=["ALL"])
    assert_model_shape(rek, "DetectFaces", response)
    faces = response["FaceDetails"]
    assert len(faces) == 2
    for face in faces:
        box = face["BoundingBox"]
        assert 0 <= box["Left"] <= 1 and 0 < box["Width"] <= 1
        assert face["Confidence"] > 50
    assert response["ResponseMetadata"]["RequestId"]
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]


def test_compare_faces_round_trip(rek):
    same = rek.compare_faces(SourceImage={"Bytes": photo("identities/obama/obama.jpg")},
                             TargetImage={"Bytes": photo("identities/obama/obama2.jpg")})
    assert_model_shape(rek, "CompareFaces", same)
    assert same["FaceMatches"] and same["FaceMatches"][0]["Similarity"] > 80
    other = rek.compare_faces(SourceImage={"Bytes": photo("identities/obama/obama.jpg")},
                              TargetImage={"Bytes": photo("identities/biden/biden.jpg")},
                              SimilarityThreshold=80)
    assert_model_shape(rek, "CompareFaces", other)
    assert other["FaceMatches"] == [] and len(other["UnmatchedFaces"]) == 1


# ------------------------------------------------------------------ collections


def test_collection_operations_round_trip(server, rek):
    cid = "people"
    created = rek.create_collection(CollectionId=cid)
    assert_model_shape(rek, "CreateCollection", created)
    with pytest.raises(rek.exceptions.ResourceAlreadyExistsException):
        # tagged: the identical request, signed in the same second, would be a replay
        # (docs/http-api.md, "Replay")
        rek.create_collection(CollectionId=cid, Tags={"second": "attempt"})
    faces = {}
    for name, rel in (("obama", "identities/obama/obama.jpg"),
                      ("biden", "identities/biden/biden.jpg")):
        indexed = rek.index_faces(CollectionId=cid, Image={"Bytes": photo(rel)},
                                  ExternalImageId=name, MaxFaces=1)
        assert_model_shape(rek, "IndexFaces", indexed)
        faces[name] = indexed["FaceRecords"][0]["Face"]["FaceId"]
    described = rek.describe_collection(CollectionId=cid)
    assert_model_shape(rek, "DescribeCollection", described)
    assert described["FaceCount"] == 2
    assert isinstance(described["CreationTimestamp"], dt.datetime)  # epoch seconds on the wire
    listed = rek.list_faces(CollectionId=cid)
    assert_model_shape(rek, "ListFaces", listed)
    assert {f["FaceId"] for f in listed["Faces"]} == set(faces.values())

    found = rek.search_faces_by_image(CollectionId=cid,
                                      Image={"Bytes": photo("identities/obama/obama2.jpg")})
    assert_model_shape(rek, "SearchFacesByImage", found)
    assert found["FaceMatches"][0]["Face"]["ExternalImageId"] == "obama"
    by_id = rek.search_faces(CollectionId=cid, FaceId=faces["obama"])
    assert_model_shape(rek, "SearchFaces", by_id)
    assert faces["biden"] not in {m["Face"]["FaceId"] for m in by_id["FaceMatches"]}

    assert_model_shape(rek, "CreateUser", rek.create_user(CollectionId=cid, UserId="u-obama"))
    associated = rek.associate_faces(CollectionId=cid, UserId="u-obama",
                                     FaceIds=[faces["obama"]])
    assert_model_shape(rek, "AssociateFaces", associated)
    users = rek.search_users(CollectionId=cid, FaceId=faces["obama"])
    assert_model_shape(rek, "SearchUsers", users)
    assert users["UserMatches"][0]["User"]["UserId"] == "u-obama"
    assert_model_shape(rek, "ListUsers", rek.list_users(CollectionId=cid))

    deleted = rek.delete_faces(CollectionId=cid, FaceIds=[faces["biden"]])
    assert deleted["DeletedFaces"] == [faces["biden"]]
    assert_model_shape(rek, "DeleteCollection", rek.delete_collection(CollectionId=cid))
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.describe_collection(CollectionId=cid)


def test_images_from_s3(rek):
    FakeS3.objects["/photos/people/biden.jpg"] = photo("identities/biden/biden.jpg")
    s3_image = {"S3Object": {"Bucket": "photos", "Name": "people/biden.jpg"}}
    assert len(rek.detect_faces(Image=s3_image)["FaceDetails"]) == 1
    same = rek.compare_faces(SourceImage=s3_image,
                             TargetImage={"Bytes": photo("identities/biden/biden2.jpg")})
    assert same["FaceMatches"][0]["Similarity"] > 80
    with pytest.raises(rek.exceptions.InvalidS3ObjectException):
        rek.detect_faces(Image={"S3Object": {"Bucket": "photos", "Name": "missing.jpg"}})


# ------------------------------------------------------------------ errors as exceptions


def test_errors_surface_as_client_exceptions(server, rek):
    with pytest.raises(rek.exceptions.InvalidImageFormatException):
        rek.detect_faces(Image={"Bytes": b"this is not a photo"})
    with pytest.raises(rek.exceptions.InvalidParameterException, match="similarityThreshold"):
        rek.compare_faces(SourceImage={"Bytes": b"x"}, TargetImage={"Bytes": b"x"},
                          SimilarityThreshold=101)
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.list_faces(CollectionId="no-such-collection")
    # a body over the cap: refused from Content-Length, before it is read
    with pytest.raises(rek.exceptions.ImageTooLargeException):
        rek.detect_faces(Image={"Bytes": b"\xff\xd8\xff" + bytes(6 * 1024 * 1024)})
    # under the body cap but over 5 MB once decoded
    with pytest.raises(rek.exceptions.ImageTooLargeException):
        rek.detect_faces(Image={"Bytes": b"\xff\xd8\xff" + bytes(5 * 1024 * 1024 + 10)})


def test_wrong_types_are_invalid_parameter(server):
    loose = server.client(parameter_validation=False)  # let boto3 send what it would refuse
    with pytest.raises(loose.exceptions.InvalidParameterException, match="maxFaces"):
        loose.search_faces_by_image(CollectionId="c", Image={"Bytes": b"x"}, MaxFaces="ten")
    with pytest.raises(loose.exceptions.InvalidParameterException, match="collectionId"):
        loose.create_collection(CollectionId=["not", "a", "string"])
    with pytest.raises(loose.exceptions.InvalidParameterException, match="image"):
        loose.detect_faces()
    with pytest.raises(loose.exceptions.InvalidParameterException, match="attributes"):
        loose.detect_faces(Image={"Bytes": b"x"}, Attributes=["EVERYTHING"])


def test_malformed_requests_get_400s_and_the_server_keeps_serving(server, rek):
    status, headers, body = server.raw("RekognitionService.DetectFaces", b'{"Image": ')
    assert (status, body["__type"]) == (400, "SerializationException")
    assert headers["x-amzn-requestid"]
    status, _, body = server.raw("RekognitionService.DetectFaces", b'[1, 2]')
    assert (status, body["__type"]) == (400, "SerializationException")
    status, _, body = server.raw("RekognitionService.NoSuchThing", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, _, body = server.raw("Nonsense", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, _, body = server.raw("RekognitionService.DetectLabels", b"{}")  # modelled, not ours
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, _, body = server.raw("RekognitionService.DetectFaces",
                                 b'{"Image": {"Bytes": "not*base64!"}}')
    assert (status, body["__type"]) == (400, "InvalidImageFormatException")
    assert "Message" in body

    # declared 50 MB and never sent: answered at once, from the headers
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/")
    conn.putheader("X-Amz-Target", "RekognitionService.DetectFaces")
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders(b'{"Image": {"Bytes": "')
    resp = conn.getresponse()
    assert resp.status == 400
    assert json.loads(resp.read())["__type"] == "ImageTooLargeException"

    assert server.proc.poll() is None
    assert server.get("/healthz")[0] == 200
    response = rek.detect_faces(Image={"Bytes": photo("identities/biden/biden2.jpg")})
    assert len(response["FaceDetails"]) == 1


# ------------------------------------------------------------------ authentication


def test_unsigned_request_is_refused_and_nothing_runs(server, rek):
    anonymous = server.client(signature_version=UNSIGNED)
    with pytest.raises(ClientError) as err:
        anonymous.create_collection(CollectionId="unsigned")
    assert err.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"
    assert not exists(rek, "unsigned")


def test_wrong_secret_is_refused_and_nothing_runs(server, rek):
    forger = server.client(secret="x" * 40)
    with pytest.raises(ClientError) as err:
        forger.create_collection(CollectionId="forged")
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert not exists(rek, "forged")


def test_unknown_and_revoked_keys_are_refused(server, rek):
    stranger = server.client(key_id="AKCANOBODY0000000000")
    with pytest.raises(ClientError) as err:
        stranger.list_collections()
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    key_id, secret = key_lines(run_cli("keys", "create", "--org", "acme", "--category", "media",
                                       data_dir=server.data_dir))
    acme = server.client(key_id, secret)
    assert "CollectionIds" in acme.list_collections()
    run_cli("keys", "revoke", key_id, data_dir=server.data_dir)
    with pytest.raises(ClientError) as err:
        acme.create_collection(CollectionId="after-revoke")
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert not exists(rek, "after-revoke")


def test_stale_and_tampered_requests_are_refused_and_nothing_runs(server, rek):
    target = "RekognitionService.CreateCollection"
    stale = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=16)
    status, _, body = server.raw(target, b'{"CollectionId": "stale"}', when=stale)
    assert (status, body["__type"]) == (403, "InvalidSignatureException")
    assert body["Message"].startswith("Signature expired")
    assert not exists(rek, "stale")

    recent = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # inside the window
    status, _, _ = server.raw(target, b'{"CollectionId": "recent"}', when=recent)
    assert status == 200 and exists(rek, "recent")

    status, _, body = server.raw(target, b'{"CollectionId": "tamper-a"}',
                                 send_body=b'{"CollectionId": "tamper-b"}')
    assert (status, body["__type"]) == (403, "InvalidSignatureException")
    assert not exists(rek, "tamper-a") and not exists(rek, "tamper-b")

    # a biometric call with a forged body: refused before the gate, so not even audited
    audited = audit_count(server)
    image = base64.b64encode(photo("identities/biden/biden.jpg")).decode()
    signed = json.dumps({"Image": {"Bytes": image}, "Attributes": ["DEFAULT"]}).encode()
    forged = json.dumps({"Image": {"Bytes": image}, "Attributes": ["ALL"]}).encode()
    status, _, body = server.raw("RekognitionService.DetectFaces", signed, send_body=forged)
    assert (status, body["__type"]) == (403, "InvalidSignatureException")
    assert audit_count(server) == audited



def test_policy_decides_by_the_key_category_and_calls_are_audited(server):
    key_id, secret = key_lines(run_cli("keys", "create", "--org", "metro-police", "--category",
                                       "law_enforcement", data_dir=server.data_dir))
    police = server.client(key_id, secret)
    with pytest.raises(police.exceptions.AccessDeniedException, match="moratorium"):
        police.compare_faces(SourceImage={"Bytes": photo("identities/obama/obama.jpg")},
                             TargetImage={"Bytes": photo("identities/obama/obama2.jpg")})
    detected = police.detect_faces(Image={"Bytes": photo("identities/biden/biden.jpg")})
    assert len(detected["FaceDetails"]) == 1
    rows = db_rows(server.data_dir, "SELECT org, category, operation, decision, request_id "
                   "FROM audit_records WHERE principal = :p ORDER BY seq", p=key_id)
    assert [r[:4] for r in rows] == [
        ("metro-police", "law_enforcement", "CompareFaces", "deny"),
        ("metro-police", "law_enforcement", "DetectFaces", "allow")]
    assert rows[1][4] == detected["ResponseMetadata"]["RequestId"]  # one id: HTTP, log, ledger


def test_authorization_reference_reaches_the_ledger_only_when_signed(server):
    """The X-Candor-Authorization-Reference header, added before signing as policies.md says."""
    key_id, secret = key_lines(run_cli("keys", "create", "--org", "court-7", "--category",
                                       "media", data_dir=server.data_dir))
    client = server.client(key_id, secret)

    def add_reference(request, **_):
        request.headers["X-Candor-Authorization-Reference"] = "warrant 2026/117"

    client.meta.events.register("before-sign.rekognition.*", add_reference)
    client.detect_faces(Image={"Bytes": photo("identities/biden/biden.jpg")})
    ((details,),) = db_rows(server.data_dir, "SELECT details FROM audit_records "
                            "WHERE principal = :p", p=key_id)
    assert json.loads(details)["authorization_reference"] == "warrant 2026/117"

    before = audit_count(server)
    image = base64.b64encode(photo("identities/biden/biden.jpg")).decode()
    status, _, body = server.raw(
        "RekognitionService.DetectFaces", json.dumps({"Image": {"Bytes": image}}).encode(),
        key_id=key_id, secret=secret,
        unsigned_headers={"X-Candor-Authorization-Reference": "forged"})
    assert (status, body["__type"]) == (403, "InvalidSignatureException")
    assert audit_count(server) == before


# ------------------------------------------------------------------ aws CLI


def aws(server, *args: str) -> dict:
    env = dict(os.environ, AWS_ACCESS_KEY_ID=server.key_id,
               AWS_SECRET_ACCESS_KEY=server.secret, AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    exe = Path(sys.executable).with_name("aws")
    cmd = [str(exe) if exe.exists() else "aws", "rekognition", *args,
           "--endpoint-url", server.url, "--output", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_aws_cli_detect_faces_and_search(server, rek):
    out = aws(server, "detect-faces", "--image-bytes",
              f"fileb://{SAMPLES / 'identities/biden/biden.jpg'}")
    assert len(out["FaceDetails"]) == 1
    rek.create_collection(CollectionId="cli")
    rek.index_faces(CollectionId="cli", Image={"Bytes": photo("identities/biden/biden.jpg")},
                    ExternalImageId="biden")
    out = aws(server, "search-faces-by-image", "--collection-id", "cli", "--image-bytes",
              f"fileb://{SAMPLES / 'identities/biden/biden2.jpg'}")
    assert out["FaceMatches"][0]["Face"]["ExternalImageId"] == "biden"


def test_curl_aws_sigv4_is_accepted(server):
    """curl's own SigV4 implementation (not botocore's) is accepted too."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl")
    done = subprocess.run(
        [curl, "-sS", "--aws-sigv4", f"aws:amz:{REGION}:rekognition",
         "--user", f"{server.key_id}:{server.secret}",
         "-H", "X-Amz-Target: RekognitionService.ListCollections",
         "-H", "Content-Type: application/x-amz-json-1.1", "-d", "{}", server.url + "/"],
        capture_output=True, text=True, timeout=30)
    if done.returncode == 2 and "aws-sigv4" in done.stderr:
        pytest.skip("this curl has no --aws-sigv4")
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout)["CollectionIds"], list)


def test_inference_does_not_block_the_event_loop(server):
    """While operations run on the worker threads, the server still answers at once.

    Instrumented, not timed: the server's own in-flight gauge shows detections in progress,
    /healthz answers, and the gauge read after that answer still shows them in progress (a
    loop blocked by inference could serve neither /metrics nor /healthz mid-detection)."""
    clients = [server.client() for _ in range(6)]
    image = {"Bytes": photo("identities/obama/obama3.jpg")}
    with ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(c.detect_faces, Image=image) for c in clients]
        seen = 0.0
        for _ in range(2000):  # a bound on polls, not a clock
            seen = in_flight(server)
            if seen >= 2 or all(f.done() for f in futures):
                break
        status = server.get("/healthz")[0]
        after = in_flight(server)
        results = [f.result() for f in futures]
    assert seen >= 2, "detections never overlapped"
    assert status == 200
    assert after >= 1, "/healthz waited for every detection to finish"
    assert all(r["FaceDetails"] for r in results)


def in_flight(server) -> float:
    text = server.get("/metrics")[2].decode()
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "candor_http_in_flight")


# ------------------------------------------------------------------ health, metrics, ids


def test_health_metrics_and_request_ids(server, rek):
    rek.list_collections()
    with pytest.raises(rek.exceptions.InvalidImageFormatException):
        rek.detect_faces(Image={"Bytes": b"not a photo"})
    status, headers, body = server.get("/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok" and headers["x-amzn-requestid"]
    status, headers, body = server.get("/metrics")
    assert status == 200 and headers["x-amzn-requestid"]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body.decode())
               for s in family.samples}
    assert samples[("candor_http_requests_total",
                    (("operation", "ListCollections"), ("status", "200")))] >= 1
    assert samples[("candor_http_errors_total",
                    (("code", "InvalidImageFormatException"), ("operation", "DetectFaces")))] >= 1
    assert samples[("candor_http_request_duration_seconds_count",
                    (("operation", "DetectFaces"),))] >= 1
    status, headers, _ = server.get("/no/such/page")
    assert status == 404 and headers["x-amzn-requestid"]


def test_base64_bytes_travel_intact(server):
    """Image.Bytes is base64 on the wire: a valid tiny PNG decodes, and is judged as an image."""
    png = (SAMPLES / "edge" / "32bit.png").read_bytes()
    body = json.dumps({"Image": {"Bytes": base64.b64encode(png).decode()}}).encode()
    status, _, payload = server.raw("RekognitionService.DetectFaces", body)
    assert status == 200, payload
    assert "FaceDetails" in payload
