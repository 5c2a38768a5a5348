"""candor: self-hosted face recognition with accountability built in.

    >>> import candor
    >>> result = candor.detect_faces("photo.jpg")
    >>> [face.bounding_box for face in result.face_details]
    >>> candor.compare_faces("id-card.jpg", "selfie.jpg").face_matches

    >>> rek = candor.connect("/srv/candor", org="thorn", category="child_safety",
    ...                      policy="moratorium-2020")
    >>> rek.call("SearchFacesByImage", {"CollectionId": "missing", "Image": {...}})

Results are dataclasses; ``.to_dict()`` gives Amazon Rekognition's response shape.
Every call goes through the same service layer as the CLI and the HTTP API, behind the same
governance gate: the package exports no ungoverned service (the bare
:class:`candor.service.Service` is for the server and the service layer's own tests).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from candor.config import Settings
from candor.errors import (
    CandorError,
    ImageTooLarge,
    InvalidImageFormat,
    InvalidParameter,
    ResourceAlreadyExists,
    ResourceNotFound,
)
from candor.face.imaging import Image, load_image
from candor.face.results import CompareFacesResult, DetectFacesResult
from candor.service import Service

__version__ = "0.1.0"

__all__ = [
    "CandorError", "CompareFacesResult", "DetectFacesResult", "Image", "ImageTooLarge",
    "InvalidImageFormat", "InvalidParameter", "ResourceAlreadyExists", "ResourceNotFound",
    "compare_faces", "connect", "default_service", "detect_faces", "load_image",
]

_default = None
_lock = threading.Lock()


def connect(data_dir: str | os.PathLike | None = None, *, org: str | None = None,
            category: str | None = None, policy: str | None = None,
            authorization_reference: str | None = None, settings: Settings | None = None):
    """A governed candor: ``.call(operation, params)`` acts as organisation ``org`` in use-case
    ``category`` under ``policy`` (a file or a shipped policy's name), each call decided by the
    policy and recorded in the audit ledger. None means the setting's value (``settings``, by
    default read from the environment: CANDOR_ORG, CANDOR_CATEGORY, CANDOR_POLICY...)."""
    from candor.governance.gate import governed

    base = settings if settings is not None else Settings.load()
    base = base.with_(data_dir=Path(data_dir) if data_dir else None, org=org, category=category,
                      policy=policy, authorization_reference=authorization_reference)
    return governed(Service(settings=base))


def default_service():
    """The process-wide service used by the module-level functions (data dir and backend
    from ``CANDOR_DATA_DIR`` / ``CANDOR_BACKEND``), behind the governance gate: calls act as
    the local principal (``CANDOR_ORG`` / ``CANDOR_CATEGORY``) under ``CANDOR_POLICY``
    (default: open) and are recorded in the audit ledger, like HTTP calls."""
    global _default
    with _lock:
        if _default is None:
            _default = connect()
        return _default


def image_param(image: Image | bytes | str | os.PathLike) -> dict:
    """A request's ``Image`` member from bytes, a path or a loaded Image."""
    if isinstance(image, Image):
        return {"Bytes": image}
    if isinstance(image, (str, Path, os.PathLike)):
        image = load_image(image)  # size and format checked before the bytes travel
        return {"Bytes": image}
    return {"Bytes": bytes(image)}


def detect_faces(image: Image | bytes | str | os.PathLike,
                 attributes: Iterable[str] = ("DEFAULT",)) -> DetectFacesResult:
    """Every face in ``image`` (up to 100, largest first) with box, confidence, landmarks,
    pose and quality; ``attributes=["ALL"]`` adds EyesOpen and MouthOpen."""
    response = default_service().call(
        "DetectFaces", {"Image": image_param(image), "Attributes": list(attributes)})
    return DetectFacesResult.from_dict(response)


def compare_faces(source: Image | bytes | str | os.PathLike,
                  target: Image | bytes | str | os.PathLike,
                  similarity_threshold: float = 80.0) -> CompareFacesResult:
    """The largest face in ``source`` against every face in ``target``: FaceMatches at or
    above ``similarity_threshold`` (0-100), the rest as UnmatchedFaces."""
    response = default_service().call("CompareFaces", {
        "SourceImage": image_param(source), "TargetImage": image_param(target),
        "SimilarityThreshold": similarity_threshold})
    return CompareFacesResult.from_dict(response)
