"""Replay protection through a real ``candor serve``: a signed mutating request is accepted
once (also after a restart, since the seen signatures are in the database); reads may repeat."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

pytest.importorskip("boto3")
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from postgres_helper import store_url
from serve_helper import client, free_port, serve  # noqa: E402


def signed(url: str, key: str, secret: str, operation: str, body: dict) -> tuple[bytes, dict]:
    """The exact bytes and headers of one signed request, as captured on the wire."""
    data = json.dumps(body).encode()
    req = AWSRequest(method="POST", url=url + "/", data=data, headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"RekognitionService.{operation}"})
    SigV4Auth(Credentials(key, secret), "rekognition", "us-east-1").add_auth(req)
    return data, dict(req.headers.items())


def send(url: str, data: bytes, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_a_replayed_signed_delete_collection_is_refused(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    with serve(data, tmp_path, port=port) as url:
        key, secret, rek = client(url, data, "candor-ops", "general")
        rek.create_collection(CollectionId="victims")
        capture = signed(url, key, secret, "DeleteCollection", {"CollectionId": "victims"})
        status, body = send(url, *capture)
        assert status == 200 and body["StatusCode"] == 200
        # re-created by its owner (tagged: an identical CreateCollection signed in the same
        # second would carry the same signature, which is the documented limit of the rule)
        rek.create_collection(CollectionId="victims", Tags={"again": "yes"})

        status, body = send(url, *capture)  # the captured request, replayed
        assert status == 403 and body["__type"] == "InvalidSignatureException", body
        assert "already used" in body["Message"]
        assert "victims" in rek.list_collections()["CollectionIds"]

        # a request that changes nothing may be repeated, as with AWS
        describe = signed(url, key, secret, "DescribeCollection", {"CollectionId": "victims"})
        assert send(url, *describe)[0] == 200
        assert send(url, *describe)[0] == 200

    # the seen signatures are in the database: a restarted server refuses the replay too
    with serve(data, tmp_path, port=port) as url:
        status, body = send(url, *capture)
        assert status == 403 and body["__type"] == "InvalidSignatureException", body
        assert "victims" in rek.list_collections()["CollectionIds"]


def test_concurrent_replays_one_wins(tmp_path):
    """Two gateways on one database (two nodes) each try to accept the same signature."""
    import datetime as dt

    from candor.api.replay import SeenSignatures
    from candor.api.sigv4 import Verified
    from candor.errors import InvalidSignature
    from candor.store import Store

    a, b = Store(tmp_path, url=store_url()), Store(tmp_path, url=store_url())
    now = dt.datetime.now(dt.timezone.utc)
    verified = Verified("AK", "us-east-1", now, ("host",), "ab" * 32)
    SeenSignatures(a).accept_once(verified, now)
    with pytest.raises(InvalidSignature, match="already used"):
        SeenSignatures(b).accept_once(verified, now)
    # once its window has closed the signature is purged (and SigV4 refuses it as expired)
    later = now + dt.timedelta(minutes=16)
    fresh = Verified("AK", "us-east-1", later, ("host",), "cd" * 32)
    SeenSignatures(b).accept_once(fresh, later)
    with b.read() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM seen_signatures").scalar()
    assert rows == 1
