"""Tenancy through a real ``candor serve`` with boto3: keys of two organisations (issued with
``candor keys create --org``) and the operator's.

B gets ResourceNotFoundException for A's collection on every collection operation, and its
ListCollections lacks A's; B may create its own ``kids``; the operator key sees both, and its
use of A's collection is in the ledger with the owner organisation.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from postgres_helper import db_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CANDOR_TEST_DATA", ROOT / ".." / "shared" / "data" / "faces")).resolve()
SAMPLES = DATA / "samples" / "identities"
CANDOR = [sys.executable, "-m", "candor.cli"]

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"test photos not found at {DATA}")


def photo(rel: str) -> bytes:
    return (SAMPLES / rel).read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory, store_backend):
    tmp = tmp_path_factory.mktemp("tenancy-http")
    data = tmp / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out, err = tmp / "serve.out", tmp / "serve.err"
    proc = subprocess.Popen([*CANDOR, "serve", "--port", str(port), "--data-dir", str(data),
                             "--workers", "2"], stdout=out.open("w"), stderr=err.open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while "AWS_SECRET_ACCESS_KEY" not in out.read_text():
        assert proc.poll() is None, err.read_text()
        assert time.time() < deadline, "candor serve did not come up:\n" + err.read_text()
        time.sleep(0.2)

    def client(org: str):
        made = subprocess.run([*CANDOR, "keys", "create", "--org", org, "--json",
                               "--data-dir", str(data)], capture_output=True, text=True,
                              timeout=120)
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)
        return key["AccessKeyId"], boto3.client(
            "rekognition", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
            config=Config(retries={"max_attempts": 1}, connect_timeout=60, read_timeout=120))

    probe = client("probe")[1]
    for _ in range(600):  # the first request waits for the models
        try:
            probe.list_collections()
            break
        except Exception:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.2)
    yield data, client
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_two_orgs_and_the_operator_over_http(server):
    data, client = server
    _, a = client("org-a")
    _, b = client("org-b")
    made = a.create_collection(CollectionId="kids")
    assert made["CollectionArn"] == "aws:rekognition:candor:org-a:collection/kids"
    face_id = a.index_faces(CollectionId="kids", ExternalImageId="obama",
                            Image={"Bytes": photo("obama/obama.jpg")}
                            )["FaceRecords"][0]["Face"]["FaceId"]
    a.create_user(CollectionId="kids", UserId="u1")
    a.associate_faces(CollectionId="kids", UserId="u1", FaceIds=[face_id])

    img = {"Bytes": photo("obama/obama2.jpg")}
    k = {"CollectionId": "kids"}
    calls = {
        "DescribeCollection": lambda: b.describe_collection(**k),
        "ListFaces": lambda: b.list_faces(**k),
        "IndexFaces": lambda: b.index_faces(**k, Image=img),
        "DeleteFaces": lambda: b.delete_faces(**k, FaceIds=[face_id]),
        "SearchFaces": lambda: b.search_faces(**k, FaceId=face_id),
        "SearchFacesByImage": lambda: b.search_faces_by_image(**k, Image=img),
        "CreateUser": lambda: b.create_user(**k, UserId="intruder"),
        "ListUsers": lambda: b.list_users(**k),
        "AssociateFaces": lambda: b.associate_faces(**k, UserId="u1", FaceIds=[face_id]),
        "DisassociateFaces": lambda: b.disassociate_faces(**k, UserId="u1", FaceIds=[face_id]),
        "SearchUsers": lambda: b.search_users(**k, UserId="u1"),
        "SearchUsersByImage": lambda: b.search_users_by_image(**k, Image=img),
        "DeleteUser": lambda: b.delete_user(**k, UserId="u1"),
        "DeleteCollection": lambda: b.delete_collection(**k),
    }
    for name, call in calls.items():
        with pytest.raises(b.exceptions.ResourceNotFoundException) as info:
            call()
        assert info.value.response["Error"]["Message"] == \
            "The collection id: kids does not exist", name
    assert "kids" not in b.list_collections()["CollectionIds"]
    assert [f["FaceId"] for f in a.list_faces(**k)["Faces"]] == [face_id]

    # B's own kids: its own namespace, empty, and A's is untouched
    assert b.create_collection(CollectionId="kids")["CollectionArn"] == \
        "aws:rekognition:candor:org-b:collection/kids"
    assert b.list_faces(**k)["Faces"] == []
    assert b.list_collections()["CollectionIds"] == ["kids"]
    assert a.describe_collection(**k)["FaceCount"] == 1

    # the operator sees both; A's collection reached by a name only A holds is recorded
    a.create_collection(CollectionId="a-only")
    op_id, op = client("operator")
    assert op.list_collections()["CollectionIds"].count("kids") == 2
    with pytest.raises(op.exceptions.InvalidParameterException):
        op.describe_collection(CollectionId="kids")
    assert op.describe_collection(CollectionId="a-only")["CollectionARN"] == \
        "aws:rekognition:candor:org-a:collection/a-only"
    rows = db_rows(data, "SELECT operation, org, details FROM audit_records "
                   "WHERE principal = :p AND collection = 'a-only'", p=op_id)
    assert [(op, org, json.loads(details)["owner_org"]) for op, org, details in rows] == [
        ("DescribeCollection", "operator", "org-a")]

    verify = subprocess.run([*CANDOR, "audit", "verify", "--data-dir", str(data)],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
