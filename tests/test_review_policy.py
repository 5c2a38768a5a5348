"""Human review in the policy and the gate (in-process): review_expires_hours is validated
with its line, an undecided review expires and releases nothing, an operation whose result
cannot be held (AssociateFaces) is refused rather than run unreviewed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from postgres_helper import store_url
from sqlalchemy import create_engine

from candor.errors import AccessDenied
from candor.governance import review
from candor.governance.gate import Gate
from candor.governance.ledger import Ledger
from candor.governance.policy import PolicyError, parse_policy
from candor.governance.principal import Principal
from candor.store import migrations

POLICE = Principal("AKPOLICE", "metro-pd", "law_enforcement", kind="key")
POLICY = """version: 1
name: t
default: allow
rules:
  - id: reviewed
    match: {category: law_enforcement}
    effect: require
    require:
      human_review: true
      review_expires_hours: 2
"""


class Searcher:
    """Stands in for the service: returns two candidates for every search."""

    backend_name = "dlib"

    def call(self, name, params):
        return {"SearchedFaceBoundingBox": {"Width": 0.5, "Height": 0.5, "Left": 0.1, "Top": 0.1},
                "FaceMatches": [{"Similarity": 99.5, "Face": {"FaceId": "f-1"}},
                                {"Similarity": 99.2, "Face": {"FaceId": "f-2"}}]}


def test_review_expires_hours_is_validated_with_its_line():
    with pytest.raises(PolicyError, match=":10:29: review_expires_hours must be a number"):
        parse_policy(POLICY.replace("review_expires_hours: 2", "review_expires_hours: 0"))
    with pytest.raises(PolicyError, match="needs human_review: true"):
        parse_policy(POLICY.replace("human_review: true", "human_review: false"))
    assert parse_policy(POLICY).rules[0].require.review_expires_hours == 2


@pytest.fixture()
def gate(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    migrations.migrate(eng)
    now = [datetime(2026, 5, 1, 12, tzinfo=timezone.utc)]
    g = Gate(Searcher(), Ledger(eng), parse_policy(POLICY), clock=lambda: now[0])
    yield g, now
    eng.dispose()


def test_an_undecided_review_expires_and_releases_nothing(gate):
    g, now = gate
    resp = g.call(POLICE, "SearchFacesByImage", {"CollectionId": "c", "Image": {"Bytes": b"x"}})
    assert resp["FaceMatches"] == [] and resp["ReviewId"].startswith("rv-")
    row = g.reviews.review(resp["ReviewId"])
    assert row["expires_at"] - row["created_at"] == timedelta(hours=2)
    assert [c["candidate"] for c in row["candidates"]] == ["f-1", "f-2"]
    now[0] += timedelta(hours=2, seconds=1)
    assert g.reviews.expire_reviews(now[0]) == [resp["ReviewId"]]
    expired = g.reviews.review(resp["ReviewId"])
    assert expired["status"] == "EXPIRED" and not expired["has_probe"]
    assert review.released(expired).get("FaceMatches") is None
    with pytest.raises(Exception, match="expired"):
        review.decide(g, g.reviews, Principal.local("operator"), resp["ReviewId"],
                      {"f-1": ("confirm", "late"), "f-2": ("reject", "late")})


def test_an_operation_that_cannot_be_held_is_refused(gate):
    g, _ = gate
    with pytest.raises(AccessDenied, match="requires human review"):
        g.call(POLICE, "AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": ["f"]})
    assert g.ledger.tail(1)[0]["decision"] == "deny"


def test_erasing_a_person_removes_them_from_held_reviews(tmp_path):
    """A review held before an erasure must not keep, or later release, the erased face."""
    import numpy as np

    from candor.config import OPERATOR_ORG
    from candor.governance.erasure import erase
    from candor.store import Store

    store = Store(tmp_path / "data", url=store_url())
    store.create_collection("c", "1.1")
    unit = np.eye(128, dtype=np.float32)
    rows = store.add_faces("c", [
        {"embedding": unit[i], "bbox": {"Width": .5, "Height": .5, "Left": 0, "Top": 0},
         "confidence": 99.0, "image_id": f"img-{i}", "external_image_id": who,
         "model_version": "1.1"} for i, who in enumerate(("alice", "bob"))])
    at = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)
    store.create_review(
        {"review_id": "r1", "org": OPERATOR_ORG, "principal": "p", "category": "law_enforcement",
         "operation": "SearchFacesByImage", "collection_id": "c", "request_id": "q",
         "member": "FaceMatches", "created_at": at, "expires_at": at + timedelta(hours=2)},
        [{"candidate": r.face_id, "similarity": 99.0,
          "match": {"Similarity": 99.0, "Face": {"FaceId": r.face_id}}} for r in rows])
    erase(store, Ledger.for_store(store), external_image_id="alice")
    left = [c["candidate"] for c in store.review("r1")["candidates"]]
    assert left == [rows[1].face_id]
