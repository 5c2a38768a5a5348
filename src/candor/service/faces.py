"""IndexFaces, ListFaces and DeleteFaces: the faces of a collection."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from candor.errors import InvalidParameter
from candor.face.engine import FACE_MODEL_VERSION
from candor.face.imaging import crop_jpeg
from candor.service import Service, operation
from candor.service.caller import resolve_collection
from candor.service.common import (
    DEFAULT_LIST_RESULTS,
    MAX_FACES_PER_IMAGE,
    analyse,
    embed,
    existing_user,
    face_dict,
    quality_reasons,
    same_model,
    store_of,
    unit,
)

#: the longest side of a face thumbnail kept for reviewers (collections with keep_thumbnails)
THUMBNAIL_PIXELS = 96


@operation("IndexFaces")
def index_faces(service: Service, params: dict) -> dict:
    store = store_of(service)
    coll = resolve_collection(store, params["CollectionId"])
    same_model(coll)  # fail before any model work
    attributes = params.get("DetectionAttributes") or ["DEFAULT"]
    image, faces = analyse(service, params, attributes, embed="none")
    rows, keep, unindexed = faces_to_index(coll, params, image, faces, service)
    stored = store.add_faces(coll.collection_id, rows, org=coll.owner_org)
    return index_response(stored, keep, unindexed)


def faces_to_index(coll, params: dict, image, faces: list,
                   service: Service | None = None) -> tuple[list[dict], list, list]:
    """Which of an image's faces (largest first) IndexFaces stores, as rows for
    ``Store.add_faces``, and which it does not (as UnindexedFaces entries): the handler and
    ``candor index``'s batches (:mod:`candor.service.indexing`) both decide here. With
    ``service``, faces analysed without embeddings (the handler) have the kept ones embedded;
    the batches come from the pipeline, which embedded every face."""
    max_faces = min(int(params.get("MaxFaces", MAX_FACES_PER_IMAGE)), MAX_FACES_PER_IMAGE)
    bar = params.get("QualityFilter", "AUTO")
    image_id = str(uuid.uuid4())
    thumbs = bool(getattr(coll, "keep_thumbnails", False))  # for reviewers (docs/console.md)
    keep, unindexed = [], []
    for face in faces:
        reasons = quality_reasons(face, bar)
        if reasons:
            unindexed.append({"Reasons": reasons, "FaceDetail": face.detail})
        elif len(keep) >= max_faces:  # faces come largest first: the smallest go
            unindexed.append({"Reasons": ["EXCEEDS_MAX_FACES"], "FaceDetail": face.detail})
        else:
            keep.append(face)
    if service is not None:  # only the faces indexed are embedded, the others never
        embed(service, image, keep)
    rows = [{
        "embedding": unit(face.embedding), "bbox": face.detail["BoundingBox"],
        "confidence": face.detail.get("Confidence", 100.0), "image_id": image_id,
        "external_image_id": params.get("ExternalImageId"), "model_version": FACE_MODEL_VERSION,
        "image_sha256": getattr(image, "sha256", None),
        "thumbnail": crop_jpeg(image.pixels, face.detail["BoundingBox"], THUMBNAIL_PIXELS)
        if thumbs else None,
    } for face in keep]
    return rows, keep, unindexed


def index_response(stored: list, keep: list, unindexed: list) -> dict:
    """IndexFaces' response for the faces stored (rows from the store) and those not."""
    return {"FaceRecords": [{"Face": face_dict(row), "FaceDetail": face.detail}
                            for row, face in zip(stored, keep, strict=True)],
            "FaceModelVersion": FACE_MODEL_VERSION,
            "UnindexedFaces": unindexed}


@operation("ListFaces")
def list_faces(service: Service, params: dict) -> dict:
    store = store_of(service)
    coll = resolve_collection(store, params["CollectionId"])
    limit = params.get("MaxResults", DEFAULT_LIST_RESULTS) or DEFAULT_LIST_RESULTS
    user_pk = None
    if params.get("UserId"):
        user = existing_user(store, coll.id, params["UserId"])
        user_pk = user.id
    face_ids = params.get("FaceIds")
    scope = "faces:" + hashlib.sha256(json.dumps(
        [coll.id, params.get("UserId"), sorted(face_ids or [])]).encode()).hexdigest()[:16]
    after = store.read_token(params["NextToken"], scope) if params.get("NextToken") else 0
    if not isinstance(after, int):
        raise InvalidParameter("Invalid pagination token")
    rows, more = store.list_faces(coll.id, after, int(limit), user_pk, face_ids)
    out: dict[str, Any] = {"Faces": [face_dict(r) for r in rows],
                           "FaceModelVersion": coll.face_model_version}
    if more:
        out["NextToken"] = store.make_token(scope, rows[-1].key)
    return out


@operation("DeleteFaces")
def delete_faces(service: Service, params: dict) -> dict:
    store = store_of(service)
    coll = resolve_collection(store, params["CollectionId"])
    deleted, failed = store.delete_faces(coll.collection_id, params["FaceIds"],
                                         org=coll.owner_org)
    return {"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": failed}
