"""The operator's celebrity gallery: ``candor celebrities import|list|show|remove`` and
RecognizeCelebrities / GetCelebrityInfo on real photos, real models and a real store."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from postgres_helper import db_rows, store_url

from candor.config import Settings
from candor.errors import AccessDenied, InvalidParameter, ResourceNotFound
from candor.service import Service

GROUP = "groups/obama_and_biden.jpg"
PEOPLE = {"obama": ("Barack Obama", "https://en.wikipedia.org/wiki/Barack_Obama", "Male"),
          "biden": ("Joe Biden", "https://en.wikipedia.org/wiki/Joe_Biden", "Male")}


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def run_cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CANDOR_DATA_DIR": str(home), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "candor.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"candor {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def build_gallery(root: Path, samples: Path) -> tuple[Path, Path, dict[str, Path]]:
    """A folder per person (links to samples/identities, each person's first photo held out
    when they have two or more) and the --info CSV for Obama and Biden."""
    held: dict[str, Path] = {}
    for person in sorted(p for p in (samples / "identities").iterdir() if p.is_dir()):
        files = photos(person)
        if len(files) >= 2:
            held[person.name], files = files[0], files[1:]
        (root / person.name).mkdir(parents=True)
        for f in files:
            (root / person.name / f.name).symlink_to(f)
    info = root.parent / "people.csv"
    with info.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["folder", "name", "urls", "known_gender"])
        for folder, (name, url, gender) in PEOPLE.items():
            w.writerow([folder, name, url, gender])
    return root, info, held


@pytest.fixture(scope="module")
def world(tmp_path_factory, samples, store_backend):
    home = tmp_path_factory.mktemp("candor-celebrities")
    root, info, held = build_gallery(tmp_path_factory.mktemp("gallery") / "people", samples)
    imported = json.loads(run_cli(home, "celebrities", "import", str(root), "--info", str(info),
                                  "--json").stdout)
    return SimpleNamespace(home=home, samples=samples, held=held, imported=imported,
                           service=Service(home))


def recognise(world, path: Path) -> dict:
    return world.service.call("RecognizeCelebrities", {"Image": {"Bytes": path.read_bytes()}})


def test_import_adds_a_person_per_folder_and_records_the_gallery_version(world):
    from candor.governance.ledger import Ledger
    from candor.service.common import store_of

    added = {a["Name"] for a in world.imported["Added"]}
    assert {"Barack Obama", "Joe Biden", "kit harington"} <= added
    assert world.imported["GalleryVersion"] == len(world.imported["Added"])
    records = [r for r in Ledger.for_store(store_of(world.service)).tail(50)
               if r["operation"] == "ImportCelebrities"]
    assert records[-1]["details"]["gallery_version"] == world.imported["GalleryVersion"]


def test_group_photo_names_obama_and_biden_and_not_the_girl(world):
    out = recognise(world, world.samples / GROUP)
    named = {c["Name"]: c for c in out["CelebrityFaces"]}
    assert set(named) == {"Barack Obama", "Joe Biden"}, out
    obama = named["Barack Obama"]
    assert obama["Urls"] == [PEOPLE["obama"][1]] and obama["KnownGender"] == {"Type": "Male"}
    assert obama["MatchConfidence"] >= 99 and set(obama["Face"]) >= {"BoundingBox", "Confidence"}
    assert len(out["UnrecognizedFaces"]) >= 1  # the girl
    from candor.service.model import rekognition_model

    members = set(rekognition_model().shape_for("ComparedFace").members)
    for face in [c["Face"] for c in out["CelebrityFaces"]] + out["UnrecognizedFaces"]:
        assert set(face) <= members


def test_held_out_photos_are_named(world):
    for folder in ("obama", "biden"):
        out = recognise(world, world.held[folder])
        assert [c["Name"] for c in out["CelebrityFaces"]] == [PEOPLE[folder][0]], out


def test_get_celebrity_info_and_typed_errors(world, tmp_path, other_database):
    from PIL import Image

    obama = next(a for a in world.imported["Added"] if a["Name"] == "Barack Obama")
    info = world.service.call("GetCelebrityInfo", {"Id": obama["Id"]})
    assert info == {"Urls": [PEOPLE["obama"][1]], "Name": "Barack Obama",
                    "KnownGender": {"Type": "Male"}}
    plain = next(a for a in world.imported["Added"] if a["Name"] == "kit harington")
    assert "KnownGender" not in world.service.call("GetCelebrityInfo", {"Id": plain["Id"]})
    with pytest.raises(ResourceNotFound, match="celebrity id"):
        world.service.call("GetCelebrityInfo", {"Id": "NoSuchId1"})
    with pytest.raises(InvalidParameter):
        world.service.call("GetCelebrityInfo", {"Id": "not valid!"})
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    assert recognise(world, blank) == {"CelebrityFaces": [], "UnrecognizedFaces": []}
    empty = Service(settings=Settings.load().with_(data_dir=tmp_path / "empty",
                                                   database_url=other_database))
    with pytest.raises(ResourceNotFound, match="gallery is empty"):
        empty.call("RecognizeCelebrities", {"Image": {"Bytes": blank.read_bytes()}})


def test_a_policy_can_deny_celebrity_recognition_to_a_category(world, tmp_path):
    from candor.governance.gate import governed
    from candor.governance.principal import Principal

    policy = tmp_path / "no-celebrities.yaml"
    policy.write_text("version: 1\nname: no-celebrities\ndefault: allow\naudit: biometric\n"
                      "rules:\n  - id: no-celebrity-recognition\n    match:\n"
                      "      category: research\n      operation: RecognizeCelebrities\n"
                      "    effect: deny\n    message: not for research\n")
    image = {"Image": {"Bytes": (world.samples / GROUP).read_bytes()}}
    with pytest.raises(AccessDenied, match="not for research"):
        governed(world.service, Principal.local("lab", "research"), str(policy)).call(
            "RecognizeCelebrities", image)
    media = governed(world.service, Principal.local("paper", "media"), str(policy))
    assert media.call("RecognizeCelebrities", image)["CelebrityFaces"]


def test_list_show_remove_through_the_cli(world):
    listed = json.loads(run_cli(world.home, "celebrities", "list", "--json").stdout)
    assert len(listed["Celebrities"]) == len(world.imported["Added"])
    biden = next(c for c in listed["Celebrities"] if c["Name"] == "Joe Biden")
    shown = json.loads(run_cli(world.home, "celebrities", "show", biden["Id"], "--json").stdout)
    assert shown["Urls"] == [PEOPLE["biden"][1]] and shown["Faces"] >= 1
    run_cli(world.home, "celebrities", "remove", biden["Id"])
    after = json.loads(run_cli(world.home, "celebrities", "list", "--json").stdout)
    assert after["GalleryVersion"] == listed["GalleryVersion"] + 1
    assert "Joe Biden" not in {c["Name"] for c in after["Celebrities"]}
    names = {c["Name"] for c in recognise(world, world.samples / GROUP)["CelebrityFaces"]}
    assert names == {"Barack Obama"}
    proc = run_cli(world.home, "celebrities", "show", biden["Id"], check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_known_gender_is_only_what_the_csv_states(tmp_path):
    from candor.service.celebrities import read_info

    bad = tmp_path / "bad.csv"
    bad.write_text("name,known_gender\nSomeone,probably male\n")
    with pytest.raises(InvalidParameter, match="known_gender"):
        read_info(bad)
    good = tmp_path / "good.csv"
    good.write_text("name,urls,known_gender\nA B,https://a https://b,\n")
    person = read_info(good)["A B"]
    assert person.known_gender is None and person.urls == ["https://a", "https://b"]


def test_evaluate_measures_on_the_operators_own_folders(tmp_path, samples, data_dir):
    faces = sorted((data_dir / "fairface-val").glob("*.jpg"))[:20]
    if not faces:
        pytest.skip("FairFace photos not in the test data")
    strangers = tmp_path / "strangers"
    strangers.mkdir()
    for f in faces:
        (strangers / f.name).symlink_to(f)
    out = json.loads(run_cli(tmp_path / "home", "celebrities", "evaluate",
                             str(samples / "identities"), "--outsiders", str(strangers),
                             "--json").stdout)
    assert out["outsiders"] == 20 and out["held_out"] >= 10
    assert out["right"] >= 0.8 and out["outsiders_named"] <= 0.1
    strict = json.loads(run_cli(tmp_path / "home", "celebrities", "evaluate",
                                str(samples / "identities"), "--outsiders", str(strangers),
                                "--threshold", "100.5", "--json").stdout)
    assert strict["right"] == 0 and strict["threshold"] == 100.5  # above any MatchConfidence


def test_replace_keeps_the_id_and_removes_the_old_faces(tmp_path):
    from candor.errors import ResourceAlreadyExists
    from candor.face.engine import FACE_MODEL_VERSION
    from candor.store import Store

    store = Store(tmp_path, url=store_url())
    rng = np.random.default_rng(1)
    vectors = [v / np.linalg.norm(v) for v in rng.normal(size=(3, 128)).astype(np.float32)]
    row, v1 = store.add_celebrity("A Person", [], None, vectors, [None] * 3, FACE_MODEL_VERSION)
    with pytest.raises(ResourceAlreadyExists):
        store.add_celebrity("A Person", [], None, vectors[:1], [None], FACE_MODEL_VERSION)
    again, v2 = store.add_celebrity("A Person", ["https://x"], "Unlisted", vectors[:1], [None],
                                    FACE_MODEL_VERSION, replace=True)
    assert again.celebrity_id == row.celebrity_id and v2 == v1 + 1
    gallery = store.gallery()
    assert len(gallery) == 1 and len(gallery.faces) == 1 and gallery.version == v2
    assert store.remove_celebrity(row.celebrity_id) == v2 + 1
    assert len(store.gallery()) == 0 and len(store.gallery().faces) == 0
    store.close()


def test_changes_of_the_gallery_are_decided_by_the_policy(world, tmp_path):
    """Importing into or removing from the gallery is an operation the policy decides (a
    refusal is recorded and changes nothing), like keys, erasure and retention."""
    policy = tmp_path / "frozen-gallery.yaml"
    policy.write_text("version: 1\nname: frozen\ndefault: allow\nrules:\n"
                      "  - id: gallery-frozen\n    match:\n"
                      "      operation: [ImportCelebrities, RemoveCelebrity]\n"
                      "    effect: deny\n    message: the gallery is frozen\n")
    before = json.loads(run_cli(world.home, "celebrities", "list", "--json").stdout)
    some_id = before["Celebrities"][0]["Id"]
    refused = run_cli(world.home, "--policy", str(policy), "celebrities", "remove", some_id,
                      check=False)
    assert refused.returncode == 2 and "gallery-frozen" in refused.stderr
    empty = tmp_path / "none"
    empty.mkdir()
    refused = run_cli(world.home, "--policy", str(policy), "celebrities", "import", str(empty),
                      check=False)
    assert refused.returncode == 2 and "gallery-frozen" in refused.stderr
    assert json.loads(run_cli(world.home, "celebrities", "list", "--json").stdout) == before
    denied = db_rows(world.home, "SELECT operation FROM audit_records WHERE decision = 'deny' "
                     "AND rule = 'gallery-frozen' ORDER BY seq")
    assert denied == [("RemoveCelebrity",), ("ImportCelebrities",)]
