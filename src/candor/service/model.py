"""botocore's model of Rekognition, loaded once for every door.

The model the AWS SDKs are generated from is candor's wire spec: the HTTP protocol, the request
validator and the policy checker all read it from here, so they cannot disagree about it.
candor's own additions (``GetReviewResult``, the ``ReviewId`` response member) are botocore
"sdk-extras" under :data:`SDK_DATA_DIR`, merged into the model as botocore merges them for a
client run with ``AWS_DATA_PATH`` pointing there. This module imports nothing of candor's, so
both ``service`` and ``api`` can use it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel

#: the search path holding ``rekognition/2016-06-27/service-2.sdk-extras.json``
SDK_DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "sdk"


@lru_cache(maxsize=1)
def rekognition_model() -> ServiceModel:
    """botocore's model of Rekognition with candor's extras merged (parsed once, then cached)."""
    loader = Loader(extra_search_paths=[str(SDK_DATA_DIR)])
    return ServiceModel(loader.load_service_model("rekognition", "service-2"), "rekognition")


def operation_model(name: str) -> OperationModel | None:
    """The model of operation ``name``, or None when Rekognition has no such operation."""
    model = rekognition_model()
    return model.operation_model(name) if name in model.operation_names else None
