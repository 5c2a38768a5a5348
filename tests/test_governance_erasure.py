"""Erasure and retention: the person's faces are gone from every search, with a receipt.

On SQLite and on PostgreSQL (``database_url``, tests/postgres_helper.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import select, update

from candor.config import OPERATOR_ORG
from candor.errors import InvalidParameter
from candor.governance.erasure import erase, purge, retention, set_retention
from candor.governance.ledger import Ledger
from candor.service import Service
from candor.store import open_store
from candor.store.schema import faces as T_faces
from candor.store.vectors import DIM

RNG = np.random.default_rng(7)

pytestmark = pytest.mark.usefixtures("database_url")


def unit(v):
    return (v / np.linalg.norm(v)).astype(np.float32)


def person():
    """A base vector and a way to draw faces of the same person (small perturbations)."""
    base = RNG.normal(size=DIM)
    return lambda: unit(base + RNG.normal(scale=0.05, size=DIM))


def face(embedding, external_image_id):
    return {"embedding": embedding, "bbox": {"Width": .3, "Height": .3, "Left": .1, "Top": .1},
            "confidence": 99.9, "image_id": "img", "external_image_id": external_image_id,
            "model_version": "1.0", "image_sha256": None}


@pytest.fixture()
def world(tmp_path, database_url):
    """Two collections; alice in both (one of hers linked to user 'u-alice'), bob in one."""
    store = open_store(tmp_path / "data", database_url)
    alice, bob = person(), person()
    ids = {}
    for coll in ("airport", "office"):
        store.create_collection(coll, "1.0")
        rows = store.add_faces(coll, [face(alice(), "alice"), face(alice(), "alice"),
                                      face(bob(), "bob")])
        ids[coll] = [r.face_id for r in rows]
    with store.write() as conn:
        coll = store.collection("office", conn, org=OPERATOR_ORG)
        store.create_user(conn, coll.id, "u-alice")
        user = store.user(coll.id, "u-alice", conn)
        keys = conn.execute(select(T_faces.c.id).where(
            T_faces.c.face_id.in_(ids["office"][:1] + ids["office"][2:]))).scalars().all()
        store.set_user_faces(conn, coll.id, user.id, add=list(keys), remove=[])
    svc = Service(data_dir=tmp_path / "data")
    return store, Ledger.for_store(store), svc, ids


def search(svc, coll, face_id):
    resp = svc.call("SearchFaces", {"CollectionId": coll, "FaceId": face_id,
                                    "FaceMatchThreshold": 0})
    return {m["Face"]["FaceId"] for m in resp["FaceMatches"]}


def test_erase_by_external_image_id_everywhere(world):
    store, ledger, svc, ids = world
    bob_airport = ids["airport"][2]
    assert set(ids["airport"][:2]) <= search(svc, "airport", bob_airport)  # before: found

    receipt = erase(store, ledger, external_image_id="alice")
    assert receipt.face_count == 4
    assert sorted(receipt.faces) == ["airport", "office"]
    for coll in ("airport", "office"):
        assert search(svc, coll, ids[coll][2]) == set()  # only bob is left, nothing matches him
        listed = svc.call("ListFaces", {"CollectionId": coll})["Faces"]
        assert [f["FaceId"] for f in listed] == [ids[coll][2]]
    # the user keeps only bob's face and a mean embedding made from it alone
    users = svc.call("ListUsers", {"CollectionId": "office"})["Users"]
    assert users == [{"UserId": "u-alice", "UserStatus": "ACTIVE"}]
    coll = store.collection("office", org=OPERATOR_ORG)
    with store.read() as conn:
        user = store.user(coll.id, "u-alice", conn)
    assert user.face_count == 1
    np.testing.assert_allclose(np.frombuffer(user.embedding, np.float32),
                               store.face_embedding(coll.id, ids["office"][2]), atol=1e-6)

    rec = ledger.tail(1)[0]
    assert rec["operation"] == "Erase" and rec["decision"] == "erasure"
    assert {m["FaceId"] for m in rec["matches"]} == set(ids["airport"][:2] + ids["office"][:2])
    assert rec["details"]["subject"] == "ExternalImageId"
    assert "alice" not in str(rec)  # the receipt does not keep the identifier
    assert receipt.to_dict()["LedgerSeq"] == rec["seq"]
    assert ledger.verify().ok


def test_erase_by_user_id_in_one_collection(world):
    store, ledger, svc, ids = world
    receipt = erase(store, ledger, user_id="u-alice", collection="office")
    assert receipt.faces == {"office": [ids["office"][0], ids["office"][2]]}
    assert receipt.users == {"office": ["u-alice"]}
    assert svc.call("ListUsers", {"CollectionId": "office"})["Users"] == []
    left = [f["FaceId"] for f in svc.call("ListFaces", {"CollectionId": "office"})["Faces"]]
    assert left == [ids["office"][1]]
    assert len(svc.call("ListFaces", {"CollectionId": "airport"})["Faces"]) == 3


def test_erase_needs_one_subject_and_records_even_when_nothing_found(world):
    store, ledger, _, _ = world
    with pytest.raises(InvalidParameter):
        erase(store, ledger)
    with pytest.raises(InvalidParameter):
        erase(store, ledger, external_image_id="a", user_id="b")
    receipt = erase(store, ledger, external_image_id="nobody")
    assert receipt.face_count == 0 and ledger.tail(1)[0]["faces_found"] == 0


def test_retention_purge(world):
    store, ledger, svc, ids = world
    with pytest.raises(InvalidParameter):
        set_retention(store, ledger, "airport", 0)
    set_retention(store, ledger, "airport", 30)
    assert retention(store) == {"airport": 30}
    old = datetime.now(timezone.utc) - timedelta(days=31)
    with store.write() as conn:
        conn.execute(update(T_faces).where(T_faces.c.face_id == ids["airport"][0])
                     .values(created_at=old))
    assert purge(store, ledger, now=datetime.now(timezone.utc) - timedelta(days=40)) == []
    (receipt,) = purge(store, ledger)
    assert receipt.faces == {"airport": [ids["airport"][0]]}
    left = {f["FaceId"] for f in svc.call("ListFaces", {"CollectionId": "airport"})["Faces"]}
    assert left == set(ids["airport"][1:])
    assert len(svc.call("ListFaces", {"CollectionId": "office"})["Faces"]) == 3
    rec = ledger.tail(1)[0]
    assert (rec["operation"], rec["decision"], rec["details"]["retention_days"]) == \
        ("Purge", "purge", 30)
    assert ledger.verify().ok
