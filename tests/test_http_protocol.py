"""AWS JSON 1.1 decoding and encoding against botocore's Rekognition model, without a server."""

from __future__ import annotations

import base64
import datetime as dt
import json

import numpy as np
import pytest

from candor.api import protocol
from candor.errors import ImageTooLarge, InvalidImageFormat, InvalidParameter


def decode(operation: str, params: dict) -> dict:
    return protocol.decode_input(protocol.operation_model(operation), params)


def test_blobs_are_base64_decoded():
    got = decode("DetectFaces", {"Image": {"Bytes": base64.b64encode(b"\xff\xd8\xffjpeg").decode()}})
    assert got["Image"]["Bytes"] == b"\xff\xd8\xffjpeg"


@pytest.mark.parametrize("value, error", [
    ("not base64!", InvalidImageFormat),
    (12, InvalidImageFormat),
    ("", InvalidParameter),  # min length 1: a validation error, as in-process callers get
    (base64.b64encode(bytes(5 * 1024 * 1024 + 1)).decode(), ImageTooLarge),
])
def test_bad_image_bytes(value, error):
    with pytest.raises(error):
        decode("DetectFaces", {"Image": {"Bytes": value}})


@pytest.mark.parametrize("params, where", [
    ({"CollectionId": "c", "Image": {"Bytes": "eA=="}, "MaxFaces": True}, "maxFaces"),
    ({"CollectionId": "c", "Image": {"Bytes": "eA=="}, "MaxFaces": 1.5}, "maxFaces"),
    ({"CollectionId": "c", "Image": {"Bytes": "eA=="}, "MaxFaces": 0}, "maxFaces"),
    ({"CollectionId": "c", "Image": {"Bytes": "eA=="}, "FaceMatchThreshold": "high"},
     "faceMatchThreshold"),
    ({"CollectionId": "bad id!", "Image": {"Bytes": "eA=="}}, "collectionId"),
    ({"CollectionId": "c", "Image": {"Bytes": "eA=="}, "QualityFilter": "BEST"}, "qualityFilter"),
    ({"Image": {"Bytes": "eA=="}}, "collectionId"),
    ({"CollectionId": "c", "Image": ["not", "an", "object"]}, "image"),
])
def test_model_constraints(params, where):
    with pytest.raises(InvalidParameter, match=f"at '{where}'"):
        decode("SearchFacesByImage", params)


def test_unknown_members_and_nulls_are_ignored():
    got = decode("SearchFacesByImage", {"CollectionId": "c", "Image": {"Bytes": "eA=="},
                                        "MaxFaces": None, "FutureMember": 1})
    assert got == {"CollectionId": "c", "Image": {"Bytes": b"x"}}


def test_floats_accept_integers():
    got = decode("CompareFaces", {"SourceImage": {"Bytes": "eA=="},
                                  "TargetImage": {"Bytes": "eA=="}, "SimilarityThreshold": 90})
    assert got["SimilarityThreshold"] == 90.0


@pytest.mark.parametrize("body", [b"{", b"[]", b"NaN", b'{"a": NaN}', b"\xff"])
def test_malformed_bodies(body):
    with pytest.raises(protocol.SerializationException):
        protocol.parse_body(body)


def test_empty_body_is_an_empty_request():
    assert protocol.parse_body(b"") == {}


def test_encoding_as_aws_json():
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    out = json.loads(protocol.encode_output({
        "At": when, "Naive": when.replace(tzinfo=None), "Blob": b"\x00\x01",
        "Score": np.float32(0.5), "Count": np.int64(3), "List": np.array([1, 2])}))
    assert out == {"At": when.timestamp(), "Naive": when.timestamp(),
                   "Blob": base64.b64encode(b"\x00\x01").decode(), "Score": 0.5, "Count": 3,
                   "List": [1, 2]}
    with pytest.raises(ValueError):
        protocol.encode_output({"Bad": float("nan")})


def test_image_counts_size_the_body_limits():
    assert protocol.image_count(protocol.operation_model("DetectFaces")) == 1
    assert protocol.image_count(protocol.operation_model("CompareFaces")) == 2
    assert protocol.image_count(protocol.operation_model("ListFaces")) == 0
