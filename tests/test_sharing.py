"""Sharing a collection with another organisation: only by an explicit rule of the policy in
force (``shares:``), only for the operations it names (by default the ones that change
nothing), and recorded: every use through a share carries the owner and the share's id, and
the policy that grants it is recorded when a server starts under it or reloads it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from postgres_helper import store_url

from candor.errors import PolicyError, ResourceNotFound
from candor.governance.gate import Gate, governed
from candor.governance.ledger import Ledger
from candor.governance.policy import parse_policy
from candor.governance.principal import Principal
from candor.service import Service
from candor.store import open_store

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CANDOR_TEST_DATA", ROOT / ".." / "shared" / "data" / "faces")).resolve()
SAMPLES = DATA / "samples" / "identities"

SHARED = """
version: 1
name: shared-missing-children
default: allow
shares:
  - id: ncmec-to-thorn
    description: Thorn searches NCMEC's collection of missing children
    owner: ncmec
    collection: missing-*
    with: [thorn]
"""


def photo(rel: str) -> bytes:
    return (SAMPLES / rel).read_bytes()


def as_org(data: Path, org: str, policy=None, category: str = "general"):
    return governed(Service(data_dir=data), principal=Principal.local(org, category),
                    policy=policy)


@pytest.fixture()
def world(tmp_path):
    """ncmec owns ``missing-2020`` with Obama's face in it."""
    if not SAMPLES.is_dir():
        pytest.skip(f"test photos not found at {DATA}")
    data = tmp_path / "data"
    policy = parse_policy(SHARED, "shared.yaml")
    ncmec = as_org(data, "ncmec", policy)
    ncmec.call("CreateCollection", {"CollectionId": "missing-2020"})
    ncmec.call("IndexFaces", {"CollectionId": "missing-2020", "ExternalImageId": "obama",
                              "Image": {"Bytes": photo("obama/obama.jpg")}})
    return data, policy


def test_a_share_lets_the_named_organisation_search_and_is_recorded(world):
    data, policy = world
    thorn = as_org(data, "thorn", policy, "child_safety")
    found = thorn.call("SearchFacesByImage", {"CollectionId": "missing-2020",
                                              "Image": {"Bytes": photo("obama/obama2.jpg")},
                                              "FaceMatchThreshold": 90})
    assert [m["Face"]["ExternalImageId"] for m in found["FaceMatches"]] == ["obama"]
    record = Ledger.for_store(open_store(data, store_url())).tail(1)[0]
    assert (record["org"], record["operation"], record["decision"]) == \
        ("thorn", "SearchFacesByImage", "allow")
    assert record["details"]["owner_org"] == "ncmec"
    assert record["details"]["share"] == "ncmec-to-thorn"


def test_a_share_does_not_reach_other_operations_organisations_or_collections(world):
    data, policy = world
    thorn = as_org(data, "thorn", policy, "child_safety")
    with pytest.raises(ResourceNotFound):  # changes the collection: not shared by default
        thorn.call("IndexFaces", {"CollectionId": "missing-2020",
                                  "Image": {"Bytes": photo("biden/biden.jpg")}})
    with pytest.raises(ResourceNotFound):
        thorn.call("DeleteCollection", {"CollectionId": "missing-2020"})
    acme = as_org(data, "acme", policy)
    with pytest.raises(ResourceNotFound):  # not named by the share
        acme.call("DescribeCollection", {"CollectionId": "missing-2020"})
    ncmec = as_org(data, "ncmec", policy)
    ncmec.call("CreateCollection", {"CollectionId": "staff"})
    with pytest.raises(ResourceNotFound):  # the share names missing-*, not every collection
        thorn.call("DescribeCollection", {"CollectionId": "staff"})
    assert "missing-2020" not in thorn.call("ListCollections", {})["CollectionIds"]


def test_without_the_share_the_collection_is_invisible(world):
    data, _ = world
    thorn = as_org(data, "thorn", None, "child_safety")  # the shipped open policy: no shares
    with pytest.raises(ResourceNotFound, match="does not exist"):
        thorn.call("SearchFacesByImage", {"CollectionId": "missing-2020",
                                          "Image": {"Bytes": photo("obama/obama2.jpg")}})


def test_a_share_can_name_its_operations(world):
    data, _ = world
    policy = parse_policy(SHARED + "    operations: [DescribeCollection]\n", "shared.yaml")
    thorn = as_org(data, "thorn", policy, "child_safety")
    assert thorn.call("DescribeCollection", {"CollectionId": "missing-2020"})["FaceCount"] == 1
    with pytest.raises(ResourceNotFound):
        thorn.call("ListFaces", {"CollectionId": "missing-2020"})


def test_the_policy_in_force_and_its_shares_are_recorded_at_start(world):
    data, policy = world
    gate = Gate.for_service(Service(data_dir=data), policy)
    gate.record_policy_in_force()
    record = gate.ledger.tail(1)[0]
    assert record["operation"] == "ReloadPolicy" and record["details"]["sha256"] == policy.sha256
    assert record["details"]["shares"][0]["id"] == "ncmec-to-thorn"
    assert record["details"]["shares"][0]["with"] == ["thorn"]


@pytest.mark.parametrize(("text", "problem"), [
    ("    operations: [Serch*]\n", "matches no operation"),
    ("  - id: x\n    owner: ncmec\n    collection: c\n", "every share needs 'with'"),
    ("  - id: ncmec-to-thorn\n    owner: a\n    collection: c\n    with: [b]\n", "duplicate share id"),
    ("  - id: y\n    owner: a\n    collection: c\n    with: [a]\n", "needs no share with itself"),
])
def test_bad_shares_are_refused_with_their_line(text, problem):
    with pytest.raises(PolicyError, match=problem) as err:
        parse_policy(SHARED + text, "shared.yaml")
    assert "shared.yaml:" in str(err.value)
