"""Issue 5's acceptance, end to end: the moratorium over HTTP with boto3, every call in the
ledger, tampering caught by ``candor audit verify``, erasure visible to the running server.

One ``candor serve`` for the module; keys are issued in-process on the same database.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from postgres_helper import db_rows, store_url  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CANDOR_TEST_DATA", ROOT / ".." / "shared" / "data" / "faces")).resolve()
SAMPLES = DATA / "samples" / "identities"
CANDOR = [sys.executable, "-m", "candor.cli"]

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"test photos not found at {DATA}")


def photo(rel: str) -> bytes:
    return (SAMPLES / rel).read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory, store_backend):
    tmp = tmp_path_factory.mktemp("gov-http")
    data = tmp / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out, err = tmp / "serve.out", tmp / "serve.err"
    proc = subprocess.Popen([*CANDOR, "serve", "--port", str(port), "--data-dir", str(data),
                             "--workers", "2", "--policy", "moratorium-2020"],
                            stdout=out.open("w"), stderr=err.open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while "AWS_SECRET_ACCESS_KEY" not in out.read_text():
        assert proc.poll() is None, err.read_text()
        assert time.time() < deadline, "candor serve did not come up:\n" + err.read_text()
        time.sleep(0.2)
    from candor.api.keys import KeyStore

    keys = KeyStore.open(data, store_url())

    def client(org, category):
        key, secret = keys.create(org, category)
        c = boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                         aws_access_key_id=key.access_key_id, aws_secret_access_key=secret,
                         config=Config(retries={"max_attempts": 1}, connect_timeout=60,
                                       read_timeout=120))
        return key.access_key_id, c

    for _ in range(600):  # the first request waits for the models; wait for readiness
        try:
            client("probe", "general")[1].list_collections()
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


def ledger_rows(data, principal):
    return db_rows(data, "SELECT operation, decision, rule FROM audit_records "
                         "WHERE principal = :p ORDER BY seq", p=principal)


def test_moratorium_over_http(server):
    data, client = server
    ops_id, ops = client("candor-ops", "general")
    ops.create_collection(CollectionId="missing")
    indexed = ops.index_faces(CollectionId="missing", ExternalImageId="obama",
                              Image={"Bytes": photo("obama/obama.jpg")})
    face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
    ops.create_user(CollectionId="missing", UserId="u-obama")
    ops.associate_faces(CollectionId="missing", UserId="u-obama", FaceIds=[face_id])
    probe = {"Bytes": photo("obama/obama2.jpg")}

    # keys of the collection's own organisation under other categories (tenancy: another
    # organisation's key would not find the collection at all)
    police_id, police = client("candor-ops", "law_enforcement")
    calls = {
        "SearchFacesByImage": lambda: police.search_faces_by_image(
            CollectionId="missing", Image=probe, FaceMatchThreshold=99),
        "SearchFaces": lambda: police.search_faces(CollectionId="missing", FaceId=face_id),
        "CompareFaces": lambda: police.compare_faces(SourceImage=probe, TargetImage=probe),
        "SearchUsersByImage": lambda: police.search_users_by_image(CollectionId="missing",
                                                                   Image=probe),
        "SearchUsers": lambda: police.search_users(CollectionId="missing", UserId="u-obama"),
    }
    for call in calls.values():
        with pytest.raises(police.exceptions.AccessDeniedException,
                           match="police-moratorium-2020"):
            call()
    assert ledger_rows(data, police_id) == [(n, "deny", "police-moratorium-2020")
                                            for n in calls]

    thorn_id, thorn = client("candor-ops", "child_safety")
    with pytest.raises(thorn.exceptions.AccessDeniedException, match="floor of 99"):
        thorn.search_faces_by_image(CollectionId="missing", Image=probe, FaceMatchThreshold=80)
    found = thorn.search_faces_by_image(CollectionId="missing", Image=probe,
                                        FaceMatchThreshold=99)
    assert "FaceMatches" in found
    assert ledger_rows(data, thorn_id) == [("SearchFacesByImage", "deny", "child-safety-floor"),
                                           ("SearchFacesByImage", "allow", "child-safety-floor")]

    press_id, press = client("candor-ops", "media")
    matches = press.search_faces_by_image(CollectionId="missing", Image=probe)["FaceMatches"]
    assert [m["Face"]["FaceId"] for m in matches] == [face_id]
    assert ledger_rows(data, press_id) == [("SearchFacesByImage", "allow", "default")]

    verify = subprocess.run([*CANDOR, "audit", "verify", "--data-dir", str(data)],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # erasure in another process; the running server must stop returning the face
    erased = subprocess.run([*CANDOR, "erase", "--external-image-id", "obama", "--data-dir",
                             str(data)], capture_output=True, text=True, timeout=120)
    assert erased.returncode == 0 and "erased 1 face" in erased.stdout, erased.stderr
    assert press.search_faces_by_image(CollectionId="missing", Image=probe)["FaceMatches"] == []
    assert press.list_users(CollectionId="missing")["Users"] == [
        {"UserId": "u-obama", "UserStatus": "CREATED"}]

    # one edited record is caught
    db_rows(data, "UPDATE audit_records SET decision = 'allow' WHERE principal = :p "
                  "AND decision = 'deny'", p=thorn_id)
    verify = subprocess.run([*CANDOR, "audit", "verify", "--data-dir", str(data)],
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 1 and "BROKEN at record" in verify.stdout
