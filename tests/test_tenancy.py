"""Tenancy in-process: two organisations on one data dir, each through its own governed
service (the Python door), and the operator who sees all and is recorded doing so.

A collection belongs to the organisation that created it; another organisation gets what AWS
gives across accounts (ResourceNotFoundException, as for a missing collection), and may hold
a collection of the same id.

The module runs on SQLite and on PostgreSQL (``store_backend``: one database for the module,
named by CANDOR_DATABASE_URL, which the services read).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from old_schema import strip_tenancy

from candor.config import OPERATOR_ORG
from candor.errors import InvalidParameter, ResourceNotFound
from candor.governance.erasure import erase
from candor.governance.gate import governed
from candor.governance.ledger import Ledger
from candor.governance.principal import Principal
from candor.service import Service
from candor.store import Store

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CANDOR_TEST_DATA", ROOT / ".." / "shared" / "data" / "faces")).resolve()
SAMPLES = DATA / "samples" / "identities"

pytestmark = pytest.mark.usefixtures("store_backend")


def open_store(data: Path) -> Store:
    """The store the services of this test use (the module's database)."""
    return Store(data, url=os.environ.get("CANDOR_DATABASE_URL"))


def photo(rel: str) -> bytes:
    return (SAMPLES / rel).read_bytes()


def as_org(data: Path, org: str):
    return governed(Service(data_dir=data), principal=Principal.local(org))


@pytest.fixture(scope="module")
def tenants(tmp_path_factory, store_backend):
    """acme owns ``kids`` (one face, one user with it); globex has nothing yet."""
    if not SAMPLES.is_dir():
        pytest.skip(f"test photos not found at {DATA}")
    data = tmp_path_factory.mktemp("tenancy") / "data"
    acme, globex = as_org(data, "acme"), as_org(data, "globex")
    acme.call("CreateCollection", {"CollectionId": "kids"})
    face = acme.call("IndexFaces", {"CollectionId": "kids", "ExternalImageId": "obama",
                                    "Image": {"Bytes": photo("obama/obama.jpg")}})
    face_id = face["FaceRecords"][0]["Face"]["FaceId"]
    acme.call("CreateUser", {"CollectionId": "kids", "UserId": "u1",
                             "ClientRequestToken": "token-0001"})
    acme.call("AssociateFaces", {"CollectionId": "kids", "UserId": "u1", "FaceIds": [face_id]})
    return data, acme, globex, face_id


def collection_calls(face_id: str, image: bytes) -> dict[str, dict]:
    """Every operation that names a collection, with a request valid against acme's ``kids``."""
    c = {"CollectionId": "kids"}
    img = {"Image": {"Bytes": image}}
    return {
        "DescribeCollection": c,
        "ListFaces": c,
        "IndexFaces": {**c, **img},
        "DeleteFaces": {**c, "FaceIds": [face_id]},
        "SearchFaces": {**c, "FaceId": face_id},
        "SearchFacesByImage": {**c, **img},
        "CreateUser": {**c, "UserId": "intruder"},
        "ListUsers": c,
        "DeleteUser": {**c, "UserId": "u1"},
        "AssociateFaces": {**c, "UserId": "u1", "FaceIds": [face_id]},
        "DisassociateFaces": {**c, "UserId": "u1", "FaceIds": [face_id]},
        "SearchUsers": {**c, "UserId": "u1"},
        "SearchUsersByImage": {**c, **img},
        "DeleteCollection": c,
    }


def test_another_org_gets_resource_not_found_on_every_collection_operation(tenants):
    data, acme, globex, face_id = tenants
    for name, params in collection_calls(face_id, photo("obama/obama2.jpg")).items():
        with pytest.raises(ResourceNotFound) as info:
            globex.call(name, params)
        assert str(info.value) == "The collection id: kids does not exist", name
    assert "kids" not in globex.call("ListCollections", {})["CollectionIds"]
    # nothing of acme's was touched
    assert [f["FaceId"] for f in acme.call("ListFaces", {"CollectionId": "kids"})["Faces"]] \
        == [face_id]
    assert acme.call("ListUsers", {"CollectionId": "kids"})["Users"] == [
        {"UserId": "u1", "UserStatus": "ACTIVE"}]
    assert acme.call("ListCollections", {})["CollectionIds"] == ["kids"]


def test_the_same_id_in_two_orgs_are_two_collections(tenants):
    data, acme, globex, face_id = tenants
    created = globex.call("CreateCollection", {"CollectionId": "kids"})
    assert created["CollectionArn"] == "aws:rekognition:candor:globex:collection/kids"
    assert acme.call("DescribeCollection", {"CollectionId": "kids"})["CollectionARN"] \
        == "aws:rekognition:candor:acme:collection/kids"
    assert globex.call("DescribeCollection", {"CollectionId": "kids"})["FaceCount"] == 0
    assert globex.call("ListFaces", {"CollectionId": "kids"})["Faces"] == []
    # an idempotency token acme used is new to globex's collection of the same id
    globex.call("CreateUser", {"CollectionId": "kids", "UserId": "g1",
                               "ClientRequestToken": "token-0001"})
    assert globex.call("ListUsers", {"CollectionId": "kids"})["Users"] == [
        {"UserId": "g1", "UserStatus": "CREATED"}]
    assert [u["UserId"] for u in acme.call("ListUsers", {"CollectionId": "kids"})["Users"]] \
        == ["u1"]
    # globex's search does not reach acme's face
    found = globex.call("SearchFacesByImage", {"CollectionId": "kids",
                                               "Image": {"Bytes": photo("obama/obama2.jpg")}})
    assert found["FaceMatches"] == []

    # the operator sees both (one entry per owner); a name two orgs hold is ambiguous to it
    operator = as_org(data, OPERATOR_ORG)
    listed = operator.call("ListCollections", {})
    assert listed["CollectionIds"].count("kids") == 2
    with pytest.raises(InvalidParameter, match="--as ORG"):
        operator.call("DescribeCollection", {"CollectionId": "kids"})
    # in-process calls without a caller act as the operator too
    assert Service(data_dir=data).call("ListCollections", {})["CollectionIds"].count("kids") == 2


def test_operator_reaches_another_orgs_collection_and_it_is_recorded(tenants):
    data, acme, globex, face_id = tenants
    acme.call("CreateCollection", {"CollectionId": "acme-only"})
    operator = as_org(data, OPERATOR_ORG)
    got = operator.call("DescribeCollection", {"CollectionId": "acme-only"})
    assert got["CollectionARN"] == "aws:rekognition:candor:acme:collection/acme-only"
    operator.call("DeleteCollection", {"CollectionId": "acme-only"})
    with pytest.raises(ResourceNotFound):
        acme.call("DescribeCollection", {"CollectionId": "acme-only"})

    ledger = Ledger.for_store(open_store(data))
    crossed = [(r["operation"], r["decision"], r["org"], (r["details"] or {}).get("owner_org"))
               for r in ledger.iter_records() if r["collection"] == "acme-only"
               and r["org"] == OPERATOR_ORG]
    assert crossed == [("DescribeCollection", "allow", OPERATOR_ORG, "acme"),
                       ("DeleteCollection", "allow", OPERATOR_ORG, "acme")]
    # an org's own calls carry no owner_org
    own = [r for r in ledger.iter_records() if r["org"] == "acme"]
    assert own and all("owner_org" not in (r["details"] or {}) for r in own)


def test_erasure_by_an_org_spans_its_own_collections_and_by_the_operator_all(tmp_path):
    if not SAMPLES.is_dir():
        pytest.skip(f"test photos not found at {DATA}")
    data = tmp_path / "data"
    acme, globex = as_org(data, "acme"), as_org(data, "globex")
    for svc in (acme, globex):
        svc.call("CreateCollection", {"CollectionId": "staff"})
        svc.call("IndexFaces", {"CollectionId": "staff", "ExternalImageId": "person-1",
                                "Image": {"Bytes": photo("obama/obama.jpg")}})
    store = open_store(data)
    ledger = Ledger.for_store(store)
    receipt = erase(store, ledger, external_image_id="person-1",
                    principal=Principal.local("globex"))
    assert list(receipt.faces) == ["globex/staff"]
    assert "owner_orgs" not in receipt.record["details"]
    assert len(acme.call("ListFaces", {"CollectionId": "staff"})["Faces"]) == 1
    assert globex.call("ListFaces", {"CollectionId": "staff"})["Faces"] == []

    globex.call("IndexFaces", {"CollectionId": "staff", "ExternalImageId": "person-1",
                               "Image": {"Bytes": photo("obama/obama.jpg")}})
    receipt = erase(store, ledger, external_image_id="person-1",
                    principal=Principal.local(OPERATOR_ORG))
    assert sorted(receipt.faces) == ["acme/staff", "globex/staff"]
    assert receipt.record["details"]["owner_orgs"] == ["acme", "globex"]  # recorded
    assert acme.call("ListFaces", {"CollectionId": "staff"})["Faces"] == []
    assert globex.call("ListFaces", {"CollectionId": "staff"})["Faces"] == []


def _downgrade_to_v2(db: Path) -> None:
    """Make ``db`` what schema version 2 left: before tenancy, and no ``alembic_version``
    (version 2 predates Alembic: ``schema_migrations`` says where it is)."""
    strip_tenancy(db, "DELETE FROM schema_migrations WHERE version >= 3; DROP TABLE alembic_version;")


def test_a_data_dir_from_before_tenancy_migrates_to_the_operator(tmp_path, store_backend):
    if store_backend != "sqlite":
        pytest.skip("a SQLite data dir from schema version 2")
    data = tmp_path / "data"
    store = Store(data)
    row = store.create_collection("legacy", "1.0")
    store.add_faces("legacy", [{"embedding": [1.0] + [0.0] * 127, "image_id": "i",
                                "bbox": {"Width": .5, "Height": .5, "Left": 0, "Top": 0},
                                "confidence": 99.0, "model_version": "1.0"}])
    with store.write() as conn:
        store.remember_response(conn, "legacy", "CreateUser", "tok", "h", {})
    gone = store.create_collection("gone", "1.0")
    store.delete_collection("gone")
    store.close()
    _downgrade_to_v2(data / "candor.db")

    upgraded = Store(data)  # a new process on the old data dir
    assert upgraded.schema_version >= 3
    coll = upgraded.collections_named("legacy")
    assert [(c.owner_org, c.id) for c in coll] == [(OPERATOR_ORG, row.id)]
    assert upgraded.integrity_check() == "ok"
    with upgraded.read() as conn:
        assert upgraded.idempotent_response(conn, "legacy", "CreateUser", "tok", "h",
                                            org=OPERATOR_ORG) == {}
        faces = conn.exec_driver_sql("SELECT collection_pk FROM faces").scalars().all()
    assert faces == [row.id]  # the faces kept their collection (no cascade on the rebuild)
    # another org may now create its own ``legacy``
    upgraded.create_collection("legacy", "1.0", org="acme")
    assert {c.owner_org for c in upgraded.collections_named("legacy")} == {OPERATOR_ORG, "acme"}
    # the AUTOINCREMENT counter survives the rebuild: a deleted collection's key is not reused
    assert upgraded.collection("legacy", org="acme").id > gone.id


def test_an_org_name_that_would_make_arns_ambiguous_is_refused(tmp_path):
    from candor.api.keys import KeyStore

    keys = KeyStore.open(tmp_path / "data")
    for org in ("a:b", "a/b", "a\nb"):
        with pytest.raises(InvalidParameter, match="must not contain"):
            keys.create(org, "general")
    assert keys.create("City Library", "general")[0].org == "City Library"
