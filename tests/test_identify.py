"""SearchFacesInImage and ``candor identify``: every face of a group photo named against a
collection built from ``samples/identities`` (real models, real store, real CLI processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from candor.errors import InvalidParameter, ResourceNotFound
from candor.service import Service

GROUP = "groups/obama_and_biden.jpg"


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def run_cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CANDOR_DATA_DIR": str(home), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "candor.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"candor {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def world(tmp_path_factory, samples, store_backend):
    home = tmp_path_factory.mktemp("candor-identify")
    everyone = [p for person in sorted((samples / "identities").iterdir()) if person.is_dir()
                for p in photos(person)]
    run_cli(home, "index", "people", *map(str, everyone), "--create")
    return SimpleNamespace(home=home, samples=samples, service=Service(home))


def call(world, **params) -> dict:
    return world.service.call("SearchFacesInImage", {"CollectionId": "people", **params})


def group(world) -> dict:
    return {"Bytes": (world.samples / GROUP).read_bytes()}


def test_cli_names_obama_and_biden_and_the_girl_is_unknown(world):
    out = run_cli(world.home, "identify", "people", str(world.samples / GROUP)).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")]
    assert len(lines) == 3, out
    names = [line.split()[1] for line in lines]
    assert sorted(names[:2]) == ["biden", "obama"], out
    assert names[2] == "unknown", out  # the girl: the smallest face, no match


def test_json_is_the_operation_response_and_faces_come_largest_first(world):
    out = json.loads(run_cli(world.home, "identify", "people", str(world.samples / GROUP),
                             "--json").stdout)
    assert set(out) == {"SearchedFaces", "UnsearchedFaces", "FaceModelVersion"}
    faces = out["SearchedFaces"]
    areas = [f["FaceDetail"]["BoundingBox"]["Width"] * f["FaceDetail"]["BoundingBox"]["Height"]
             for f in faces]
    assert areas == sorted(areas, reverse=True)
    best = [f["FaceMatches"][0]["Face"]["ExternalImageId"] if f["FaceMatches"] else None
            for f in faces]
    assert sorted(best[:2]) == ["biden", "obama"] and best[2] is None
    for f in faces:  # every match above the default identification threshold, best first
        sims = [m["Similarity"] for m in f["FaceMatches"]]
        assert sims == sorted(sims, reverse=True) and all(s >= 85 for s in sims)


def test_largest_face_matches_exactly_what_search_faces_by_image_returns(world):
    one = world.service.call("SearchFacesByImage", {"CollectionId": "people",
                                                    "Image": group(world), "MaxFaces": 5})
    many = call(world, Image=group(world), MaxMatchesPerFace=5)
    first = many["SearchedFaces"][0]
    assert first["FaceDetail"]["BoundingBox"] == one["SearchedFaceBoundingBox"]
    assert [(m["Face"]["FaceId"], round(m["Similarity"], 6)) for m in first["FaceMatches"]] == \
        [(m["Face"]["FaceId"], round(m["Similarity"], 6)) for m in one["FaceMatches"]]


def test_max_faces_and_quality_filter_leave_faces_unsearched(world):
    out = call(world, Image=group(world), MaxFaces=1)
    assert len(out["SearchedFaces"]) == 1
    assert out["UnsearchedFaces"] and all("EXCEEDS_MAX_FACES" in f["Reasons"]
                                          for f in out["UnsearchedFaces"])
    strict = call(world, Image=group(world), QualityFilter="HIGH")
    assert len(strict["SearchedFaces"]) + len(strict["UnsearchedFaces"]) == \
        len(out["SearchedFaces"]) + len(out["UnsearchedFaces"])


def test_users_are_matched_with_match_users(world):
    svc = world.service
    for person in ("obama", "biden"):
        svc.call("CreateUser", {"CollectionId": "people", "UserId": person})
        ids = [f["FaceId"] for f in svc.call("ListFaces", {"CollectionId": "people",
                                                           "MaxResults": 4096})["Faces"]
               if f.get("ExternalImageId") == person]
        svc.call("AssociateFaces", {"CollectionId": "people", "UserId": person, "FaceIds": ids})
    out = run_cli(world.home, "identify", "people", str(world.samples / GROUP), "--users",
                  "--json").stdout
    faces = json.loads(out)["SearchedFaces"]
    users = [f["UserMatches"][0]["User"]["UserId"] if f["UserMatches"] else None for f in faces]
    assert sorted(users[:2]) == ["biden", "obama"] and users[2] is None
    assert all("FaceMatches" not in f for f in faces)


def test_annotate_draws_boxes_on_a_copy(world, tmp_path):
    from PIL import Image

    out = tmp_path / "named.png"
    run_cli(world.home, "identify", "people", str(world.samples / GROUP), "--annotate", str(out))
    drawn = np.asarray(Image.open(out).convert("RGB"))
    original = np.asarray(Image.open(world.samples / GROUP).convert("RGB"))
    assert drawn.shape == original.shape
    changed = (np.abs(drawn.astype(int) - original.astype(int)).sum(axis=2) > 60).mean()
    assert 0.001 < changed < 0.2  # boxes and labels, not a different picture


def test_bad_input_gets_rekognitions_typed_errors(world, tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    with pytest.raises(InvalidParameter, match="no faces in the image"):
        call(world, Image={"Bytes": blank.read_bytes()})
    with pytest.raises(ResourceNotFound):
        world.service.call("SearchFacesInImage", {"CollectionId": "nope", "Image": group(world)})
    with pytest.raises(InvalidParameter, match="maxFaces"):
        call(world, Image=group(world), MaxFaces=101)
    proc = run_cli(world.home, "identify", "people", str(blank), check=False)
    assert proc.returncode == 2 and "no faces" in proc.stderr and "Traceback" not in proc.stderr


def test_policy_and_ledger_treat_it_like_search_faces_by_image(world):
    from candor.config import OPERATOR_ORG
    from candor.errors import AccessDenied
    from candor.governance.gate import governed
    from candor.governance.principal import Principal

    # principals of the organisation that owns the collection (tenancy keeps others out)
    police = governed(world.service, Principal.local(OPERATOR_ORG, "law_enforcement"),
                      "moratorium-2020")
    with pytest.raises(AccessDenied):
        police.call("SearchFacesInImage", {"CollectionId": "people", "Image": group(world)})
    child = governed(world.service, Principal.local(OPERATOR_ORG, "child_safety"),
                     "moratorium-2020")
    with pytest.raises(AccessDenied, match="99"):
        child.call("SearchFacesInImage", {"CollectionId": "people", "Image": group(world)})
    ok = child.call("SearchFacesInImage", {"CollectionId": "people", "Image": group(world),
                                           "FaceMatchThreshold": 99})
    from candor.governance.ledger import Ledger
    from candor.service.common import store_of

    records = [r for r in Ledger.for_store(store_of(world.service)).tail(1000)
               if r["operation"] == "SearchFacesInImage"]
    assert [r["decision"] for r in records[-3:]] == ["deny", "deny", "allow"]
    last = records[-1]
    assert last["threshold"] == 99
    assert last["faces_found"] == len(ok["SearchedFaces"]) + len(ok["UnsearchedFaces"])
    named = {m["Face"]["FaceId"] for f in ok["SearchedFaces"] for m in f["FaceMatches"]}
    assert {m["FaceId"] for m in last["matches"]} == named


def test_sdk_path_holds_the_extension():
    from candor.service.model import EXTRAS_FILE, candor_operations, rekognition_model

    out = subprocess.run([sys.executable, "-m", "candor.cli", "sdk-path"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert (Path(out) / EXTRAS_FILE).is_file()
    assert "SearchFacesInImage" in candor_operations()
    assert "SearchFacesInImage" in rekognition_model().operation_names


def test_descriptors_are_complete_and_say_identify():
    from candor.service.operations import spec

    for name in ("SearchFacesInImage", "RecognizeCelebrities"):
        descriptor = spec(name)
        assert descriptor is not None and descriptor.problems() == []
        assert descriptor.kind == "identify" and descriptor.biometric
    assert spec("SearchFacesInImage").threshold == "FaceMatchThreshold"
    assert spec("SearchFacesInImage").default_threshold == 85.0
    assert spec("SearchFacesInImage").candor and not spec("RecognizeCelebrities").candor
    response = {"SearchedFaces": [{"FaceMatches": [{"Similarity": 99.0, "Face": {"FaceId": "a"}}]},
                                  {"FaceMatches": []}], "UnsearchedFaces": [{}]}
    assert spec("SearchFacesInImage").faces_found(response) == 3
    assert spec("SearchFacesInImage").matches(response) == [
        {"SearchedFace": 0, "FaceId": "a", "Similarity": 99.0}]


@pytest.mark.parametrize("params, where", [
    ({"CollectionId": "people", "Image": {"Bytes": b"x"}, "Match": "EVERYONE"}, "match"),
    ({"CollectionId": "people", "Image": {"Bytes": b"x"}, "MaxMatchesPerFace": 0},
     "maxMatchesPerFace"),
    ({"CollectionId": "people", "Image": {"Bytes": b"x"}, "FaceMatchThreshold": "high"},
     "FaceMatchThreshold"),
    ({"CollectionId": "a" * 300, "Image": {"Bytes": b"x"}}, "collectionId"),
    ({"CollectionId": "people"}, "Image"),
])
def test_hostile_requests_get_invalid_parameter(params, where, tmp_path):
    with pytest.raises(InvalidParameter) as err:
        Service(tmp_path).call("SearchFacesInImage", params)
    assert where.lower() in str(err.value).lower()
