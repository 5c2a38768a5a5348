"""The false-positive identification rate of a search and the size-aware default threshold."""

from __future__ import annotations

import math

import pytest

from candor.scoring import fpir
from candor.scoring.similarity import IDENTIFICATION_THRESHOLD, false_match_rate


def test_fpir_formula():
    g = fpir.search_false_match_rate
    assert fpir.fpir(80, 1) == pytest.approx(g(80))
    assert fpir.fpir(90, 100) == pytest.approx(1 - (1 - g(90)) ** 100)
    assert fpir.fpir(80, 25_000) > 0.99          # the ACLU's gallery at Rekognition's 80
    assert fpir.fpir(99, 0) == 0.0
    # never above the union bound N G(S)
    for s in (80, 85, 90, 95, 99):
        for n in (1, 10, 1000):
            assert fpir.fpir(s, n) <= n * g(s) + 1e-15


def test_search_fmr_is_measured_and_below_the_table_promise():
    """G(S) is the measured rate of different people (FairFace half 1 without its photos of
    one person seen twice), below the table's promise, whose FairFace "impostors" include
    same-person pairs; monotone, continuous at its knots and beyond them."""
    g = fpir.search_false_match_rate
    for s, rate in fpir.SEARCH_FMR:
        assert g(s) == pytest.approx(rate)
    levels = [60 + i / 4 for i in range(161)]
    rates = [g(s) for s in levels]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    for s in (85.0, 90.0, 93.46, 96.5, 99.0):
        assert g(s) < false_match_rate(s)
    first, last = fpir.SEARCH_FMR[0][0], fpir.SEARCH_FMR[-1][0]
    for edge in (first, last):
        assert g(edge - 1e-9) == pytest.approx(g(edge + 1e-9), rel=1e-6)


def test_the_same_person_review_is_the_fit_sets():
    """The reviewed FairFace pairs the fit removes (bench/fpir-fairface-same-person.json)."""
    import json
    from pathlib import Path

    path = Path(__file__).parents[1] / "bench" / "fpir-fairface-same-person.json"
    rows = json.loads(path.read_text())["pairs"]
    same = [r for r in rows if r[4] == "same"]
    assert {r[0] for r in rows} == {1, 2} and len(same) == 134
    assert all(r[3] >= 92 for r in rows)


def test_similarity_for_fmr_inverts_the_table_promise():
    for s in (55.0, 70.0, 80.0, 85.0, 90.0, 93.5, 99.0):
        assert fpir.similarity_for_fmr(false_match_rate(s)) == pytest.approx(s)


@pytest.mark.parametrize("size", [1, 31, 32, 100, 243, 1000])
def test_default_holds_the_target_where_it_can(size):
    t = fpir.default_search_threshold(size)
    assert IDENTIFICATION_THRESHOLD <= t <= fpir.MAX_CALIBRATED
    assert fpir.fpir(t, size) <= fpir.TARGET_FPIR + 1e-12
    if t > IDENTIFICATION_THRESHOLD:       # the lowest such threshold (to 0.01)
        assert fpir.fpir(t - 0.02, size) > fpir.TARGET_FPIR


def test_default_is_monotone_in_collection_size():
    sizes = [0, 1, 2, 5, 10, 31, 32, 50, 100, 243, 500, 999, 1000, 1001, 5000, 25_000, 10**7]
    values = [fpir.default_search_threshold(n) for n in sizes]
    assert values == sorted(values)
    assert values[0] == IDENTIFICATION_THRESHOLD           # a small collection: the floor
    assert values[-1] == fpir.MAX_CALIBRATED                # beyond calibration: capped
    assert values[sizes.index(100)] > IDENTIFICATION_THRESHOLD


def test_describe_says_when_the_target_cannot_be_met():
    d = fpir.describe(25_000)
    assert d["DefaultSearchThreshold"] == fpir.MAX_CALIBRATED
    assert not d["FpirTargetMet"] and d["FpirAtDefault"] > fpir.TARGET_FPIR
    small = fpir.describe(10)
    assert small["FpirTargetMet"] and small["DefaultSearchThreshold"] == IDENTIFICATION_THRESHOLD
    assert [r["Similarity"] for r in small["FpirAtThresholds"]] == list(fpir.COMMON_THRESHOLDS)
    assert math.isclose(small["FpirAtThresholds"][0]["Fpir"], fpir.fpir(80, 10))


def test_search_without_threshold_runs_at_the_size_aware_default(samples, tmp_path):
    """End to end: index N faces, search without a threshold through the gate; the ledger
    records the threshold the search ran with and the collection size; DescribeCollection
    reports the same default."""
    from candor.face.imaging import load_image
    from candor.governance.gate import governed
    from candor.service import Service

    svc = governed(Service(data_dir=tmp_path / "d"))
    svc.call("CreateCollection", {"CollectionId": "gallery"})
    group = load_image(samples / "groups" / "selfie-many-people.jpg")
    faces = 0
    while faces < 40:   # > 31 faces: the default rises above the identification floor
        r = svc.call("IndexFaces", {"CollectionId": "gallery", "Image": {"Bytes": group}})
        assert r["FaceRecords"]
        faces += len(r["FaceRecords"])
    expected = fpir.default_search_threshold(faces)
    assert expected > IDENTIFICATION_THRESHOLD

    probe = load_image(samples / "identities" / "obama" / "obama.jpg")
    resp = svc.call("SearchFacesByImage", {"CollectionId": "gallery", "Image": {"Bytes": probe}})
    rec = svc.gate.ledger.tail(1)[0]
    assert rec["operation"] == "SearchFacesByImage" and rec["decision"] == "allow"
    assert rec["threshold"] == pytest.approx(expected)
    assert rec["details"]["collection_size"] == faces
    assert all(m["Similarity"] >= expected for m in resp["FaceMatches"])

    # an explicit threshold keeps its per-pair meaning and records no size
    svc.call("SearchFacesByImage", {"CollectionId": "gallery", "Image": {"Bytes": probe},
                                    "FaceMatchThreshold": 70})
    rec = svc.gate.ledger.tail(1)[0]
    assert rec["threshold"] == 70.0 and "collection_size" not in (rec["details"] or {})

    d = svc.call("DescribeCollection", {"CollectionId": "gallery"})
    assert d["CandorSearchFpir"]["Faces"]["CollectionSize"] == faces
    assert d["CandorSearchFpir"]["Faces"]["DefaultSearchThreshold"] == pytest.approx(expected)

    from typer.testing import CliRunner

    from candor.cli import app

    out = CliRunner().invoke(app, ["collection", "describe", "gallery", "--data-dir",
                                   str(tmp_path / "d")], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "FPIR" in out.output and f"{expected:g} (default)" in out.output

    # a user search counts the faces behind the users' templates, not the users: one user
    # of all N faces gets the default of N faces (a template's impostor tail is heavier than
    # a photo's: docs/fairness.md section 8)
    d = svc.call("DescribeCollection", {"CollectionId": "gallery"})
    assert d["UserCount"] == 0 and d["CandorSearchFpir"]["Users"]["CollectionSize"] == 0
    ids = [f["FaceId"] for f in svc.call("ListFaces", {"CollectionId": "gallery",
                                                        "MaxResults": 100})["Faces"]]
    assert len(ids) == faces
    svc.call("CreateUser", {"CollectionId": "gallery", "UserId": "everyone"})
    r = svc.call("AssociateFaces", {"CollectionId": "gallery", "UserId": "everyone",
                                    "FaceIds": ids, "UserMatchThreshold": 0.0})
    assert len(r["AssociatedFaces"]) == faces
    svc.call("SearchUsersByImage", {"CollectionId": "gallery", "Image": {"Bytes": probe}})
    rec = svc.gate.ledger.tail(1)[0]
    assert rec["operation"] == "SearchUsersByImage" and rec["decision"] == "allow"
    assert rec["details"]["collection_size"] == faces == fpir.user_search_size(1, faces)
    assert rec["threshold"] == pytest.approx(expected)
    d = svc.call("DescribeCollection", {"CollectionId": "gallery"})
    assert d["UserCount"] == 1
    assert d["CandorSearchFpir"]["Users"]["CollectionSize"] == faces
    assert d["CandorSearchFpir"]["Users"]["DefaultSearchThreshold"] == pytest.approx(expected)


def test_user_search_size_counts_faces_behind_templates():
    assert fpir.user_search_size(81, 243) == 243
    assert fpir.user_search_size(0, 0) == 0
    # 81 templates of 3 faces: stricter than 81 single comparisons would be
    assert fpir.default_search_threshold(fpir.user_search_size(81, 243)) \
        > fpir.default_search_threshold(81)
