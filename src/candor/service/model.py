"""botocore's model of Rekognition, loaded once for every door.

The model the AWS SDKs are generated from is candor's wire spec: the HTTP protocol, the request
validator and the policy checker all read it from here, so they cannot disagree about it.
This module imports nothing of candor's, so both ``service`` and ``api`` can use it.
"""

from __future__ import annotations

from functools import lru_cache

from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel


@lru_cache(maxsize=1)
def rekognition_model() -> ServiceModel:
    """botocore's model of Rekognition (parsed once, then cached)."""
    return ServiceModel(Loader().load_service_model("rekognition", "service-2"), "rekognition")


def operation_model(name: str) -> OperationModel | None:
    """The model of operation ``name``, or None when Rekognition has no such operation."""
    model = rekognition_model()
    return model.operation_model(name) if name in model.operation_names else None
