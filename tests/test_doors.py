"""No door around the gate: every similarity under policy over real HTTP (boto3 against
``candor serve``), a gateway that needs a gate, a package that exports no bare service."""

from __future__ import annotations

import pytest

pytest.importorskip("boto3")
from serve_helper import SAMPLES, client, photo, serve  # noqa: E402

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="test photos not found")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("doors")
    data = tmp / "data"
    with serve(data, tmp, "--policy", "moratorium-2020") as url:
        _, _, ops = client(url, data, "candor-ops", "general")
        ops.create_collection(CollectionId="people")
        for who in ("obama", "biden"):
            face = ops.index_faces(CollectionId="people", ExternalImageId=who,
                                   Image={"Bytes": photo(f"{who}/{who}.jpg")})
            ops.create_user(CollectionId="people", UserId=f"u-{who}")
            ops.associate_faces(CollectionId="people", UserId=f"u-{who}",
                                FaceIds=[face["FaceRecords"][0]["Face"]["FaceId"]])
        yield url, data


def test_police_cannot_identify_through_associate_faces(server):
    """Issue 11: a law_enforcement key, denied every search, indexed a probe photo and learned
    its similarity to each user from AssociateFaces' LOW_MATCH_CONFIDENCE answers."""
    url, data = server
    _, _, police = client(url, data, "metro-pd", "law_enforcement")
    with pytest.raises(police.exceptions.AccessDeniedException):
        police.search_users_by_image(CollectionId="people", Image={"Bytes": photo("obama/obama2.jpg")})
    probe = police.index_faces(CollectionId="people", ExternalImageId="probe",
                               Image={"Bytes": photo("obama/obama2.jpg")})
    probe_id = probe["FaceRecords"][0]["Face"]["FaceId"]
    for user in ("u-obama", "u-biden"):
        with pytest.raises(police.exceptions.AccessDeniedException, match="police-moratorium-2020"):
            police.associate_faces(CollectionId="people", UserId=user, FaceIds=[probe_id],
                                   UserMatchThreshold=100)


def test_child_safety_floor_applies_to_associate_faces(server):
    url, data = server
    _, _, thorn = client(url, data, "thorn", "child_safety")
    probe = thorn.index_faces(CollectionId="people", ExternalImageId="thorn-probe",
                              Image={"Bytes": photo("biden/biden2.jpg")})
    probe_id = probe["FaceRecords"][0]["Face"]["FaceId"]
    with pytest.raises(thorn.exceptions.AccessDeniedException, match="floor of 99"):
        thorn.associate_faces(CollectionId="people", UserId="u-biden", FaceIds=[probe_id])


def test_the_gateway_cannot_be_built_without_a_gate(tmp_path):
    from types import SimpleNamespace

    from candor.api.app import Gateway
    from candor.api.keys import KeyStore

    keys = KeyStore.open(tmp_path)
    with pytest.raises(TypeError):
        Gateway(SimpleNamespace(settings=None), keys, workers=1)
    with pytest.raises(TypeError, match="governance gate"):
        Gateway(SimpleNamespace(settings=None), keys, workers=1, gate=None)


def test_the_package_exports_no_bare_service(tmp_path):
    import candor
    from candor.governance.gate import BoundGate

    assert "Service" not in candor.__all__
    assert "connect" in candor.__all__
    rek = candor.connect(tmp_path / "data", org="thorn", category="child_safety",
                         policy="moratorium-2020")
    assert isinstance(rek, BoundGate)
    assert rek.principal.org == "thorn" and rek.principal.category == "child_safety"
    rek.call("CreateCollection", {"CollectionId": "c"})
    with pytest.raises(candor.CandorError, match="floor of 99"):
        rek.call("SearchFaces", {"CollectionId": "c", "FaceId": "0" * 8 + "-0000-0000-0000-" + "0" * 12})
    assert isinstance(candor.default_service(), BoundGate)
