"""The one validator: every door gets the same Rekognition-style message, hostile numbers and
nesting get typed errors, and what passes is normalised before any handler sees it."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from candor.api import protocol
from candor.errors import InvalidImageFormat, InvalidParameter, SerializationException
from candor.face.imaging import Image
from candor.governance.policy import known_operations
from candor.service import Service
from candor.service.model import rekognition_model
from candor.service.validation import validate

X = base64.b64encode(b"x").decode()


def http_error(operation: str, wire: dict) -> str:
    with pytest.raises(InvalidParameter) as info:
        protocol.decode_input(protocol.operation_model(operation), wire)
    return info.value.message


def python_error(tmp_path, operation: str, params: dict) -> str:
    with pytest.raises(InvalidParameter) as info:
        Service(data_dir=tmp_path).call(operation, params)
    return info.value.message


@pytest.mark.parametrize("operation, wire, native", [
    ("SearchFacesByImage", {"CollectionId": "c", "Image": {"Bytes": X}, "MaxFaces": 0},
     {"CollectionId": "c", "Image": {"Bytes": b"x"}, "MaxFaces": 0}),
    ("CompareFaces", {"SourceImage": {"Bytes": X}, "TargetImage": {"Bytes": X},
                      "SimilarityThreshold": "high"},
     {"SourceImage": {"Bytes": b"x"}, "TargetImage": {"Bytes": b"x"},
      "SimilarityThreshold": "high"}),
    ("DetectFaces", {"Image": {"Bytes": X}, "Attributes": ["EVERYTHING"]},
     {"Image": {"Bytes": b"x"}, "Attributes": ["EVERYTHING"]}),
    ("DetectFaces", {}, {}),
    ("CreateCollection", {"CollectionId": ["a"]}, {"CollectionId": ["a"]}),
])
def test_every_door_gets_the_same_message(tmp_path, operation, wire, native):
    """Before one validator, DetectFaces' checks in Python said 'Attributes must be a list of
    strings' while HTTP quoted the model; now both quote the model, word for word."""
    message = http_error(operation, wire)
    assert message == python_error(tmp_path, operation, native)
    assert message.startswith("1 validation error detected: Value ")
    assert "failed to satisfy constraint: Member must" in message


def test_all_errors_are_reported_as_rekognition_does():
    with pytest.raises(InvalidParameter) as info:
        validate("SearchFacesByImage", {"CollectionId": "bad id!", "MaxFaces": 0,
                                        "QualityFilter": "BEST"})
    message = info.value.message
    assert message.startswith("4 validation errors detected: ")
    for where in ("collectionId", "maxFaces", "qualityFilter", "image"):
        assert f"at '{where}'" in message
    assert message.count("; ") == 3


@pytest.mark.parametrize("member, value", [
    ("MaxFaces", 10**400), ("MaxFaces", -(10**400)), ("MaxFaces", 1e400),
    ("FaceMatchThreshold", 10**400), ("FaceMatchThreshold", 1e400),
    ("FaceMatchThreshold", float("nan")), ("FaceMatchThreshold", -1e-300),
])
def test_numbers_outside_the_model_are_invalid_parameters(member, value):
    with pytest.raises(InvalidParameter, match=f"at '{member[0].lower() + member[1:]}'"):
        validate("SearchFacesByImage", {"CollectionId": "c", "Image": {"Bytes": b"x"},
                                        member: value})


def test_integers_are_bounded_by_java_widths_where_the_model_has_no_max():
    """IndexFaces' MaxFaces has only a minimum; 2**31 would overflow Rekognition's int (and
    10**400 overflowed SQLite's)."""
    params = {"CollectionId": "c", "Image": {"Bytes": b"x"}}
    with pytest.raises(InvalidParameter, match="less than or equal to 2147483647"):
        validate("IndexFaces", {**params, "MaxFaces": 2**31})
    assert validate("IndexFaces", {**params, "MaxFaces": 2**31 - 1})


def test_negative_zero_is_normalised_at_the_door():
    got = validate("CompareFaces", {"SourceImage": {"Bytes": b"x"},
                                    "TargetImage": {"Bytes": b"x"}, "SimilarityThreshold": -0.0})
    assert math.copysign(1.0, got["SimilarityThreshold"]) == 1.0
    wire = protocol.decode_input(protocol.operation_model("CompareFaces"), {
        "SourceImage": {"Bytes": X}, "TargetImage": {"Bytes": X}, "SimilarityThreshold": -0.0})
    assert math.copysign(1.0, wire["SimilarityThreshold"]) == 1.0


def test_in_process_blobs_take_bytes_or_a_decoded_image():
    image = Image(pixels=np.zeros((90, 90, 3), np.uint8), format="PNG", sha256="0" * 64)
    assert validate("DetectFaces", {"Image": {"Bytes": image}})["Image"]["Bytes"] is image
    assert validate("DetectFaces", {"Image": {"Bytes": bytearray(b"ab")}})["Image"]["Bytes"] == b"ab"
    with pytest.raises(InvalidParameter, match="image.bytes"):
        validate("DetectFaces", {"Image": {"Bytes": 12}})
    with pytest.raises(InvalidImageFormat, match="image.bytes"):  # an Image is no wire value
        protocol.decode_input(protocol.operation_model("DetectFaces"), {"Image": {"Bytes": image}})


def test_hostile_strings_are_quoted_cut_short():
    with pytest.raises(InvalidParameter) as info:
        validate("CreateCollection", {"CollectionId": "\x00" * 100_000})
    assert len(info.value.message) < 400
    assert "\\x00" in info.value.message and "\x00" not in info.value.message


def test_many_errors_are_counted_but_listed_briefly():
    with pytest.raises(InvalidParameter) as info:
        validate("DeleteFaces", {"CollectionId": "c", "FaceIds": ["bad id!"] * 50})
    assert info.value.message.startswith("50 validation errors detected: ")
    assert info.value.message.endswith("; and 40 more")


@pytest.mark.parametrize("depth, ok", [(4, True), (64, True), (65, False), (1000, False),
                                       (100_000, False)])
def test_nesting_is_limited_before_parsing(depth, ok):
    """1,000 nested arrays raised RecursionError (a 500) in the JSON parser."""
    body = b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    if ok:
        assert "a" in protocol.parse_body(body)
    else:
        with pytest.raises(SerializationException, match="64 deep"):
            protocol.parse_body(body)


def test_brackets_inside_strings_do_not_count():
    body = b'{"a": "' + b"[" * 5000 + b'\\"' + b"{" * 5000 + b'"}'
    assert protocol.nesting_depth(body) == 1
    assert protocol.parse_body(body)["a"].startswith("[[")


def test_one_model_for_every_reader():
    assert protocol.service_model() is rekognition_model()
    assert set(rekognition_model().operation_names) <= known_operations()
