"""botocore's model of Rekognition, with candor's own operations merged in, loaded once for
every door.

The model the AWS SDKs are generated from is candor's wire spec: the HTTP protocol, the request
validator and the policy checker all read it from here, so they cannot disagree about it.

candor's additions (``SearchFacesInImage``, ``GetReviewResult``, the ``ReviewId`` member of
the search and compare responses) ship as a botocore *service-model extension*:
``candor/data/sdk/rekognition/2016-06-27/service-2.sdk-extras.json``, whose ``merge`` section
botocore deep-merges into Rekognition's model when the folder is on its data path. boto3 users
get them with ``AWS_DATA_PATH=$(candor sdk-path)``; candor loads the same file here, so its
operations are validated exactly like Rekognition's, and Rekognition's own operations keep
their exact shapes (the extension only adds operations and new shapes).
This module imports nothing of candor's, so both ``service`` and ``api`` can use it.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from botocore.loaders import Loader
from botocore.model import OperationModel, ServiceModel

EXTRAS_FILE = "rekognition/2016-06-27/service-2.sdk-extras.json"


def sdk_path() -> Path:
    """The folder to put on botocore's data path (``AWS_DATA_PATH``) for candor's operations."""
    return Path(str(resources.files("candor") / "data" / "sdk"))


#: the search path holding the extension (the same as :func:`sdk_path`)
SDK_DATA_DIR = sdk_path()


@lru_cache(maxsize=1)
def rekognition_model() -> ServiceModel:
    """botocore's model of Rekognition plus candor's extension (parsed once, then cached)."""
    loader = Loader(extra_search_paths=[str(sdk_path())])
    return ServiceModel(loader.load_service_model("rekognition", "service-2"), "rekognition")


@lru_cache(maxsize=1)
def candor_operations() -> frozenset[str]:
    """The operations the extension adds (candor's own, not Rekognition's)."""
    import json

    extras = json.loads((sdk_path() / EXTRAS_FILE).read_text())
    return frozenset(extras["merge"]["operations"])


def operation_model(name: str) -> OperationModel | None:
    """The model of operation ``name``, or None when neither Rekognition nor candor has it."""
    model = rekognition_model()
    return model.operation_model(name) if name in model.operation_names else None
