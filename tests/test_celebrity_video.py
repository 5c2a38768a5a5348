"""Celebrity recognition in stored video: StartCelebrityRecognition / GetCelebrityRecognition.

boto3, unmodified (both operations are in Amazon's model), against a real ``candor serve
--bucket`` whose gallery was imported from samples/identities with ``candor celebrities
import``; the job runs on short_hamilton_clip.mp4, where Lin-Manuel Miranda (in the gallery,
one photo) is on screen. In-process: the policy denies it, an empty gallery is refused,
removing a person removes their sightings, and ``candor video celebrities``.
"""

from __future__ import annotations

import csv
import json
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from postgres_helper import store_url
from test_http import CANDOR, DATA, assert_model_shape, free_port, key_lines
from test_video import HAMILTON_TRUTH, inside
from test_video_http import CHANNEL, Hook, Serve, client, wait_done

from candor.errors import AccessDenied, ResourceNotFound
from candor.governance.gate import governed
from candor.governance.principal import Principal
from candor.service import Service
from candor.service.celebrities import gallery_threshold
from candor.service.common import store_of
from candor.service.jobs import runner_of

VIDEOS = DATA / "video"
CLIP = "short_hamilton_clip.mp4"
LIN = ("Lin-Manuel Miranda", "https://en.wikipedia.org/wiki/Lin-Manuel_Miranda", "Male")
pytestmark = pytest.mark.skipif(not (VIDEOS / CLIP).is_file(), reason="sample videos not found")


def video(bucket: str = "videos", name: str = CLIP) -> dict:
    return {"S3Object": {"Bucket": bucket, "Name": name}}


def import_gallery(data_dir: Path, tmp: Path) -> None:
    info = tmp / "people.csv"
    with info.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["folder", "name", "urls", "known_gender"])
        w.writerow(["lin_manuel_miranda", *LIN])
    done = subprocess.run([*CANDOR, "celebrities", "import", str(DATA / "samples" / "identities"),
                           "--info", str(info), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def world(tmp_path_factory, store_backend):
    root = tmp_path_factory.mktemp("celebrity-video")
    data_dir = root / "data"
    import_gallery(data_dir, root)
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    port = free_port()
    srv = Serve(data_dir, port, f"http://127.0.0.1:{hook.server_address[1]}/done",
                root / "serve.log")
    try:
        key = key_lines(srv.out.read_text())
        rek = client(port, key)
        start = {"Video": video(), "JobTag": "celebs", "NotificationChannel": CHANNEL,
                 "ClientRequestToken": "celebs-1"}
        job = rek.start_celebrity_recognition(**start)["JobId"]
        done = wait_done(rek, job, "get_celebrity_recognition")
        yield SimpleNamespace(rek=rek, job=job, done=done, start=start, data_dir=data_dir,
                              port=port, root=root)
    finally:
        srv.proc.terminate()
        try:
            srv.proc.wait(60)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
        hook.shutdown()


def test_the_gallery_person_on_screen_is_named_in_rekognitions_shape(world):
    done = world.done
    assert done["JobStatus"] == "SUCCEEDED", done.get("StatusMessage")
    assert done["JobId"] == world.job and done["JobTag"] == "celebs"
    assert done["Video"] == video()
    assert done["VideoMetadata"]["FrameWidth"] == 640
    assert_model_shape(world.rek, "GetCelebrityRecognition", done)
    celebrities = done["Celebrities"]
    assert celebrities, "no one named"
    for c in celebrities:
        assert set(c) == {"Timestamp", "Celebrity"}
        assert {"Name", "Id", "Urls", "Confidence", "BoundingBox", "Face"} <= set(c["Celebrity"])
        assert c["Celebrity"]["BoundingBox"] == c["Celebrity"]["Face"]["BoundingBox"]
        assert c["Celebrity"]["Confidence"] >= gallery_threshold(23)
    lin = [c for c in celebrities if c["Celebrity"]["Name"] == LIN[0]]
    assert lin, "Lin-Manuel Miranda not named"
    assert {c["Celebrity"]["Urls"][0] for c in lin} == {LIN[1]}
    assert {c["Celebrity"]["KnownGender"]["Type"] for c in lin} == {"Male"}  # the CSV's
    for c in lin:  # only while he is on screen
        assert inside(c["Timestamp"], HAMILTON_TRUTH["lin_manuel_miranda"]), c["Timestamp"]
    close_up = HAMILTON_TRUTH["lin_manuel_miranda"][1]
    assert any(inside(c["Timestamp"], [close_up]) for c in lin), "not named in the close-up"
    # no one else of the gallery is named while only he and Alex Lacamoire are on screen
    others = [c for c in celebrities if c["Celebrity"]["Name"] != LIN[0]
              and c["Timestamp"] < 7200]
    assert all(c["Celebrity"]["Name"] == "alex lacamoire" for c in others), others
    # what GetCelebrityInfo says of him is what the video named
    info = world.rek.get_celebrity_info(Id=lin[0]["Celebrity"]["Id"])
    assert info["Name"] == LIN[0] and info["Urls"] == [LIN[1]]


def test_sort_by_id_or_timestamp_and_pages(world):
    rek, job = world.rek, world.job
    by_time = world.done["Celebrities"]
    assert [c["Timestamp"] for c in by_time] == sorted(c["Timestamp"] for c in by_time)
    by_id = rek.get_celebrity_recognition(JobId=job, SortBy="ID")["Celebrities"]
    keys = [(c["Celebrity"]["Id"], c["Timestamp"]) for c in by_id]
    assert keys == sorted(keys) and len(by_id) == len(by_time)
    pages, token = [], None
    while True:
        page = rek.get_celebrity_recognition(JobId=job, MaxResults=3,
                                             **({"NextToken": token} if token else {}))
        assert len(page["Celebrities"]) <= 3
        pages += page["Celebrities"]
        token = page.get("NextToken")
        if not token:
            break
    assert pages == by_time
    with pytest.raises(rek.exceptions.InvalidPaginationTokenException):
        rek.get_celebrity_recognition(JobId=job, NextToken="forged.token")


def test_client_request_token_is_idempotent(world):
    rek = world.rek
    assert rek.start_celebrity_recognition(**world.start)["JobId"] == world.job
    with pytest.raises(rek.exceptions.IdempotentParameterMismatchException):
        rek.start_celebrity_recognition(**{**world.start, "JobTag": "another"})


def test_bad_job_ids_and_other_organisations_get_typed_errors(world):
    rek = world.rek
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.get_celebrity_recognition(JobId="0123456789abcdef0123456789abcdef")
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.get_face_detection(JobId=world.job)  # not that kind of job
    with pytest.raises(rek.exceptions.InvalidS3ObjectException):
        rek.start_celebrity_recognition(Video=video(name="nope.mp4"))
    created = subprocess.run([*CANDOR, "keys", "create", "--org", "other", "--data-dir",
                              str(world.data_dir)], capture_output=True, text=True, timeout=120)
    other = client(world.port, key_lines(created.stdout))
    with pytest.raises(other.exceptions.ResourceNotFoundException):
        other.get_celebrity_recognition(JobId=world.job)


def test_completion_is_notified_and_recorded_in_the_ledger(world):
    deadline = time.time() + 30
    while not any(m["JobId"] == world.job for m in Hook.received) and time.time() < deadline:
        time.sleep(0.2)
    message = next(m for m in Hook.received if m["JobId"] == world.job)
    assert message["API"] == "StartCelebrityRecognition" and message["Status"] == "SUCCEEDED"
    assert message["JobTag"] == "celebs"
    from candor.governance.ledger import Ledger
    from candor.store import open_store

    store = open_store(world.data_dir, store_url())
    try:
        records = [r for r in Ledger.for_store(store).iter_records()
                   if r["request_id"] == world.job]
        lin = store.celebrity_by_name(LIN[0]).celebrity_id
    finally:
        store.close()
    assert records, "no ledger record of the finished job"
    rec = records[-1]
    assert rec["operation"] == "StartCelebrityRecognition" and rec["decision"] == "allow"
    assert rec["image_sha256"] and rec["faces_found"] > 0
    assert rec["threshold"] == gallery_threshold(23)
    assert lin in {m["CelebrityId"] for m in rec["matches"]}
    assert rec["details"]["gallery_version"] >= 1 and rec["details"]["gallery_people"] == 23


# -- in process --------------------------------------------------------------------------------
def local(tmp: Path, category: str = "general", policy=None):
    service = Service(data_dir=tmp)
    service.__dict__["local_buckets"] = {"videos": VIDEOS}
    return service, governed(service, Principal.local("operator", category), policy)


def test_the_policy_can_deny_it(tmp_path):
    service, police = local(tmp_path / "d", "law_enforcement", "moratorium-2020")
    with pytest.raises(AccessDenied, match="moratorium"):
        police.call("StartCelebrityRecognition", {"Video": video()})
    rules = tmp_path / "policy.yaml"
    rules.write_text("version: 1\nname: no-celebrities-in-video\ndefault: allow\n"
                     "audit: biometric\nrules:\n  - id: no-video-celebrities\n"
                     "    match: {category: research, operation: StartCelebrityRecognition}\n"
                     "    effect: deny\n")
    _, research = local(tmp_path / "d", "research", str(rules))
    with pytest.raises(AccessDenied, match="no-video-celebrities"):
        research.call("StartCelebrityRecognition", {"Video": video()})
    # another category gets past the policy, to the empty gallery
    _, general = local(tmp_path / "d", "general", str(rules))
    with pytest.raises(ResourceNotFound, match="gallery is empty"):
        general.call("StartCelebrityRecognition", {"Video": video()})
    from candor.governance.ledger import Ledger

    denied = [r for r in Ledger.for_store(store_of(service)).iter_records()
              if r["operation"] == "StartCelebrityRecognition" and r["decision"] == "deny"]
    assert {r["rule"] for r in denied} == {"police-moratorium-2020", "no-video-celebrities"}
    assert store_of(service).unfinished() == []  # no job was written


def test_removing_a_person_removes_their_sightings_and_the_cli_table(tmp_path):
    home = tmp_path / "home"
    import_gallery(home, tmp_path)
    cli = [*CANDOR, "video", "celebrities", str(VIDEOS / CLIP), "--fps", "2",
           "--data-dir", str(home)]
    table = subprocess.run(cli, capture_output=True, text=True, timeout=900,
                           env={**__import__("os").environ, "COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert LIN[0] in table.stdout and "celebrity(ies)" in table.stdout
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    resp = json.loads(out.stdout)
    assert resp["JobStatus"] == "SUCCEEDED" and "NextToken" not in resp
    assert any(c["Celebrity"]["Name"] == LIN[0] for c in resp["Celebrities"])
    service, gate = local(home)
    store = store_of(service)
    lin = store.celebrity_by_name(LIN[0]).celebrity_id
    store.remove_celebrity(lin)
    again = gate.call("GetCelebrityRecognition", {"JobId": resp["JobId"]})
    assert all(c["Celebrity"]["Id"] != lin for c in again["Celebrities"])
    runner_of(service).stop()
