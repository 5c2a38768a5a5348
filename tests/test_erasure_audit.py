"""A privacy audit of erasure: the places a person's data lives besides the faces table.

tests/test_erasure_on_disk.py covers the faces' embeddings in the database, its log and the
saved vector indexes, and tests/test_governance_erasure.py what searches see. This module
covers the rest, each test through the real door (``erase``, ``purge``, the service's
DeleteFaces) on real components:

- the erasure receipt in the (unchangeable) ledger names no erased UserId, and no record
  names a UserId at all (SearchUsers matches, review candidates: its SHA-256 only);
- a held review loses an erased user as a candidate, and the copy of a deleted face's
  thumbnail it kept as its probe (SearchFaces by FaceId), by every deletion;
- a retention purge removes the purged faces' matches from stored video results and reviews,
  as an erasure does; rewritten and expired video results leave the database files;
- the evaluation cache in the data dir (``eval-embeddings.sqlite``, keyed by the photo's
  SHA-256) forgets the photos of deleted faces, so the embedding is in no file;
- a video downloaded from an S3 endpoint for a job is deleted when the job ends;
- on PostgreSQL, what docs/postgres.md says of dead tuples and VACUUM FULL, on its own files.

On SQLite and PostgreSQL; the byte scans of the data dir are of the files there (the
database's own files too on SQLite).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from candor.config import OPERATOR_ORG
from candor.eval.embeddings import CACHE_FILE, Cache, file_sha256
from candor.governance.erasure import erase, purge, set_retention
from candor.governance.ledger import Ledger
from candor.governance.principal import Principal
from candor.governance.review import hold
from candor.store import open_store, to_blob
from candor.store.vectors import DIM

RNG = np.random.default_rng(23)
NOW = datetime.now(timezone.utc)
ERASED_USER = "u-erased-7f3a9c"  # distinctive: searched for as bytes


def vector() -> np.ndarray:
    v = RNG.normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def face(external_image_id: str, thumbnail: bytes | None = None, sha: str | None = None) -> dict:
    return {"embedding": vector(), "bbox": {"Width": .3, "Height": .3, "Left": .1, "Top": .1},
            "confidence": 99.9, "image_id": "img", "external_image_id": external_image_id,
            "model_version": "1.0", "image_sha256": sha, "thumbnail": thumbnail}


def scan(data_dir: Path, needle: bytes) -> list[str]:
    """The files under the data dir that hold ``needle``."""
    return [p.name for p in sorted(data_dir.rglob("*")) if p.is_file() and needle in p.read_bytes()]


@pytest.fixture()
def store(tmp_path, database_url):
    return open_store(tmp_path / "data", database_url)


def with_user(store, coll: str, user_id: str, faces: list) -> None:
    with store.write() as conn:
        c = store.collection(coll, conn, org=OPERATOR_ORG)
        store.create_user(conn, c.id, user_id)
        user = store.user(c.id, user_id, conn)
        store.set_user_faces(conn, c.id, user.id, add=[f.key for f in faces], remove=[])


def held(store, operation: str, params: dict, resp: dict) -> str:
    """A review held by the real :func:`hold`, as the gate holds one."""
    principal = Principal("officer", OPERATOR_ORG, "law_enforcement")
    _, review_id, _ = hold(store, operation, params, resp, principal=principal, request_id="q",
                           rule="review", authorization_reference=None, threshold=80.0,
                           constraints={}, at=NOW)
    return review_id


def test_the_user_erasure_receipt_does_not_name_the_user(store):
    """The ledger cannot be changed: the receipt must prove the erasure with a hash only."""
    store.create_collection("c", "1.0")
    rows = store.add_faces("c", [face("x"), face("y")])
    with_user(store, "c", ERASED_USER, rows[:1])
    ledger = Ledger.for_store(store)
    receipt = erase(store, ledger, user_id=ERASED_USER)
    assert receipt.to_dict()["UsersRemoved"] == {"c": [ERASED_USER]}  # the caller is told
    record = ledger.tail(1)[0]
    assert record["operation"] == "Erase" and record["details"]["users_removed"] == {"c": 1}
    assert ERASED_USER not in json.dumps(ledger.tail(50))
    assert ledger.verify().ok
    if store.is_sqlite:  # and so in no file of the data dir
        assert scan(store.data_dir, ERASED_USER.encode()) == []


def test_the_ledger_names_users_by_digest_only(tmp_path, database_url, samples):
    """SearchUsers records its matches in the ledger, which cannot be changed: a UserId in
    clear there would outlive the user's erasure. They are recorded by SHA-256, and
    ``candor audit search --face-id`` still finds them by the UserId."""
    import hashlib

    from candor import connect

    photo = samples / "identities" / "obama" / "obama.jpg"
    if not photo.exists():
        pytest.skip("sample photos not found")
    gated = connect(tmp_path / "data")
    gated.call("CreateCollection", {"CollectionId": "c"})
    out = gated.call("IndexFaces", {"CollectionId": "c", "MaxFaces": 1,
                                    "Image": {"Bytes": photo.read_bytes()}})
    fid = out["FaceRecords"][0]["Face"]["FaceId"]
    gated.call("CreateUser", {"CollectionId": "c", "UserId": ERASED_USER})
    gated.call("AssociateFaces", {"CollectionId": "c", "UserId": ERASED_USER, "FaceIds": [fid]})
    found = gated.call("SearchUsersByImage", {"CollectionId": "c", "UserMatchThreshold": 0,
                                              "Image": {"Bytes": photo.read_bytes()}})
    assert found["UserMatches"][0]["User"]["UserId"] == ERASED_USER  # the caller sees it
    store = open_store(tmp_path / "data", database_url)
    ledger = Ledger.for_store(store)
    erase(store, ledger, user_id=ERASED_USER)
    records = ledger.tail(50)
    assert ERASED_USER not in json.dumps(records)
    digest = hashlib.sha256(ERASED_USER.encode()).hexdigest()
    (search,) = [r for r in records if r["operation"] == "SearchUsersByImage"]
    assert search["matches"][0]["UserIdSha256"] == digest
    assert [r["seq"] for r in ledger.search(face_id=ERASED_USER)] == [search["seq"]]
    assert scan(tmp_path / "data", ERASED_USER.encode()) == [] or not store.is_sqlite


def test_a_held_review_loses_an_erased_user(store):
    store.create_collection("c", "1.0")
    rows = store.add_faces("c", [face("x"), face("y"), face("z")])
    with_user(store, "c", ERASED_USER, rows[:2])
    with_user(store, "c", "u-kept", rows[2:])
    review_id = held(store, "SearchUsers", {"CollectionId": "c", "FaceId": rows[0].face_id}, {
        "UserMatches": [{"Similarity": 99.0, "User": {"UserId": ERASED_USER, "UserStatus": "ACTIVE"}},
                        {"Similarity": 90.0, "User": {"UserId": "u-kept", "UserStatus": "ACTIVE"}}]})
    assert [c["candidate"] for c in store.review(review_id)["candidates"]] == [ERASED_USER, "u-kept"]
    erase(store, Ledger.for_store(store), user_id=ERASED_USER)
    assert [c["candidate"] for c in store.review(review_id)["candidates"]] == ["u-kept"]
    if store.is_sqlite:
        assert scan(store.data_dir, ERASED_USER.encode()) == []


@pytest.mark.parametrize("door", ["erase", "DeleteFaces", "DeleteCollection"])
def test_a_held_review_loses_the_copy_of_a_deleted_faces_thumbnail(store, door):
    """SearchFaces by FaceId holds the searched face's thumbnail as the review's probe: a copy
    that the face's own ON DELETE CASCADE does not reach."""
    for coll in ("c", "k"):
        store.create_collection(coll, "1.0")
        store.set_keep_thumbnails(coll, OPERATOR_ORG)
    thumb = b"\xff\xd8\xff\xe0" + RNG.bytes(1500) + b"\xff\xd9"  # distinctive bytes
    other = b"\xff\xd8\xff\xe0" + RNG.bytes(1500) + b"\xff\xd9"
    rows = store.add_faces("c", [face("alice", thumb)]) + store.add_faces("k", [face("bob", other)])
    review_id = held(store, "SearchFaces", {"CollectionId": "c", "FaceId": rows[0].face_id}, {
        "FaceMatches": [{"Similarity": 95.0, "Face": {"FaceId": rows[1].face_id}}]})
    kept_id = held(store, "SearchFaces", {"CollectionId": "k", "FaceId": rows[1].face_id}, {
        "FaceMatches": [{"Similarity": 95.0, "Face": {"FaceId": rows[0].face_id}}]})
    assert store.review_probe(review_id) == thumb and store.review_probe(kept_id) == other
    if door == "erase":
        erase(store, Ledger.for_store(store), external_image_id="alice")
    elif door == "DeleteFaces":
        store.delete_faces("c", [rows[0].face_id])
    else:
        store.delete_collection("c")
    assert store.review_probe(review_id) is None
    assert store.review_probe(kept_id) == other  # another person's probe stays
    assert store.review(review_id)["candidates"][0]["candidate"] == rows[1].face_id
    if store.is_sqlite:
        assert scan(store.data_dir, thumb[100:400]) == []
        assert scan(store.data_dir, other[100:400]) == ["candor.db"]


def test_a_retention_purge_reaches_video_results_and_reviews(store):
    store.create_collection("c", "1.0")
    rows = store.add_faces("c", [face("old-person")])
    fid = rows[0].face_id
    match = {"Similarity": 99.0, "Face": {"FaceId": fid, "ExternalImageId": "old-person"}}
    store.create_job(job_id="j1", operation="StartFaceSearch", params={"CollectionId": "c"})
    store.update_job("j1", status="SUCCEEDED", matches=1,
                     results=[{"Timestamp": 0, "Person": {"Index": 0}, "FaceMatches": [match]}])
    review_id = held(store, "SearchFacesByImage", {"CollectionId": "c"}, {"FaceMatches": [match]})
    ledger = Ledger.for_store(store)
    set_retention(store, ledger, "c", 30)
    (receipt,) = purge(store, ledger, now=NOW + timedelta(days=31))
    assert receipt.faces == {"c": [fid]}
    job = store.job("j1")
    assert job.results[0]["FaceMatches"] == [] and job.matches == 0
    assert store.review(review_id)["candidates"] == []
    if store.is_sqlite:
        assert scan(store.data_dir, b"old-person") == []


def photo_and_cache(store, samples: Path) -> tuple[Path, Path, dict]:
    """Two sample photos whose embeddings are in the evaluation cache, as ``candor eval`` or
    ``candor celebrities evaluate`` leaves them in the data dir."""
    photos = sorted((samples / "identities").rglob("*.jpg"))[:2]
    if len(photos) < 2:
        pytest.skip("sample photos not found")
    cache = Cache(store.data_dir / CACHE_FILE)
    cached = {p: vector() for p in photos}
    cache.put([(file_sha256(p), v, 1, None) for p, v in cached.items()], "settings")
    cache.close()
    return photos[0], photos[1], cached


@pytest.mark.parametrize("door", ["erase", "DeleteFaces", "DeleteCollection"])
def test_the_evaluation_cache_forgets_a_deleted_faces_photo(tmp_path, database_url, samples, door):
    """A photo indexed into a collection and evaluated: deleting its face removes the cached
    embedding of that photo (found by the SHA-256 the face was stored with)."""
    from candor.service import Service

    service = Service(tmp_path / "data")  # its database: the run's (CANDOR_DATABASE_URL)
    store = open_store(tmp_path / "data", database_url)
    erased, kept, cached = photo_and_cache(store, samples)
    service.call("CreateCollection", {"CollectionId": "c"})
    service.call("CreateCollection", {"CollectionId": "k"})
    out = service.call("IndexFaces", {"CollectionId": "c", "MaxFaces": 1, "ExternalImageId": "p1",
                                      "Image": {"Bytes": erased.read_bytes()}})
    service.call("IndexFaces", {"CollectionId": "k", "MaxFaces": 1,
                                "Image": {"Bytes": kept.read_bytes()}})
    assert scan(store.data_dir, to_blob(cached[erased])) == [CACHE_FILE]
    if door == "erase":
        erase(store, Ledger.for_store(store), external_image_id="p1")
    elif door == "DeleteFaces":
        service.call("DeleteFaces", {"CollectionId": "c",
                                     "FaceIds": [out["FaceRecords"][0]["Face"]["FaceId"]]})
    else:
        service.call("DeleteCollection", {"CollectionId": "c"})
    assert scan(store.data_dir, to_blob(cached[erased])) == []
    assert scan(store.data_dir, to_blob(cached[kept])) == [CACHE_FILE]  # other photos stay
    left = Cache(store.data_dir / CACHE_FILE)
    assert set(left.get([file_sha256(erased), file_sha256(kept)], "settings")) == {file_sha256(kept)}
    left.close()


def test_on_postgresql_only_vacuum_full_takes_erased_rows_out_of_the_table_files(
        tmp_path, database_url, store_backend, request):
    """What docs/postgres.md tells the operator, measured on the server's own files: an erased
    embedding stays in the table's files (a dead tuple) after the erasure; a plain VACUUM may
    leave its bytes in the page's free space (it did here for the newest rows); VACUUM FULL
    rewrites the table and its indexes without them. The write-ahead log keeps them until its
    segments are recycled, which no command here changes."""
    if store_backend != "postgresql":
        pytest.skip("about PostgreSQL's files")
    import psycopg

    info = request.getfixturevalue("pg_server").info
    store = open_store(tmp_path / "data", database_url)
    store.create_collection("c", "1.0")
    faces = [face("kept") for _ in range(15)] + [face("gone") for _ in range(5)]
    store.add_faces("c", faces)
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()"
                           ).fetchone()[0]

    def files_holding(vectors: list) -> set[str]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CHECKPOINT")  # the pages on disk, not only in shared buffers
        base = info.data_dir / "pgdata" / "base" / str(oid)
        return {p.name for p in base.iterdir() if p.is_file()
                for v in vectors if to_blob(v["embedding"])[:64] in p.read_bytes()}

    erased = faces[15:]
    assert files_holding(erased)
    erase(store, Ledger.for_store(store), external_image_id="gone")
    assert files_holding(erased), "the limit docs/postgres.md states: dead tuples stay"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM FULL faces")
    assert files_holding(erased) == set()
    assert files_holding(faces[:1])  # the kept faces are still there, so the scan can find


class EndpointCopy:
    """The HTTP door's S3 fetcher (``service.media``, :class:`candor.api.s3.S3Images`) as the
    job runner uses it: ``download`` copies the object to the file it is given. It reads a
    folder here instead of an S3 endpoint, which the test does not run."""

    endpoint_url = "http://s3.test.invalid"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def download(self, spec: dict, dest: Path) -> None:
        dest.write_bytes((self.folder / spec["Name"]).read_bytes())


def test_a_video_downloaded_for_a_job_is_deleted_when_the_job_ends(tmp_path, database_url):
    """A video from an S3 endpoint is copied into ``<data dir>/videos/<JobId>`` for its job:
    footage of people, needed only while the job runs."""
    from conftest import DATA

    from candor.governance.gate import governed
    from candor.service import Service
    from candor.service.jobs import runner_of

    clip = DATA / "video" / "short_hamilton_clip.mp4"
    if not clip.exists():
        pytest.skip("sample videos not found")
    folder = tmp_path / "bucket"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clip.read_bytes()[: 200_000])  # a truncated video
    (folder / "junk.mp4").write_bytes(b"not a video at all" * 100)
    service = Service(tmp_path / "data")
    service.__dict__["media"] = EndpointCopy(folder)  # as the HTTP gateway sets it
    gated = governed(service, Principal.local("operator", "general"))
    ids = []
    for name in ("clip.mp4", "junk.mp4"):
        job_id = gated.call("StartFaceDetection", {
            "Video": {"S3Object": {"Bucket": "remote", "Name": name}}})["JobId"]
        runner_of(service).wait(job_id, timeout=300)
        ids.append(job_id)
    statuses = [gated.call("GetFaceDetection", {"JobId": j})["JobStatus"] for j in ids]
    assert statuses[1] == "FAILED" and statuses[0] in ("SUCCEEDED", "FAILED")
    videos = tmp_path / "data" / "videos"
    assert videos.is_dir() and sorted(p.name for p in videos.iterdir()) == []
    # a copy a stopped node left behind for a finished job goes at the next start
    (videos / ids[0]).write_bytes(b"left over")
    runner_of(service).start()
    runner_of(service).stop()
    assert not (videos / ids[0]).exists()


def test_an_erased_persons_video_matches_leave_the_database_files(store):
    """The stored results are rewritten without the person's matches; on SQLite the old
    version of the row must not stay in the database file or its log."""
    store.create_collection("c", "1.0")
    rows = store.add_faces("c", [face("person-7d2e1b"), face("kept-person")])
    matches = [{"Similarity": 99.0, "Face": {"FaceId": r.face_id, "ExternalImageId": r.external_image_id}}
               for r in rows]
    store.create_job(job_id="j1", operation="StartFaceSearch", params={"CollectionId": "c"})
    store.update_job("j1", status="SUCCEEDED", matches=2,
                     results=[{"Timestamp": 0, "Person": {"Index": 0}, "FaceMatches": matches}])
    store.checkpoint()  # the results are in candor.db itself, as after any later checkpoint
    erase(store, Ledger.for_store(store), external_image_id="person-7d2e1b")
    assert [m["Face"]["FaceId"] for m in store.job("j1").results[0]["FaceMatches"]] == [rows[1].face_id]
    if store.is_sqlite:
        assert scan(store.data_dir, b"person-7d2e1b") == []
        assert scan(store.data_dir, b"kept-person")


def test_expired_video_results_leave_the_database_files(store):
    store.create_job(job_id="j1", operation="StartFaceSearch", params={"CollectionId": "c"})
    store.update_job("j1", status="SUCCEEDED", expires_at=NOW - timedelta(days=1), results=[
        {"Timestamp": 0, "Person": {"Index": 0},
         "FaceMatches": [{"Similarity": 99.0, "Face": {"ExternalImageId": "expired-3c9d"}}]}])
    store.checkpoint()
    assert store.purge_jobs() == ["j1"]
    if store.is_sqlite:
        assert scan(store.data_dir, b"expired-3c9d") == []
