"""Human review, enforced (issue 18): under the shipped eu-ai-act policy a law-enforcement
search returns no matches and a review id; only what a reviewer confirms is released by
GetReviewResult, to the asking organisation only; the ledger shows request, decision and
release. Through a real `candor serve`, boto3 with the SDK model extension, and the CLI."""

from __future__ import annotations

import json
import subprocess

import pytest

pytest.importorskip("boto3")
from postgres_helper import db_dicts
from review_helper import ORG, REF, extended_client, held_search, populate  # noqa: E402
from serve_helper import CANDOR, SAMPLES, serve  # noqa: E402

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="test photos not found")


def cli(data, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CANDOR, "--policy", "eu-ai-act", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def server(tmp_path_factory, store_backend):
    tmp = tmp_path_factory.mktemp("review")
    data = tmp / "data"
    with serve(data, tmp, "--policy", "eu-ai-act") as url:
        key_id, police = extended_client(url, data, ORG, "law_enforcement")
        populate(police)
        yield url, data, key_id, police


def records(data, where: str = "1=1") -> list[dict]:
    rows = db_dicts(data, f"SELECT * FROM audit_records WHERE {where} ORDER BY seq")
    return [{**dict(r), "details": json.loads(r["details"] or "null"),
             "matches": json.loads(r["matches"] or "null")} for r in rows]


def test_held_search_is_released_only_as_confirmed(server):
    url, data, key_id, police = server
    resp = held_search(police)
    assert resp["FaceMatches"] == []
    review_id = resp["ReviewId"]
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-candor-review-id"] == review_id

    pending = police.get_review_result(ReviewId=review_id)
    assert pending["Status"] == "PENDING" and "FaceMatches" not in pending

    shown = json.loads(cli(data, "review", "show", review_id, "--json").stdout)
    assert shown["authorization_reference"] == REF and shown["org"] == ORG
    assert shown["has_probe"] is True
    cands = [c["candidate"] for c in shown["candidates"]]
    assert len(cands) >= 2
    confirmed, rejected = cands[0], cands[1:]
    done = cli(data, "review", "decide", review_id, "--confirm", confirmed, "--reject-others",
               "--reason", "checked against the file photo")
    assert done.returncode == 0, done.stderr

    result = police.get_review_result(ReviewId=review_id)
    assert result["Status"] == "DECIDED"
    assert [m["Face"]["FaceId"] for m in result["FaceMatches"]] == [confirmed]
    assert result["RejectedCount"] == len(rejected)
    # the probe crop went with the decision; a second decision is refused
    assert json.loads(cli(data, "review", "show", review_id, "--json").stdout)["has_probe"] is False
    again = cli(data, "review", "decide", review_id, "--confirm", rejected[0], "--reject-others",
                "--reason", "changed my mind")
    assert again.returncode == 2 and "not pending" in again.stderr

    # the ledger: request (held, with the review id), decision, release of the confirmed only
    (req,) = [r for r in records(data, "operation = 'SearchFacesByImage'")
              if (r["details"] or {}).get("review_id") == review_id]
    assert req["details"]["authorization_reference"] == REF
    assert {m["Candidate"] for m in req["matches"]} == set(cands)
    (decision,) = [r for r in records(data, "operation = 'DecideReview'")
                   if r["details"]["request"]["ReviewId"] == review_id]
    verdicts = json.loads(decision["details"]["request"]["Decisions"])
    assert {v["candidate"]: v["verdict"] for v in verdicts} == {
        confirmed: "CONFIRMED", **{c: "REJECTED" for c in rejected}}
    releases = records(data, f"operation = 'GetReviewResult' AND principal = '{key_id}'")
    released = {m.get("FaceId") for r in releases for m in r["matches"] or []}
    assert released == {confirmed}


def test_another_organisation_cannot_read_a_review(server):
    url, data, _, police = server
    review_id = held_search(police)["ReviewId"]
    _, press = extended_client(url, data, "daily-news", "media")
    with pytest.raises(press.exceptions.ResourceNotFoundException):
        press.get_review_result(ReviewId=review_id)
    with pytest.raises(press.exceptions.InvalidParameterException):
        press.get_review_result(ReviewId="no spaces allowed")


def test_every_candidate_needs_a_verdict_and_a_reason(server):
    _, data, _, police = server
    review_id = held_search(police)["ReviewId"]
    first = json.loads(cli(data, "review", "show", review_id, "--json").stdout)["candidates"][0]
    partial = cli(data, "review", "decide", review_id, "--confirm", first["candidate"],
                  "--reason", "x")
    assert partial.returncode == 2 and "every candidate needs a verdict" in partial.stderr
    no_reason = cli(data, "review", "decide", review_id, "--confirm", first["candidate"],
                    "--reject-others")
    assert no_reason.returncode == 2 and "reason is required" in no_reason.stderr
    assert police.get_review_result(ReviewId=review_id)["Status"] == "PENDING"
