"""DetectFaces and CompareFaces on wire dicts (Rekognition request and response shapes)."""

from __future__ import annotations

from typing import Any

from candor.service import Service, operation
from candor.service.common import request_image


@operation("DetectFaces")
def detect_faces(service: Service, params: dict[str, Any]) -> dict[str, Any]:
    image = request_image(params)
    return service.engine.detect_faces(image, params.get("Attributes") or ["DEFAULT"]).to_dict()


@operation("CompareFaces")
def compare_faces(service: Service, params: dict[str, Any]) -> dict[str, Any]:
    source = request_image(params, "SourceImage")
    target = request_image(params, "TargetImage")
    threshold = params.get("SimilarityThreshold", 80.0)
    return service.engine.compare_faces(source, target, threshold).to_dict()
