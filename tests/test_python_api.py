"""``import candor``: typed results that turn into Rekognition's shapes, typed errors."""

from __future__ import annotations

import pytest

import candor
from candor.face.results import CompareFacesResult, DetectFacesResult


def test_detect_faces_typed_and_round_trips(samples):
    result = candor.detect_faces(samples / "groups" / "kit_with_rose.jpg", attributes=["ALL"])
    assert isinstance(result, DetectFacesResult)
    assert len(result.face_details) == 2
    face = result.face_details[0]
    assert 0 < face.bounding_box.width < 1 and face.eyes_open is not None
    d = result.to_dict()
    assert DetectFacesResult.from_dict(d).to_dict() == d
    # the same bytes through the service door give the same answer
    raw = (samples / "groups" / "kit_with_rose.jpg").read_bytes()
    assert candor.detect_faces(raw, attributes=["ALL"]).to_dict() == d


def test_compare_faces(samples):
    result = candor.compare_faces(samples / "identities" / "kit_harington" / "john1.jpeg",
                                  samples / "groups" / "kit_with_rose.jpg")
    assert isinstance(result, CompareFacesResult)
    assert len(result.face_matches) == 1 and len(result.unmatched_faces) == 1
    assert result.face_matches[0].similarity >= 80


def test_typed_errors():
    with pytest.raises(candor.InvalidImageFormat):
        candor.detect_faces(b"definitely not an image")
    with pytest.raises(candor.InvalidParameter):
        candor.detect_faces(b"")
    with pytest.raises(candor.CandorError) as info:
        candor.default_service().call("NoSuchOperation", {})
    assert info.value.code == "InvalidParameterException"


def test_s3object_in_process_is_a_typed_error_not_a_crash():
    with pytest.raises(candor.InvalidParameter, match="S3Object"):
        candor.default_service().call(
            "DetectFaces", {"Image": {"S3Object": {"Bucket": "bucket", "Name": "n.jpg"}}})
