"""Stored video in-process: the jobs, their shapes, ground truth on the two sample videos,
tenancy, idempotency, bad videos, retention and erasure of matches.

Ground truth was written by looking at frames (extracted to PNG every 0.5 s): times are ms
from the start of the stream, as Rekognition's Timestamp.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import botocore.session
import pytest

from candor.governance.gate import governed
from candor.governance.principal import Principal
from candor.service import Service
from candor.service.common import store_of
from candor.service.jobs import runner_of

#: short_hamilton_clip.mp4 (640x360, 9.2 s). Lin-Manuel Miranda: standing small on stage
#: (0-0.7 s), then in close-up at the microphone (2.8-7.2 s). Alex Lacamoire: at the piano,
#: a face of ~15 px (0-0.7 s), and in profile close-up (0.8-2.7 s). The audience (with Barack
#: and Michelle Obama, not in the collection) from 7.2 s on.
HAMILTON_TRUTH = {"lin_manuel_miranda": [(0, 800), (2700, 7300)],
                  "alex_lacamoire": [(0, 800), (700, 2800)]}
#: street_1080p.mp4 (1920x1080, 4.2 s): frontal faces clearly visible in five sampled frames,
#: as (x, y) of the face's centre, relative to the frame
STREET_TRUTH = {
    0: [(0.478, 0.622)],
    1040: [(0.525, 0.680), (0.157, 0.629)],
    2000: [(0.124, 0.663), (0.512, 0.707), (0.593, 0.653)],
    3040: [(0.115, 0.660), (0.444, 0.673), (0.583, 0.650), (0.624, 0.663)],
    4000: [(0.406, 0.687), (0.588, 0.646), (0.628, 0.670)],
}


def make(tmp: Path, video_dir: Path, org: str = "operator"):
    service = Service(data_dir=tmp)
    service.__dict__["local_buckets"] = {"videos": video_dir}
    return service, governed(service, Principal.local(org, "general"))


def video(name: str) -> dict:
    return {"S3Object": {"Bucket": "videos", "Name": name}}


def run(service, gate, start: str, params: dict) -> str:
    job_id = gate.call(start, params)["JobId"]
    runner_of(service).wait(job_id, timeout=900)
    return job_id


@pytest.fixture(scope="module")
def world(tmp_path_factory, store_backend):
    from conftest import DATA

    if not (DATA / "video").is_dir():
        pytest.skip("sample videos not found")
    service, gate = make(tmp_path_factory.mktemp("video"), DATA / "video")
    gate.call("CreateCollection", {"CollectionId": "hamilton"})
    for who in ("lin_manuel_miranda", "alex_lacamoire"):
        for photo in sorted((DATA / "samples" / "identities" / who).iterdir()):
            gate.call("IndexFaces", {"CollectionId": "hamilton", "ExternalImageId": who,
                                     "Image": {"Bytes": photo.read_bytes()}, "MaxFaces": 1})
    search = run(service, gate, "StartFaceSearch",
                 {"CollectionId": "hamilton", "Video": video("short_hamilton_clip.mp4"),
                  "JobTag": "acceptance"})
    detect = run(service, gate, "StartFaceDetection", {"Video": video("street_1080p.mp4")})
    return {"service": service, "gate": gate, "search": search, "detect": detect,
            "data": DATA}


def named(persons: list[dict]) -> list[tuple[int, str, float]]:
    return [(p["Timestamp"], m["Face"]["ExternalImageId"], m["Similarity"])
            for p in persons for m in p["FaceMatches"]]


def inside(ts: int, ranges) -> bool:
    return any(a <= ts <= b for a, b in ranges)


def test_face_search_names_lin_manuel_miranda_where_he_is_and_no_one_else(world):
    resp = world["gate"].call("GetFaceSearch", {"JobId": world["search"]})
    assert resp["JobStatus"] == "SUCCEEDED", resp.get("StatusMessage")
    assert resp["JobTag"] == "acceptance"
    assert resp["VideoMetadata"]["FrameWidth"] == 640
    assert resp["VideoMetadata"]["DurationMillis"] == pytest.approx(9176, abs=50)
    names = named(resp["Persons"])
    assert {who for _, who, _ in names} <= set(HAMILTON_TRUTH)
    for ts, who, sim in names:  # never outside the person's time on screen
        assert inside(ts, HAMILTON_TRUTH[who]), (ts, who, sim)
        assert sim >= 85
    lin = [ts for ts, who, _ in names if who == "lin_manuel_miranda"]
    for a, b in HAMILTON_TRUTH["lin_manuel_miranda"]:
        assert any(a <= ts <= b for ts in lin), f"Lin-Manuel Miranda not named in {a}-{b} ms"
    close_up = [p for p in resp["Persons"] if 3600 <= p["Timestamp"] <= 7000]
    assert sum(1 for p in close_up if p["FaceMatches"]) >= 0.8 * len(close_up) > 0


@pytest.mark.xfail(strict=True, reason="Alex Lacamoire is on screen only in profile close-up (yaw "
                   "38-62 degrees): dlib's embedding of those faces scores 58-67.5 against his photos, "
                   "under the default threshold of 85, and strangers in the audience score up to 69.4 "
                   "against them; neither a track's mean embedding nor its best frame separates him "
                   "(docs/video.md, Limits)")
def test_face_search_names_alex_lacamoire(world):
    resp = world["gate"].call("GetFaceSearch", {"JobId": world["search"]})
    assert any(who == "alex_lacamoire" for _, who, _ in named(resp["Persons"]))


def test_search_response_has_botocore_shapes_sorting_and_pages(world):
    gate = world["gate"]
    model = botocore.session.get_session().get_service_model("rekognition")
    from botocore.validate import ParamValidator

    full = gate.call("GetFaceSearch", {"JobId": world["search"], "SortBy": "INDEX"})
    shape = model.operation_model("GetFaceSearch").output_shape
    report = ParamValidator().validate(full, shape)
    assert not report.has_errors(), report.generate_report()
    keys = [(p["Person"]["Index"], p["Timestamp"]) for p in full["Persons"]]
    assert keys == sorted(keys)
    by_time = gate.call("GetFaceSearch", {"JobId": world["search"]})["Persons"]
    assert [p["Timestamp"] for p in by_time] == sorted(p["Timestamp"] for p in by_time)
    pages, token = [], None
    while True:
        page = gate.call("GetFaceSearch", {"JobId": world["search"], "MaxResults": 4,
                                           **({"NextToken": token} if token else {})})
        pages += page["Persons"]
        token = page.get("NextToken")
        if not token:
            break
    assert pages == by_time


def test_face_detection_finds_the_visible_faces_of_the_street(world):
    gate = world["gate"]
    resp = gate.call("GetFaceDetection", {"JobId": world["detect"]})
    assert resp["JobStatus"] == "SUCCEEDED"
    assert resp["VideoMetadata"]["FrameHeight"] == 1080
    model = botocore.session.get_session().get_service_model("rekognition")
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(resp, model.operation_model("GetFaceDetection").output_shape)
    assert not report.has_errors(), report.generate_report()
    faces = resp["Faces"]
    times = sorted({f["Timestamp"] for f in faces})
    assert len(times) >= 18  # a face in (nearly) every one of the 21 sampled frames
    found = total = 0
    for ts, centres in STREET_TRUTH.items():
        boxes = [f["Face"]["BoundingBox"] for f in faces if abs(f["Timestamp"] - ts) <= 60]
        for x, y in centres:
            total += 1
            found += any(b["Left"] <= x <= b["Left"] + b["Width"]
                         and b["Top"] <= y <= b["Top"] + b["Height"] for b in boxes)
    assert found >= 0.75 * total, f"found {found} of {total} labelled faces"
    assert all(f["Face"].get("Landmarks") and f["Face"].get("Pose") for f in faces)


def test_jobs_belong_to_the_organisation_that_started_them(world):
    other = governed(world["service"], Principal.local("someone-else", "general"))
    from candor.errors import ResourceNotFound

    with pytest.raises(ResourceNotFound):
        other.call("GetFaceSearch", {"JobId": world["search"]})
    with pytest.raises(ResourceNotFound):
        world["gate"].call("GetFaceDetection", {"JobId": world["search"]})  # not that kind


def test_client_request_token_is_idempotent(world, tmp_path):
    from candor.errors import IdempotentParameterMismatch

    gate = world["gate"]
    params = {"Video": video("short_hamilton_clip.mp4"), "ClientRequestToken": "tok-1"}
    first = gate.call("StartFaceDetection", params)["JobId"]
    assert gate.call("StartFaceDetection", params)["JobId"] == first
    with pytest.raises(IdempotentParameterMismatch):
        gate.call("StartFaceDetection", {**params, "JobTag": "other"})
    runner_of(world["service"]).wait(first, timeout=900)


def test_the_ledger_records_the_finished_job(world):
    store = store_of(world["service"])
    job = store.job(world["search"])
    from candor.governance.ledger import Ledger

    records = [r for r in Ledger.for_store(store).iter_records()
               if r["request_id"] == world["search"]]
    assert records, "no ledger record of the finished job"
    rec = records[-1]
    assert rec["image_sha256"] == [job.video_sha256]
    assert rec["faces_found"] == job.faces > 0
    assert rec["details"]["frames_analysed"] == job.frames > 0
    assert {m["FaceId"] for m in rec["matches"]}


@pytest.mark.parametrize("content, reason", [
    (b"this is not a video at all" * 100, "NOT_A_VIDEO"),
    ("truncated", "TRUNCATED"),
])
def test_bad_videos_fail_the_job_with_a_typed_status(world, tmp_path, content, reason):
    folder = tmp_path / "bad"
    folder.mkdir()
    if content == "truncated":
        data = (world["data"] / "video" / "short_hamilton_clip.mp4").read_bytes()
        (folder / "clip.mp4").write_bytes(data[: len(data) // 2])
    else:
        (folder / "clip.mp4").write_bytes(content)
    service, gate = make(tmp_path / "d", folder)
    job_id = run(service, gate, "StartFaceDetection", {"Video": video("clip.mp4")})
    resp = gate.call("GetFaceDetection", {"JobId": job_id})
    assert resp["JobStatus"] == "FAILED"
    assert resp["StatusMessage"].split(":")[0] in (reason, "NOT_A_VIDEO", "TRUNCATED")


def test_missing_objects_and_escapes_are_refused(world, tmp_path):
    from candor.errors import InvalidS3Object

    gate = world["gate"]
    for name in ("nope.mp4", "../samples/identities/obama/reference.png"):
        with pytest.raises(InvalidS3Object):
            gate.call("StartFaceDetection", {"Video": video(name)})


def test_erasure_removes_matches_from_stored_results_and_retention_purges(world, tmp_path):
    service, gate = make(tmp_path / "e", world["data"] / "video")
    gate.call("CreateCollection", {"CollectionId": "c"})
    ref = world["data"] / "samples" / "identities" / "lin_manuel_miranda" / "reference.png"
    gate.call("IndexFaces", {"CollectionId": "c", "ExternalImageId": "lin",
                             "Image": {"Bytes": ref.read_bytes()}})
    shutil.copy(world["data"] / "video" / "short_hamilton_clip.mp4", tmp_path / "clip.mp4")
    job_id = run(service, gate, "StartFaceSearch", {"CollectionId": "c",
                                                    "Video": video("short_hamilton_clip.mp4")})
    assert named(gate.call("GetFaceSearch", {"JobId": job_id})["Persons"])
    from candor.governance.erasure import erase
    from candor.governance.ledger import Ledger

    store = store_of(service)
    erase(store, Ledger.for_store(store), external_image_id="lin")
    assert named(gate.call("GetFaceSearch", {"JobId": job_id})["Persons"]) == []
    from datetime import timedelta

    from candor.store.database import utcnow

    assert job_id in store.purge_jobs(utcnow() + timedelta(days=8))
    from candor.errors import ResourceNotFound

    with pytest.raises(ResourceNotFound):
        gate.call("GetFaceSearch", {"JobId": job_id})


def test_cli_video_search_prints_who_appears_when_and_json(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from conftest import DATA

    clip = DATA / "video" / "short_hamilton_clip.mp4"
    if not clip.is_file():
        pytest.skip("sample videos not found")
    home = Path(os.environ["CANDOR_DATA_DIR"])
    _, gate = make(home, DATA / "video")
    gate.call("CreateCollection", {"CollectionId": "ham"})
    ref = DATA / "samples" / "identities" / "lin_manuel_miranda" / "reference.png"
    gate.call("IndexFaces", {"CollectionId": "ham", "ExternalImageId": "lin_manuel_miranda",
                             "Image": {"Bytes": ref.read_bytes()}})
    cli = [sys.executable, "-m", "candor.cli", "video"]
    table = subprocess.run([*cli, "search", "ham", str(clip), "--fps", "2"],
                           capture_output=True, text=True, timeout=900)
    assert table.returncode == 0, table.stderr
    assert "lin_manuel_miranda" in table.stdout and "person(s)" in table.stdout
    out = subprocess.run([*cli, "detect", str(clip), "--fps", "2", "--json"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    resp = json.loads(out.stdout)
    assert resp["JobStatus"] == "SUCCEEDED" and resp["Faces"]
    assert resp["Video"]["S3Object"]["Name"] == clip.name
