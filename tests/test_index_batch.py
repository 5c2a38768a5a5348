"""``candor index``'s batch path (the gate's and the service's ``index_faces_many``) decides,
stores and records each photo exactly as IndexFaces through ``Gate.call`` does: the same
responses, the same audit record fields, the same refusals and daily caps; only the grouping
of the commits differs."""

from __future__ import annotations

import pytest

from candor.errors import AccessDenied
from candor.governance.gate import Gate
from candor.governance.policy import parse_policy
from candor.governance.principal import Principal
from candor.service import Service

PRESS = Principal("AKPRESS", "daily-news", "media", kind="key")
SAME = ("principal", "org", "category", "operation", "image_sha256", "faces_found",
        "threshold", "decision", "rule", "scoring", "details")


def _photos(data_dir, n):
    photos = sorted((data_dir / "lfw").glob("*/*_0001.jpg"))[:n]
    if len(photos) < n:
        pytest.skip("LFW photos not found")
    return photos


def _request(coll, photo):
    return {"CollectionId": coll, "ExternalImageId": photo.parent.name,
            "QualityFilter": "AUTO", "Image": {"Bytes": photo.read_bytes()}}


def _strip(response):
    """A response without the ids each call draws anew."""
    out = {**response, "FaceRecords": [
        {**r, "Face": {k: v for k, v in r["Face"].items() if k not in ("FaceId", "ImageId")}}
        for r in response["FaceRecords"]]}
    return out


def test_batch_matches_one_call_at_a_time(tmp_path, data_dir):
    photos = _photos(data_dir, 7)
    unreadable = tmp_path / "gone.jpg"
    gate = Gate.for_service(Service(data_dir=tmp_path / "d"), "open")
    press = gate.as_principal(PRESS)
    for coll in ("one", "many"):
        press.call("CreateCollection", {"CollectionId": coll})
    singles = [press.call("IndexFaces", _request("one", p)) for p in photos]
    start = gate.ledger.head()[0]
    requests = [(p, _request("many", p)) for p in photos]
    requests.insert(3, (unreadable, OSError("cannot read")))
    requests.insert(5, ("bad", {"CollectionId": "many", "Image": {"Bytes": b"not a photo"}}))
    out = list(press.index_faces_many(iter(requests), group=3))
    assert [o.item for o in out] == [item for item, _ in requests]
    assert isinstance(out[3].error, OSError) and out[5].error.code == "InvalidImageFormatException"
    batch = [o.response for o in out if o.error is None]
    assert [_strip(r) for r in batch] == [_strip(r) for r in singles]
    assert sum(len(r["FaceRecords"]) for r in batch) >= 7

    records = gate.ledger.tail(50)
    one = [r for r in records if r["collection"] == "one" and r["operation"] == "IndexFaces"]
    many = [r for r in records if r["seq"] > start]
    failed = [r for r in many if r["decision"] == "failed"]
    assert len(failed) == 1 and failed[0]["details"]["error"] == "InvalidImageFormatException"
    many = [r for r in many if r["decision"] == "allow"]  # the unreadable file made no call
    assert [{k: r[k] for k in SAME} for r in many] == [{k: r[k] for k in SAME} for r in one]
    assert [[m["FaceId"] for m in r["matches"]] for r in many] == [
        [f["Face"]["FaceId"] for f in resp["FaceRecords"]] for resp in batch]
    assert gate.ledger.verify().ok
    assert gate.ledger.read_anchor() == gate.ledger.head()
    listed = press.call("ListFaces", {"CollectionId": "many"})["Faces"]
    assert {f["FaceId"] for f in listed} == {r["Face"]["FaceId"] for resp in batch
                                            for r in resp["FaceRecords"]}


def test_refusals_and_daily_caps_hold_within_a_group(tmp_path, data_dir):
    photos = _photos(data_dir, 5)
    policy = parse_policy("""
default: allow
rules:
  - id: cap
    match: {operation: IndexFaces}
    effect: require
    require: {max_per_day: 3}
  - id: no-archive
    match: {operation: IndexFaces, collection: archive}
    effect: deny
""")
    gate = Gate.for_service(Service(data_dir=tmp_path / "d"), policy)
    press = gate.as_principal(PRESS)
    press.call("CreateCollection", {"CollectionId": "c"})
    out = list(press.index_faces_many([(p, _request("c", p)) for p in photos], group=16))
    assert [o.error is None for o in out] == [True, True, True, False, False]
    assert all(isinstance(o.error, AccessDenied) and "daily cap of 3" in o.error.message
               for o in out[3:])
    # a refusal is recorded when it is decided, the allowed calls when their group commits
    decisions = sorted(r["decision"] for r in gate.ledger.tail(5))
    assert decisions == ["allow", "allow", "allow", "deny", "deny"]
    assert len(press.call("ListFaces", {"CollectionId": "c"})["Faces"]) >= 3
    assert gate.ledger.verify().ok


def test_another_organisation_cannot_index_into_a_collection(tmp_path, data_dir):
    photo = _photos(data_dir, 1)[0]
    gate = Gate.for_service(Service(data_dir=tmp_path / "d"), "open")
    gate.as_principal(Principal("AKOTHER", "other-org", "general", kind="key")).call(
        "CreateCollection", {"CollectionId": "theirs"})
    out = list(gate.as_principal(PRESS).index_faces_many([(photo, _request("theirs", photo))]))
    assert out[0].error.code == "ResourceNotFoundException"
    assert gate.ledger.tail(1)[0]["decision"] == "failed"
