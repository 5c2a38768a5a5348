"""What the operation families share: the store of a service, faces in Rekognition's shapes,
the request's image analysed, quality bars and the face-model check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from candor.errors import InvalidParameter, ResourceNotFound
from candor.face.engine import FACE_MODEL_VERSION
from candor.face.imaging import Image, load_image
from candor.service import Service
from candor.store import FaceRow, Store, open_store

MAX_FACES_PER_IMAGE = 100
MAX_FACES_PER_USER = 100
DEFAULT_LIST_RESULTS = 1000

#: Quality bars. A face fails a bar when any of its measures is below (or, for pose, above) the
#: bar's value; AUTO is LOW. Measures come from the engine's FaceDetail (Confidence, Quality,
#: Pose) and the face's pixel size.
QUALITY_BARS: dict[str, dict[str, float]] = {
    "LOW": {"confidence": 50, "min_side_px": 20, "max_angle": 75, "brightness": 5,
            "sharpness": 2},
    "MEDIUM": {"confidence": 80, "min_side_px": 40, "max_angle": 55, "brightness": 15,
               "sharpness": 8},
    "HIGH": {"confidence": 95, "min_side_px": 64, "max_angle": 35, "brightness": 25,
             "sharpness": 20},
}
QUALITY_BARS["AUTO"] = QUALITY_BARS["LOW"]


def store_of(service: Service) -> Store:
    """The store of the service's data dir (shared by every Service on the same directory)."""
    store = service.__dict__.get("_store")
    if store is None:
        store = service.__dict__["_store"] = open_store(
            service.data_dir, service.settings.database_url, service.settings.index_kind,
            service.settings.read_replica_url)
    return store


def request_image(params: dict[str, Any], key: str = "Image") -> Image:
    """Decode the (already validated) ``Image`` member of a request: ``{"Bytes": b"..."}`` or
    an already decoded Image. S3Object images are fetched by the HTTP service
    (``candor.api.s3``) and arrive here as Bytes."""
    spec = params.get(key) or {}
    if "Bytes" in spec:
        return load_image(spec["Bytes"])
    if "S3Object" in spec:
        raise InvalidParameter(f"{key}.S3Object is read only by the HTTP service (candor serve "
                               "--s3-endpoint-url); in-process calls pass Bytes")
    raise InvalidParameter(f"{key} must have Bytes or S3Object")


def face_dict(face: FaceRow) -> dict[str, Any]:
    """A stored face in Rekognition's ``Face`` shape."""
    out: dict[str, Any] = {"FaceId": face.face_id, "BoundingBox": dict(face.bbox),
                           "ImageId": face.image_id}
    if face.external_image_id is not None:
        out["ExternalImageId"] = face.external_image_id
    out["Confidence"] = face.confidence
    out["IndexFacesModelVersion"] = face.model_version
    if face.user_id is not None:
        out["UserId"] = face.user_id
    return out


@dataclass
class AnalysedFace:
    """What the operations need of an engine face: wire detail, pixel box, unit embedding
    (and the engine's face, to embed it later: :func:`embed`)."""

    detail: dict
    box: Any
    embedding: np.ndarray | None
    face: Any = None


def analyse(service: Service, params: dict, attributes=("DEFAULT",), embed: str = "all",
            describe: str = "all"):
    """Decode the request's image and find its faces, largest first. ``embed`` and
    ``describe`` (the 68-point landmarks, pose and quality of the details): ``all``,
    ``largest`` (search needs only that one) or ``none``: work a response does not return is
    not done. Returns (image, faces)."""
    image = request_image(params)
    engine = service.engine
    image, found = engine.analyse(image, attributes=list(attributes) if describe == "all"
                                  else None, embed=False, landmarks=describe == "all")
    found = sorted(found, key=lambda f: -f.box.area)  # largest first, whatever the engine did
    if describe == "largest" and found:
        engine.describe(image, found[:1], list(attributes))
    if embed != "none" and found:
        engine.embed(image, found if embed == "all" else found[:1])
    return image, analysed_faces(found)


def analysed_faces(found) -> list[AnalysedFace]:
    """Engine faces in the operations' shape, largest first (also ``candor index``'s batches)."""
    return [AnalysedFace(detail=f.detail.to_dict() if hasattr(f.detail, "to_dict") else dict(f.detail),
                         box=f.box, embedding=f.embedding, face=f)
            for f in sorted(found, key=lambda f: -f.box.area)]


def embed(service: Service, image, faces: list[AnalysedFace]) -> None:
    """Embed ``faces`` (from :func:`analyse` with ``embed="none"``) in one call: only the
    faces an operation keeps."""
    todo = [f for f in faces if f.embedding is None]
    if todo:
        service.engine.embed(image, [f.face for f in todo])
        for f in todo:
            f.embedding = f.face.embedding


def quality_reasons(face, bar: str) -> list[str]:
    """Why ``face`` fails quality bar ``bar`` (empty when it passes or the bar is NONE)."""
    if bar == "NONE":
        return []
    b = QUALITY_BARS[bar]
    detail = face.detail
    reasons = []
    pose = detail.get("Pose") or {}
    if max(abs(pose.get("Yaw", 0.0)), abs(pose.get("Pitch", 0.0))) > b["max_angle"]:
        reasons.append("EXTREME_POSE")
    quality = detail.get("Quality") or {}
    if quality.get("Brightness", 100.0) < b["brightness"]:
        reasons.append("LOW_BRIGHTNESS")
    if quality.get("Sharpness", 100.0) < b["sharpness"]:
        reasons.append("LOW_SHARPNESS")
    if detail.get("Confidence", 100.0) < b["confidence"]:
        reasons.append("LOW_CONFIDENCE")
    box = getattr(face, "box", None)
    if box is not None and min(box.width, box.height) < b["min_side_px"]:
        reasons.append("SMALL_BOUNDING_BOX")
    return reasons


def unit(vector) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def same_model(coll) -> None:
    """Embeddings from another face model are not comparable: refuse to mix them."""
    if coll.face_model_version != FACE_MODEL_VERSION:
        raise InvalidParameter(
            f"The collection id: {coll.collection_id} holds face model "
            f"{coll.face_model_version} embeddings, and this candor computes "
            f"{FACE_MODEL_VERSION}; they are not comparable: index into a new collection")


def existing_user(store: Store, collection_pk: int, user_id: str, conn=None):
    """The user ``user_id`` of the collection, or ResourceNotFound as Rekognition words it."""
    user = store.user(collection_pk, user_id, conn)
    if user is None:
        raise ResourceNotFound(f"The user id: {user_id} does not exist")
    return user
