"""SigV4 verification checked against botocore's own signer, the one every boto3 client uses."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from candor.api import sigv4

KEY_ID = "CANDORTESTKEY0000001"
SECRET = "s3cr3t/with+chars=="
KEYS = {KEY_ID: SECRET}


def sign(body=b'{"Image": {}}', url="http://127.0.0.1:8080/", headers=None,
         secret=SECRET, key_id=KEY_ID, service="rekognition", region="us-east-1"):
    """A request signed by botocore, returned as the server would see it on the wire."""
    hdrs = {"X-Amz-Target": "RekognitionService.DetectFaces",
            "Content-Type": "application/x-amz-json-1.1"}
    hdrs.update(headers or {})
    req = AWSRequest(method="POST", url=url, data=body, headers=hdrs)
    SigV4Auth(Credentials(key_id, secret), service, region).add_auth(req)
    parts = urlsplit(url)
    wire = [(k.lower(), v) for k, v in req.headers.items()]
    if not any(k == "host" for k, _ in wire):
        wire.append(("host", parts.netloc))
    return {"method": "POST", "raw_path": parts.path or "/", "raw_query": parts.query,
            "headers": wire, "body": body}


def check(req, now=None, keys=KEYS):
    return sigv4.verify(req["method"], req["raw_path"], req["raw_query"], req["headers"],
                        req["body"], keys.get, now=now)


def replace_header(req, name, value):
    req["headers"] = [(k, value if k == name else v) for k, v in req["headers"]]
    return req


@pytest.mark.parametrize("kwargs", [
    {},
    {"body": b""},
    {"url": "http://localhost/"},
    {"url": "http://127.0.0.1:9/a/./b/../c//d?z=1&a=2&a=1&e=%20x"},
    {"headers": {"X-Custom": "  spaced    value  "}},
    {"region": "eu-west-3"},
    {"secret": "another-secret", "key_id": "OTHER"},
])
def test_botocore_signatures_verify(kwargs):
    req = sign(**kwargs)
    keys = dict(KEYS, OTHER="another-secret")
    got = check(req, keys=keys)
    assert got.access_key_id == kwargs.get("key_id", KEY_ID)
    assert got.region == kwargs.get("region", "us-east-1")


def test_wrong_secret_is_invalid_signature():
    with pytest.raises(sigv4.InvalidSignature, match="does not match") as err:
        check(sign(secret="not-the-secret"))
    assert err.value.http_status == 403


def test_unknown_key_is_unrecognized_client():
    with pytest.raises(sigv4.UnrecognizedClient) as err:
        check(sign(key_id="NOBODY"))
    assert err.value.http_status == 400


def test_missing_authorization():
    req = sign()
    req["headers"] = [(k, v) for k, v in req["headers"] if k != "authorization"]
    with pytest.raises(sigv4.MissingAuthenticationToken):
        check(req)


@pytest.mark.parametrize("auth", ["Bearer abc", "AWS4-HMAC-SHA256 Credential=x",
                                  "AWS4-HMAC-SHA256 Credential=K/2020/r, SignedHeaders=host, "
                                  "Signature=ab", ""])
def test_malformed_authorization_is_incomplete_signature(auth):
    req = replace_header(sign(), "authorization", auth)
    with pytest.raises((sigv4.IncompleteSignature, sigv4.MissingAuthenticationToken)):
        check(req)


def test_tampered_body():
    req = sign(body=b'{"Attributes": ["DEFAULT"]}')
    req["body"] = b'{"Attributes": ["ALL"]}'
    with pytest.raises(sigv4.InvalidSignature):
        check(req)


def test_tampered_target_header():
    req = replace_header(sign(), "x-amz-target", "RekognitionService.DeleteCollection")
    with pytest.raises(sigv4.InvalidSignature):
        check(req)


def test_tampered_path_and_query():
    req = sign(url="http://127.0.0.1:8080/?a=1")
    with pytest.raises(sigv4.InvalidSignature):
        check(dict(req, raw_query="a=2"))
    with pytest.raises(sigv4.InvalidSignature):
        check(dict(req, raw_path="/other"))


def test_clock_skew_window():
    req = sign()
    stamp = dict(req["headers"])["x-amz-date"]
    signed = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    check(req, now=signed + dt.timedelta(minutes=14))
    check(req, now=signed - dt.timedelta(minutes=14))
    with pytest.raises(sigv4.InvalidSignature, match="Signature expired"):
        check(req, now=signed + dt.timedelta(minutes=16))
    with pytest.raises(sigv4.InvalidSignature, match="not yet current"):
        check(req, now=signed - dt.timedelta(minutes=16))


def test_other_service_scope_refused():
    with pytest.raises(sigv4.InvalidSignature, match="service"):
        check(sign(service="s3"))


def test_content_sha256_must_match_body():
    req = sign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    with pytest.raises(sigv4.InvalidSignature, match="x-amz-content-sha256"):
        check(req)


def test_non_ascii_signature_does_not_crash():
    req = sign()
    auth = dict(req["headers"])["authorization"]
    req = replace_header(req, "authorization", auth[:-4] + "ééé")
    with pytest.raises(sigv4.InvalidSignature):
        check(req)


def test_host_must_be_signed():
    req = sign()
    auth = dict(req["headers"])["authorization"]
    req = replace_header(req, "authorization", auth.replace("host;", ""))
    with pytest.raises(sigv4.InvalidSignature, match="Host"):
        check(req)
