"""Collections, faces, users and search on real photos, real models, a real store.

The module fixture indexes ``samples/identities`` with ``candor index`` in a separate process
(ExternalImageId = folder name), leaving one photo out for each person with two or more; the
tests then query that data dir in this process and in new ``candor`` processes. The module runs
on SQLite and on PostgreSQL (``store_backend``, tests/postgres_helper.py: CANDOR_DATABASE_URL
names the module's database, for this process and the ``candor`` ones).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from candor.errors import (
    CandorError,
    ConflictError,
    IdempotentParameterMismatch,
    InvalidPaginationToken,
    InvalidParameter,
    ResourceNotFound,
    ServiceQuotaExceeded,
)
from candor.service import Service

REASONS = {"EXCEEDS_MAX_FACES", "EXTREME_POSE", "LOW_BRIGHTNESS", "LOW_SHARPNESS",
           "LOW_CONFIDENCE", "SMALL_BOUNDING_BOX", "LOW_FACE_QUALITY"}


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def run_cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CANDOR_DATA_DIR": str(home), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "candor.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"candor {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def image(path: Path) -> dict:
    return {"Bytes": path.read_bytes()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, samples, store_backend):
    home = tmp_path_factory.mktemp("candor-collections")
    held_out: dict[str, Path] = {}
    to_index: list[Path] = []
    for person in sorted(p for p in (samples / "identities").iterdir() if p.is_dir()):
        files = photos(person)
        if len(files) >= 2:
            held_out[person.name] = files[0]
            to_index += files[1:]
        else:
            to_index += files
    proc = run_cli(home, "index", "main", *map(str, to_index), "--create", "--json")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    service = Service(home)
    return SimpleNamespace(home=home, held_out=held_out, indexed=to_index, lines=lines,
                           service=service, samples=samples)


@pytest.fixture(scope="module")
def blank_png(tmp_path_factory) -> Path:
    """A valid 200x200 photo with no face in it."""
    from PIL import Image

    path = tmp_path_factory.mktemp("blank") / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(path)
    return path


def test_index_reports_every_photo_with_folder_external_ids(world):
    assert [line["Image"] for line in world.lines] == [str(p) for p in world.indexed]
    total = 0
    for line, path in zip(world.lines, world.indexed, strict=True):
        assert "Error" not in line, line
        assert line["FaceModelVersion"]
        for record in line["FaceRecords"]:
            assert record["Face"]["ExternalImageId"] == path.parent.name
            assert set(record["FaceDetail"]) >= {"BoundingBox", "Confidence"}
        for face in line["UnindexedFaces"]:
            assert set(face["Reasons"]) <= REASONS
        total += len(line["FaceRecords"])
    described = world.service.call("DescribeCollection", {"CollectionId": "main"})
    assert described["FaceCount"] == total >= len(world.indexed) - 3
    assert described["UserCount"] == 0
    assert described["CollectionARN"].endswith("collection/main")


def test_every_left_out_photo_finds_its_own_person_first(world):
    assert len(world.held_out) >= 15
    wrong = {}
    for person, path in world.held_out.items():
        result = world.service.call("SearchFacesByImage", {
            "CollectionId": "main", "Image": image(path), "FaceMatchThreshold": 0, "MaxFaces": 3})
        top = result["FaceMatches"][0]
        if top["Face"]["ExternalImageId"] != person:
            wrong[person] = top["Face"]["ExternalImageId"]
        assert result["FaceMatches"] == sorted(result["FaceMatches"],
                                               key=lambda m: -m["Similarity"])
        assert 0 < result["SearchedFaceBoundingBox"]["Width"] <= 1
    assert not wrong, wrong


def test_new_process_sees_identical_collection_faces_and_search(world):
    svc = world.service
    probe = world.held_out["obama"]
    obama = [f["FaceId"] for f in svc.call("ListFaces", {"CollectionId": "main"})["Faces"]
             if f.get("ExternalImageId") == "obama"]
    svc.call("CreateUser", {"CollectionId": "main", "UserId": "restart"})
    svc.call("AssociateFaces", {"CollectionId": "main", "UserId": "restart", "FaceIds": obama})
    users = svc.call("ListUsers", {"CollectionId": "main"})
    user_hits = svc.call("SearchUsersByImage", {"CollectionId": "main", "Image": image(probe)})
    assert user_hits["UserMatches"][0]["User"]["UserId"] == "restart"
    described = svc.call("DescribeCollection", {"CollectionId": "main"})
    faces = svc.call("ListFaces", {"CollectionId": "main", "MaxResults": 4096})
    found = svc.call("SearchFacesByImage", {"CollectionId": "main", "Image": image(probe)})
    assert found["FaceMatches"], "the probe must match something for this test to mean anything"

    cli_described = json.loads(run_cli(world.home, "collection", "describe", "main",
                                       "--json").stdout)
    cli_faces = json.loads(run_cli(world.home, "faces", "list", "main", "--max-results", "4096",
                                   "--json").stdout)
    cli_found = json.loads(run_cli(world.home, "search", "main", str(probe), "--json").stdout)
    cli_listed = json.loads(run_cli(world.home, "collection", "list", "--json").stdout)
    cli_users = json.loads(run_cli(world.home, "user", "list", "main", "--json").stdout)
    cli_user_hits = json.loads(run_cli(world.home, "user", "search", "main", str(probe),
                                       "--json").stdout)
    assert cli_described == described and described["UserCount"] == 1
    assert cli_faces == faces
    assert "main" in cli_listed["CollectionIds"]
    assert cli_users == users

    def rounded(response, key="FaceMatches", item="Face", name="FaceId"):
        return [(m[item][name], round(m["Similarity"], 3)) for m in response[key]]

    assert rounded(cli_found) == rounded(found)
    assert (rounded(cli_user_hits, "UserMatches", "User", "UserId")
            == rounded(user_hits, "UserMatches", "User", "UserId"))
    svc.call("DeleteUser", {"CollectionId": "main", "UserId": "restart"})


def test_list_faces_pages_cover_every_face_once(world):
    svc = world.service
    everything = svc.call("ListFaces", {"CollectionId": "main", "MaxResults": 4096})
    assert "NextToken" not in everything
    seen, token, pages = [], None, 0
    while True:
        params = {"CollectionId": "main", "MaxResults": 7}
        if token:
            params["NextToken"] = token
        page = svc.call("ListFaces", params)
        assert len(page["Faces"]) <= 7
        seen += [f["FaceId"] for f in page["Faces"]]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert pages > 3
    assert len(seen) == len(set(seen))
    assert seen == [f["FaceId"] for f in everything["Faces"]]

    good = svc.call("ListFaces", {"CollectionId": "main", "MaxResults": 7})["NextToken"]
    payload, mac = good.rsplit(".", 1)
    for forged in (payload + "." + "0" * len(mac), "eyJhIjogMX0=.abc", "x" * 40):
        with pytest.raises(InvalidPaginationToken):
            svc.call("ListFaces", {"CollectionId": "main", "NextToken": forged})
    # a real token does not carry over to a different filter
    some = [f["FaceId"] for f in everything["Faces"][:3]]
    with pytest.raises(InvalidPaginationToken):
        svc.call("ListFaces", {"CollectionId": "main", "FaceIds": some, "NextToken": good})
    filtered = svc.call("ListFaces", {"CollectionId": "main", "FaceIds": some})
    assert [f["FaceId"] for f in filtered["Faces"]] == some


def test_index_faces_max_faces_and_quality_reasons(world):
    svc = world.service
    svc.call("CreateCollection", {"CollectionId": "groups"})
    group = world.samples / "groups" / "obama_and_biden.jpg"
    result = svc.call("IndexFaces", {"CollectionId": "groups", "Image": image(group),
                                     "MaxFaces": 1, "ExternalImageId": "group:1"})
    assert len(result["FaceRecords"]) == 1
    assert len(result["UnindexedFaces"]) >= 2
    assert all(u["Reasons"] == ["EXCEEDS_MAX_FACES"] for u in result["UnindexedFaces"])
    kept = result["FaceRecords"][0]["FaceDetail"]["BoundingBox"]
    assert all(kept["Width"] * kept["Height"] >= u["FaceDetail"]["BoundingBox"]["Width"]
               * u["FaceDetail"]["BoundingBox"]["Height"] for u in result["UnindexedFaces"])
    strict = svc.call("IndexFaces", {"CollectionId": "groups", "QualityFilter": "HIGH",
                                     "Image": image(world.samples / "groups" /
                                                    "selfie-many-people.jpg")})
    for face in strict["UnindexedFaces"]:
        assert face["Reasons"] and set(face["Reasons"]) <= REASONS
    none = svc.call("IndexFaces", {"CollectionId": "groups", "QualityFilter": "NONE",
                                   "Image": image(world.samples / "groups" /
                                                  "selfie-many-people.jpg")})
    assert not none["UnindexedFaces"]
    assert len(none["FaceRecords"]) >= len(strict["FaceRecords"])
    svc.call("DeleteCollection", {"CollectionId": "groups"})


def test_users_lifecycle_and_search(world):
    svc = world.service
    ident = world.samples / "identities"
    svc.call("CreateCollection", {"CollectionId": "people"})
    ids: dict[str, list[str]] = {}
    for person, n in (("person_01", 4), ("person_02", 3)):
        for path in photos(ident / person)[1:1 + n]:
            out = svc.call("IndexFaces", {"CollectionId": "people", "Image": image(path),
                                          "ExternalImageId": person, "MaxFaces": 1})
            ids.setdefault(person, []).extend(r["Face"]["FaceId"] for r in out["FaceRecords"])
    p1, p2 = ids["person_01"], ids["person_02"]

    base = {"CollectionId": "people", "UserId": "alice"}
    assert svc.call("CreateUser", {**base, "ClientRequestToken": "tok-1"}) == {}
    assert svc.call("CreateUser", {**base, "ClientRequestToken": "tok-1"}) == {}  # a retry
    with pytest.raises(IdempotentParameterMismatch):
        svc.call("CreateUser", {**base, "UserId": "mallory", "ClientRequestToken": "tok-1"})
    with pytest.raises(ConflictError):
        svc.call("CreateUser", base)
    assert svc.call("ListUsers", {"CollectionId": "people"})["Users"] == [
        {"UserId": "alice", "UserStatus": "CREATED"}]

    done = svc.call("AssociateFaces", {**base, "FaceIds": p1})
    assert [f["FaceId"] for f in done["AssociatedFaces"]] == p1
    assert done["UserStatus"] == "ACTIVE" and not done["UnsuccessfulFaceAssociations"]
    again = svc.call("AssociateFaces", {**base, "FaceIds": p1[:1]})
    assert again["AssociatedFaces"] == [] and again["UnsuccessfulFaceAssociations"] == []

    other = svc.call("AssociateFaces", {**base, "FaceIds": [p2[0]]})
    assert other["UnsuccessfulFaceAssociations"][0]["Reasons"] == ["LOW_MATCH_CONFIDENCE"]
    svc.call("CreateUser", {"CollectionId": "people", "UserId": "bob"})
    nobody = "00000000-0000-0000-0000-000000000000"
    bob = svc.call("AssociateFaces", {"CollectionId": "people", "UserId": "bob",
                                      "FaceIds": [*p2, p1[0], nobody]})
    assert [f["FaceId"] for f in bob["AssociatedFaces"]] == p2
    reasons = {f["FaceId"]: f["Reasons"] for f in bob["UnsuccessfulFaceAssociations"]}
    assert reasons == {p1[0]: ["ASSOCIATED_TO_A_DIFFERENT_USER"],
                       nobody: ["FACE_NOT_FOUND"]}

    listed = svc.call("ListFaces", {"CollectionId": "people", "UserId": "alice"})
    assert sorted(f["FaceId"] for f in listed["Faces"]) == sorted(p1)
    assert all(f["UserId"] == "alice" for f in listed["Faces"])

    probe = image(photos(ident / "person_01")[0])  # not indexed
    by_image = svc.call("SearchUsersByImage", {"CollectionId": "people", "Image": probe})
    assert by_image["UserMatches"][0]["User"] == {"UserId": "alice", "UserStatus": "ACTIVE"}
    assert "bob" not in [m["User"]["UserId"] for m in by_image["UserMatches"]]
    assert "FaceDetail" in by_image["SearchedFace"]
    by_face = svc.call("SearchUsers", {"CollectionId": "people", "FaceId": p2[0]})
    assert by_face["UserMatches"][0]["User"]["UserId"] == "bob"
    assert by_face["SearchedFace"] == {"FaceId": p2[0]}
    by_user = svc.call("SearchUsers", {"CollectionId": "people", "UserId": "alice",
                                       "UserMatchThreshold": 0})
    assert [m["User"]["UserId"] for m in by_user["UserMatches"]] == ["bob"]

    refused = svc.call("DeleteFaces", {"CollectionId": "people", "FaceIds": [p1[0]]})
    assert refused["DeletedFaces"] == []
    assert refused["UnsuccessfulFaceDeletions"] == [
        {"FaceId": p1[0], "UserId": "alice", "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]}]
    gone = svc.call("DisassociateFaces", {**base, "FaceIds": [p1[0]]})
    assert gone["DisassociatedFaces"] == [{"FaceId": p1[0]}]
    assert svc.call("DeleteFaces", {"CollectionId": "people",
                                    "FaceIds": [p1[0]]})["DeletedFaces"] == [p1[0]]

    # DeleteUser: gone from user search at once; its faces stay, unassociated
    svc.call("DeleteUser", base)
    after = svc.call("SearchUsersByImage", {"CollectionId": "people", "Image": probe,
                                            "UserMatchThreshold": 0})
    assert "alice" not in [m["User"]["UserId"] for m in after["UserMatches"]]
    faces = svc.call("ListFaces", {"CollectionId": "people", "FaceIds": p1[1:]})["Faces"]
    assert len(faces) == len(p1) - 1 and not any("UserId" in f for f in faces)
    with pytest.raises(ResourceNotFound):
        svc.call("DeleteUser", base)
    svc.call("DeleteCollection", {"CollectionId": "people"})


def test_user_face_limit_is_a_quota(world):
    """At most 100 faces per user; the 101st is ServiceQuotaExceeded (stored vectors suffice)."""
    from candor.service.collections import store_of

    svc = world.service
    svc.call("CreateCollection", {"CollectionId": "quota"})
    v = np.random.default_rng(0).standard_normal((101, 128)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    box = {"Width": 0.5, "Height": 0.5, "Left": 0.1, "Top": 0.1}
    rows = store_of(svc).add_faces("quota", [
        {"embedding": x, "bbox": box, "confidence": 99.0, "image_id": "i", "model_version": "1.0"}
        for x in v])
    svc.call("CreateUser", {"CollectionId": "quota", "UserId": "u"})
    ids = [r.face_id for r in rows]
    ok = svc.call("AssociateFaces", {"CollectionId": "quota", "UserId": "u", "FaceIds": ids[:100],
                                     "UserMatchThreshold": 0})
    assert len(ok["AssociatedFaces"]) == 100
    with pytest.raises(ServiceQuotaExceeded):
        svc.call("AssociateFaces", {"CollectionId": "quota", "UserId": "u", "FaceIds": ids[100:],
                                    "UserMatchThreshold": 0})
    svc.call("DeleteCollection", {"CollectionId": "quota"})


def test_deletions_are_immediate_here_and_in_a_new_process(world):
    svc = world.service
    obama = photos(world.samples / "identities" / "obama")
    svc.call("CreateCollection", {"CollectionId": "del"})
    ids = []
    for path in obama[1:]:
        out = svc.call("IndexFaces", {"CollectionId": "del", "Image": image(path), "MaxFaces": 1})
        ids += [r["Face"]["FaceId"] for r in out["FaceRecords"]]
    probe = image(obama[0])

    def matched():
        res = svc.call("SearchFacesByImage", {"CollectionId": "del", "Image": probe})
        return [m["Face"]["FaceId"] for m in res["FaceMatches"]]

    assert set(matched()) == set(ids)
    svc.call("DeleteFaces", {"CollectionId": "del", "FaceIds": ids[:2]})
    assert set(matched()) == set(ids[2:])
    by_id = svc.call("SearchFaces", {"CollectionId": "del", "FaceId": ids[2]})
    assert {m["Face"]["FaceId"] for m in by_id["FaceMatches"]} == set(ids[3:])
    with pytest.raises(InvalidParameter):
        svc.call("SearchFaces", {"CollectionId": "del", "FaceId": ids[0]})
    cli = json.loads(run_cli(world.home, "search", "del", str(obama[0]), "--json").stdout)
    assert {m["Face"]["FaceId"] for m in cli["FaceMatches"]} == set(ids[2:])

    run_cli(world.home, "faces", "delete", "del", ids[2])  # another process deletes
    assert set(matched()) == set(ids[3:])
    svc.call("DeleteCollection", {"CollectionId": "del"})
    with pytest.raises(ResourceNotFound):
        svc.call("SearchFacesByImage", {"CollectionId": "del", "Image": probe})


def _error_cases(world, blank: Path):
    photo = world.held_out["obama"]
    return [
        ("DescribeCollection", {"CollectionId": "nope"}, ["collection", "describe", "nope"]),
        ("CreateCollection", {"CollectionId": "bad name!"}, ["collection", "create", "bad name!"]),
        ("SearchFacesByImage", {"CollectionId": "nope", "Image": image(photo)},
         ["search", "nope", str(photo)]),
        ("SearchFacesByImage", {"CollectionId": "main", "Image": image(photo), "MaxFaces": 5000},
         ["search", "main", str(photo), "--max-faces", "5000"]),
        ("SearchFacesByImage", {"CollectionId": "main", "Image": image(photo), "MaxFaces": 0},
         ["search", "main", str(photo), "--max-faces", "0"]),
        ("SearchFacesByImage", {"CollectionId": "main", "Image": image(blank)},
         ["search", "main", str(blank)]),
        ("ListFaces", {"CollectionId": "main", "NextToken": "forged.token"},
         ["faces", "list", "main", "--next-token", "forged.token"]),
        ("CreateUser", {"CollectionId": "main", "UserId": "bad user"},
         ["user", "create", "main", "bad user"]),
    ]


def test_bad_input_gives_the_same_typed_error_through_api_and_cli(world, blank_png):
    for name, params, argv in _error_cases(world, blank_png):
        with pytest.raises(CandorError) as caught:
            world.service.call(name, params)
        err = caught.value
        proc = run_cli(world.home, *argv, check=False)
        assert proc.returncode != 0, argv
        assert f"{err.code}: {err.message}" in proc.stderr, (argv, err.message, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_collection_of_another_face_model_is_not_mixed(world):
    """Embeddings of another model version are not comparable: index and search refuse."""
    from candor.service.collections import store_of

    svc = world.service
    store_of(svc).create_collection("old-model", "0.9")
    probe = image(world.held_out["obama"])
    for name in ("IndexFaces", "SearchFacesByImage", "SearchUsersByImage"):
        with pytest.raises(InvalidParameter, match="not comparable"):
            svc.call(name, {"CollectionId": "old-model", "Image": probe})
    svc.call("DeleteCollection", {"CollectionId": "old-model"})


def test_search_default_threshold_is_the_identification_threshold(world):
    """No FaceMatchThreshold: candor applies its identification threshold (85), not 80."""
    from candor.scoring.similarity import IDENTIFICATION_THRESHOLD

    assert IDENTIFICATION_THRESHOLD == 85.0
    everything = []
    for path in world.held_out.values():
        request = {"CollectionId": "main", "Image": image(path)}
        default = world.service.call("SearchFacesByImage", request)["FaceMatches"]
        everything += world.service.call("SearchFacesByImage",
                                         {**request, "FaceMatchThreshold": 0})["FaceMatches"]
        assert all(m["Similarity"] >= IDENTIFICATION_THRESHOLD for m in default)
    # the test means something only if some candidates fall between 80 and 85
    assert any(80 <= m["Similarity"] < IDENTIFICATION_THRESHOLD for m in everything)
