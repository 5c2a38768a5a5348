"""DetectFaces and CompareFaces on wire dicts (Rekognition request and response shapes)."""

from __future__ import annotations

from typing import Any

from candor.errors import InvalidParameter
from candor.face.imaging import Image, load_image
from candor.service import Service, operation


def request_image(params: dict[str, Any], key: str = "Image") -> Image:
    """Decode the ``Image`` member of a request: ``{"Bytes": b"..."}``. S3Object images are
    fetched by the HTTP service (``candor.api.s3``) and arrive here as Bytes."""
    spec = params.get(key)
    if not isinstance(spec, dict) or not spec:
        raise InvalidParameter(f"{key} is required: {{\"Bytes\": ...}} or {{\"S3Object\": ...}}")
    if "Bytes" in spec:
        data = spec["Bytes"]
        if isinstance(data, Image):  # in-process callers hand over an already decoded image
            return data
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidParameter(f"{key}.Bytes must be binary image data")
        return load_image(bytes(data))
    if "S3Object" in spec:
        raise InvalidParameter(f"{key}.S3Object is read only by the HTTP service (candor serve "
                               "--s3-endpoint-url); in-process calls pass Bytes")
    raise InvalidParameter(f"{key} must have Bytes or S3Object")


def _attributes(params: dict[str, Any]) -> list[str]:
    attributes = params.get("Attributes", ["DEFAULT"])
    if not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes):
        raise InvalidParameter("Attributes must be a list of strings such as [\"DEFAULT\"]")
    return attributes


def _threshold(params: dict[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameter(f"{name} must be a number from 0 to 100")
    return float(value)


@operation("DetectFaces")
def detect_faces(service: Service, params: dict[str, Any]) -> dict[str, Any]:
    image = request_image(params)
    return service.engine.detect_faces(image, _attributes(params)).to_dict()


@operation("CompareFaces")
def compare_faces(service: Service, params: dict[str, Any]) -> dict[str, Any]:
    source = request_image(params, "SourceImage")
    target = request_image(params, "TargetImage")
    threshold = _threshold(params, "SimilarityThreshold", 80.0)
    return service.engine.compare_faces(source, target, threshold).to_dict()
