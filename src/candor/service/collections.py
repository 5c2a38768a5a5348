"""Collections, faces, users and 1:N search, with Rekognition's semantics.

Each handler takes the request as a dict of wire names and returns the response dict, exactly
as botocore's ``rekognition/2016-06-27/service-2.json`` shapes them; requests are validated
against that same model (required members, lengths, ranges, patterns, enums), so the messages
match what an AWS SDK user sees from Rekognition. Timestamps are epoch seconds (the JSON 1.1
wire form). Similarities come from :mod:`candor.scoring.similarity`.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from candor.errors import (
    ConflictError,
    IdempotentParameterMismatch,
    InvalidParameter,
    ResourceNotFound,
    ServiceQuotaExceeded,
)
from candor.face.engine import FACE_MODEL_VERSION
from candor.scoring.similarity import IDENTIFICATION_THRESHOLD, Scoring
from candor.service import Service, operation
from candor.store import FaceRow, Store, open_store

ARN_PREFIX = "aws:rekognition:candor:local:collection/"
MAX_FACES_PER_IMAGE = 100
MAX_FACES_PER_USER = 100
DEFAULT_SEARCH_MAX_FACES = 4096  # Rekognition states no default: return every match above threshold
DEFAULT_LIST_RESULTS = 1000
DEFAULT_LIST_USERS = 500
DEFAULT_MAX_USERS = 500

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


# ------------------------------------------------------------------ helpers


def store_of(service: Service) -> Store:
    """The store of the service's data dir (shared by every Service on the same directory)."""
    store = service.__dict__.get("_store")
    if store is None:
        store = service.__dict__["_store"] = open_store(
            service.data_dir, service.settings.database_url, service.settings.index_kind)
    return store


@cache
def _model():
    import botocore.session

    return botocore.session.get_session().get_service_model("rekognition")


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _check(shape, value, where: str, errors: list[str]) -> None:
    """Rekognition-style constraint checks for one value against its botocore shape."""
    meta = shape.metadata
    t = shape.type_name
    shown = "null" if value is None else f"'{value}'"
    if t == "structure":
        if not isinstance(value, dict):
            errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: "
                          "Member must be a structure")
            return
        for name in shape.required_members:
            if value.get(name) is None:
                errors.append(f"Value null at '{_join(where, name)}' failed to satisfy "
                              "constraint: Member must not be null")
        for name, member in shape.members.items():
            if value.get(name) is not None:
                _check(member, value[name], _join(where, name), errors)
        return
    if t == "list":
        if not isinstance(value, (list, tuple)):
            errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: "
                          "Member must be a list")
            return
        _length(len(value), meta, shown, where, errors)
        for i, item in enumerate(value):
            _check(shape.member, item, f"{where}.{i + 1}.member", errors)
        return
    if t == "string":
        if not isinstance(value, str):
            errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: "
                          "Member must be a string")
            return
        _length(len(value), meta, shown, where, errors)
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: Member "
                          f"must satisfy regular expression pattern: {meta['pattern']}")
        if "enum" in meta and value not in meta["enum"]:
            errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: Member "
                          f"must satisfy enum value set: [{', '.join(meta['enum'])}]")
        return
    if t in ("integer", "long", "float", "double"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if t in ("integer", "long") and ok and not float(value).is_integer():
            ok = False
        if not ok:
            errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: "
                          f"Member must be of type {t}")
            return
        if "min" in meta and value < meta["min"]:
            errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: Member "
                          f"must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: Member "
                          f"must have value less than or equal to {meta['max']}")
        return
    if t == "blob" and not isinstance(value, (bytes, bytearray, memoryview)) \
            and not hasattr(value, "pixels"):  # in-process callers may pass a decoded Image
        errors.append(f"Value at '{where}' failed to satisfy constraint: Member must be bytes")
    if t == "map" and not isinstance(value, dict):
        errors.append(f"Value at '{where}' failed to satisfy constraint: Member must be a map")


def _join(where: str, name: str) -> str:
    return f"{where}.{_lower_first(name)}" if where else _lower_first(name)


def _length(n: int, meta: dict, shown: str, where: str, errors: list[str]) -> None:
    if "min" in meta and n < meta["min"]:
        errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: Member must "
                      f"have length greater than or equal to {meta['min']}")
    if "max" in meta and n > meta["max"]:
        errors.append(f"Value {shown} at '{where}' failed to satisfy constraint: Member must "
                      f"have length less than or equal to {meta['max']}")


def validate(operation_name: str, params: dict) -> None:
    """Raise InvalidParameter listing every constraint ``params`` breaks, Rekognition's way."""
    shape = _model().operation_model(operation_name).input_shape
    errors: list[str] = []
    _check(shape, params, "", errors)
    if errors:
        n = len(errors)
        raise InvalidParameter(f"{n} validation error{'s' if n > 1 else ''} detected: "
                               + "; ".join(errors))


def _epoch(dt) -> float:
    return dt.timestamp()


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
class _Face:
    """What this module needs of an engine face: wire detail, pixel box, unit embedding."""

    detail: dict
    box: Any
    embedding: np.ndarray | None


def _analyse(service: Service, params: dict, attributes=("DEFAULT",), embed: str = "all"):
    """Decode the request's image and find its faces, largest first. ``embed``: ``all``,
    ``largest`` (search needs only that one) or ``none``. Returns (image, faces)."""
    from candor.service.faces import request_image

    image = request_image(params)
    engine = service.engine
    image, found = engine.analyse(image, attributes=list(attributes), embed=(embed == "all"))
    found = sorted(found, key=lambda f: -f.box.area)  # largest first, whatever the engine did
    if embed == "largest" and found:
        engine.embed(image, found[:1])
    faces = [_Face(detail=f.detail.to_dict() if hasattr(f.detail, "to_dict") else dict(f.detail),
                   box=f.box, embedding=f.embedding) for f in found]
    return image, faces


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


def _unit(vector) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _request_hash(params: dict) -> str:
    clean = {k: v for k, v in params.items() if k != "ClientRequestToken"}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()


def _stored(index):
    """The index's stored vectors by key, for score normalisation; a key removed by another
    thread since the search gets a zero vector (its row is gone too, so it is dropped)."""
    def vectors(keys: np.ndarray) -> np.ndarray:
        try:
            return index.index.reconstruct_batch(keys)
        except RuntimeError:
            out = np.zeros((len(keys), index.index.d), np.float32)
            for i, key in enumerate(keys):
                try:
                    out[i] = index.index.reconstruct(int(key))
                except RuntimeError:
                    pass
            return out
    return vectors


def _face_matches(store: Store, coll_pk: int, vector: np.ndarray, max_faces: int,
                  threshold: float, exclude: str | None = None, *,
                  scoring: Scoring) -> list[dict]:
    index = store.face_index(coll_pk)
    k = max_faces + (1 if exclude else 0)
    chosen = scoring.rank(vector, lambda n: index.search(vector, n), _stored(index), k, threshold)
    rows = store.faces_by_key(k for _, k in chosen)
    out = []
    for sim, key in chosen:
        face = rows.get(key)
        if face is None or face.face_id == exclude:
            continue
        out.append({"Similarity": sim, "Face": face_dict(face)})
    return out[:max_faces]


def _user_matches(store: Store, coll_pk: int, vector: np.ndarray, max_users: int,
                  threshold: float, exclude_user_pk: int | None = None, *,
                  scoring: Scoring) -> list[dict]:
    index = store.user_index(coll_pk)
    ranked = scoring.rank(vector, lambda n: index.search(vector, n), _stored(index),
                          max_users + (1 if exclude_user_pk else 0), threshold)
    chosen = [(s, k) for s, k in ranked if k != exclude_user_pk]
    users = store.users_by_key(k for _, k in chosen)
    return [{"Similarity": s, "User": {"UserId": users[k].user_id,
                                       "UserStatus": users[k].status}}
            for s, k in chosen[:max_users] if k in users]


def _same_model(coll) -> None:
    """Embeddings from another face model are not comparable: refuse to mix them."""
    if coll.face_model_version != FACE_MODEL_VERSION:
        raise InvalidParameter(
            f"The collection id: {coll.collection_id} holds face model "
            f"{coll.face_model_version} embeddings, and this candor computes "
            f"{FACE_MODEL_VERSION}; they are not comparable: index into a new collection")


# ------------------------------------------------------------------ collections


@operation("CreateCollection")
def create_collection(service: Service, params: dict) -> dict:
    validate("CreateCollection", params)
    row = store_of(service).create_collection(params["CollectionId"], FACE_MODEL_VERSION,
                                              params.get("Tags"))
    return {"StatusCode": 200, "CollectionArn": ARN_PREFIX + row.collection_id,
            "FaceModelVersion": row.face_model_version}


@operation("DescribeCollection")
def describe_collection(service: Service, params: dict) -> dict:
    validate("DescribeCollection", params)
    store = store_of(service)
    row = store.collection(params["CollectionId"])
    n_faces, n_users = store.collection_counts(row.id)
    from candor.store import as_utc

    return {"FaceCount": n_faces, "FaceModelVersion": row.face_model_version,
            "CollectionARN": ARN_PREFIX + row.collection_id,
            "CreationTimestamp": _epoch(as_utc(row.created_at)), "UserCount": n_users}


@operation("ListCollections")
def list_collections(service: Service, params: dict) -> dict:
    validate("ListCollections", params)
    store = store_of(service)
    limit = params.get("MaxResults", DEFAULT_LIST_RESULTS) or DEFAULT_LIST_RESULTS
    token = params.get("NextToken")
    after = store.read_token(token, "collections") if token else None
    rows, more = store.list_collections(after, int(limit))
    out: dict[str, Any] = {"CollectionIds": [r.collection_id for r in rows],
                           "FaceModelVersions": [r.face_model_version for r in rows]}
    if more:
        out["NextToken"] = store.make_token("collections", rows[-1].collection_id)
    return out


@operation("DeleteCollection")
def delete_collection(service: Service, params: dict) -> dict:
    validate("DeleteCollection", params)
    store_of(service).delete_collection(params["CollectionId"])
    return {"StatusCode": 200}


# ------------------------------------------------------------------ faces


@operation("IndexFaces")
def index_faces(service: Service, params: dict) -> dict:
    validate("IndexFaces", params)
    store = store_of(service)
    collection_id = params["CollectionId"]
    _same_model(store.collection(collection_id))  # fail before any model work
    max_faces = min(int(params.get("MaxFaces", MAX_FACES_PER_IMAGE)), MAX_FACES_PER_IMAGE)
    bar = params.get("QualityFilter", "AUTO")
    attributes = params.get("DetectionAttributes") or ["DEFAULT"]
    image, faces = _analyse(service, params, attributes)

    image_id = str(uuid.uuid4())
    keep, unindexed = [], []
    for face in faces:
        reasons = quality_reasons(face, bar)
        if reasons:
            unindexed.append({"Reasons": reasons, "FaceDetail": face.detail})
        elif len(keep) >= max_faces:  # faces come largest first: the smallest go
            unindexed.append({"Reasons": ["EXCEEDS_MAX_FACES"], "FaceDetail": face.detail})
        else:
            keep.append(face)
    stored = store.add_faces(collection_id, [{
        "embedding": _unit(face.embedding), "bbox": face.detail["BoundingBox"],
        "confidence": face.detail.get("Confidence", 100.0), "image_id": image_id,
        "external_image_id": params.get("ExternalImageId"), "model_version": FACE_MODEL_VERSION,
        "image_sha256": getattr(image, "sha256", None),
    } for face in keep])
    return {"FaceRecords": [{"Face": face_dict(row), "FaceDetail": face.detail}
                            for row, face in zip(stored, keep, strict=True)],
            "FaceModelVersion": FACE_MODEL_VERSION,
            "UnindexedFaces": unindexed}


@operation("ListFaces")
def list_faces(service: Service, params: dict) -> dict:
    validate("ListFaces", params)
    store = store_of(service)
    coll = store.collection(params["CollectionId"])
    limit = params.get("MaxResults", DEFAULT_LIST_RESULTS) or DEFAULT_LIST_RESULTS
    user_pk = None
    if params.get("UserId"):
        user = _existing_user(store, coll.id, params["UserId"])
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
    validate("DeleteFaces", params)
    deleted, failed = store_of(service).delete_faces(params["CollectionId"], params["FaceIds"])
    return {"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": failed}


@operation("SearchFaces")
def search_faces(service: Service, params: dict) -> dict:
    validate("SearchFaces", params)
    store = store_of(service)
    coll = store.collection(params["CollectionId"])
    vector = store.face_embedding(coll.id, params["FaceId"])
    if vector is None:
        raise InvalidParameter(f"faceId {params['FaceId']} was not found in the collection.")
    matches = _face_matches(store, coll.id, vector,
                            int(params.get("MaxFaces", DEFAULT_SEARCH_MAX_FACES)),
                            float(params.get("FaceMatchThreshold", IDENTIFICATION_THRESHOLD)),
                            exclude=params["FaceId"], scoring=service.scoring)
    return {"SearchedFaceId": params["FaceId"], "FaceMatches": matches,
            "FaceModelVersion": coll.face_model_version}


def _largest_face(service: Service, params: dict, bar: str):
    """The largest face of the request's image that passes ``bar``, and the other faces."""
    _, faces = _analyse(service, params, embed="largest")
    if not faces:
        raise InvalidParameter("There are no faces in the image. Should be at least 1.")
    largest, others = faces[0], faces[1:]
    return largest, quality_reasons(largest, bar), others


@operation("SearchFacesByImage")
def search_faces_by_image(service: Service, params: dict) -> dict:
    validate("SearchFacesByImage", params)
    store = store_of(service)
    coll = store.collection(params["CollectionId"])
    _same_model(coll)
    largest, reasons, _ = _largest_face(service, params, params.get("QualityFilter", "NONE"))
    if reasons:
        raise InvalidParameter("There are no faces in the image that pass the quality filter "
                               f"({', '.join(reasons)}). Should be at least 1.")
    matches = _face_matches(store, coll.id, _unit(largest.embedding),
                            int(params.get("MaxFaces", DEFAULT_SEARCH_MAX_FACES)),
                            float(params.get("FaceMatchThreshold", IDENTIFICATION_THRESHOLD)),
                            scoring=service.scoring)
    return {"SearchedFaceBoundingBox": largest.detail["BoundingBox"],
            "SearchedFaceConfidence": largest.detail.get("Confidence", 100.0),
            "FaceMatches": matches, "FaceModelVersion": coll.face_model_version}


# ------------------------------------------------------------------ users


def _idempotent(store: Store, conn, name: str, params: dict):
    """The earlier response for this ClientRequestToken, if any (mismatch: an error)."""
    token = params.get("ClientRequestToken")
    if not token:
        return None
    prior = store.idempotent_response(conn, params["CollectionId"], name, token,
                                      _request_hash(params))
    if prior is False:
        raise IdempotentParameterMismatch(
            f"ClientRequestToken {token} was already used with different parameters")
    return prior


def _remember(store: Store, conn, name: str, params: dict, response: dict) -> dict:
    if params.get("ClientRequestToken"):
        store.remember_response(conn, params["CollectionId"], name, params["ClientRequestToken"],
                                _request_hash(params), response)
    return response



def _existing_user(store: Store, collection_pk: int, user_id: str, conn=None):
    """The user ``user_id`` of the collection, or ResourceNotFound as Rekognition words it."""
    user = store.user(collection_pk, user_id, conn)
    if user is None:
        raise ResourceNotFound(f"The user id: {user_id} does not exist")
    return user

@operation("CreateUser")
def create_user(service: Service, params: dict) -> dict:
    validate("CreateUser", params)
    store = store_of(service)
    with store.write() as conn:
        coll = store.collection(params["CollectionId"], conn)
        prior = _idempotent(store, conn, "CreateUser", params)
        if prior is not None:
            return prior
        if store.user(coll.id, params["UserId"], conn) is not None:
            raise ConflictError(f"The user id: {params['UserId']} already exists in the "
                                f"collection {params['CollectionId']}")
        store.create_user(conn, coll.id, params["UserId"])
        return _remember(store, conn, "CreateUser", params, {})


@operation("DeleteUser")
def delete_user(service: Service, params: dict) -> dict:
    validate("DeleteUser", params)
    store = store_of(service)
    with store.write() as conn:
        coll = store.collection(params["CollectionId"], conn)
        prior = _idempotent(store, conn, "DeleteUser", params)
        if prior is not None:
            return prior
        user = _existing_user(store, coll.id, params["UserId"], conn)
        store.delete_user(conn, coll.id, user.id)
        return _remember(store, conn, "DeleteUser", params, {})


@operation("ListUsers")
def list_users(service: Service, params: dict) -> dict:
    validate("ListUsers", params)
    store = store_of(service)
    coll = store.collection(params["CollectionId"])
    scope = f"users:{coll.id}"
    after = store.read_token(params["NextToken"], scope) if params.get("NextToken") else None
    rows, more = store.list_users(coll.id, after, int(params.get("MaxResults", DEFAULT_LIST_USERS)))
    out: dict[str, Any] = {"Users": [{"UserId": r.user_id, "UserStatus": r.status} for r in rows]}
    if more:
        out["NextToken"] = store.make_token(scope, rows[-1].user_id)
    return out


@operation("AssociateFaces")
def associate_faces(service: Service, params: dict) -> dict:
    validate("AssociateFaces", params)
    store = store_of(service)
    threshold = float(params.get("UserMatchThreshold", 75.0))
    with store.write() as conn:
        coll = store.collection(params["CollectionId"], conn)
        prior = _idempotent(store, conn, "AssociateFaces", params)
        if prior is not None:
            return prior
        user = _existing_user(store, coll.id, params["UserId"], conn)
        if user.face_count >= MAX_FACES_PER_USER:
            raise ServiceQuotaExceeded(f"The user id: {params['UserId']} already has "
                                       f"{MAX_FACES_PER_USER} faces associated")
        faces = store.faces_by_id(coll.id, params["FaceIds"], conn)
        existing = store.user_face_keys(conn, user.id)
        centre = None
        if user.embedding is not None:
            from candor.store import from_blob

            centre = from_blob(user.embedding)
        associated, failed, add = [], [], []
        room = MAX_FACES_PER_USER - len(existing)
        for fid in dict.fromkeys(params["FaceIds"]):
            face = faces.get(fid)
            if face is None:
                failed.append({"FaceId": fid, "Reasons": ["FACE_NOT_FOUND"]})
                continue
            if face.user_id == params["UserId"]:
                continue  # already this user's: ignored, not reported
            if face.user_id is not None:
                failed.append({"FaceId": fid, "UserId": face.user_id,
                               "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]})
                continue
            if centre is not None:
                vector = store.face_embedding(coll.id, fid)
                sim = float(service.scoring.similarity(vector, centre)[0, 0])
                if sim < threshold:
                    failed.append({"FaceId": fid, "UserId": params["UserId"], "Confidence": sim,
                                   "Reasons": ["LOW_MATCH_CONFIDENCE"]})
                    continue
            if len(add) >= room:
                raise ServiceQuotaExceeded(f"The user id: {params['UserId']} can have at most "
                                           f"{MAX_FACES_PER_USER} faces associated")
            add.append(face.key)
            associated.append({"FaceId": fid})
        status = user.status
        if add:
            _, status = store.set_user_faces(conn, coll.id, user.id, add, [])
        response = {"AssociatedFaces": associated, "UnsuccessfulFaceAssociations": failed,
                    "UserStatus": status}
        return _remember(store, conn, "AssociateFaces", params, response)


@operation("DisassociateFaces")
def disassociate_faces(service: Service, params: dict) -> dict:
    validate("DisassociateFaces", params)
    store = store_of(service)
    with store.write() as conn:
        coll = store.collection(params["CollectionId"], conn)
        prior = _idempotent(store, conn, "DisassociateFaces", params)
        if prior is not None:
            return prior
        user = _existing_user(store, coll.id, params["UserId"], conn)
        faces = store.faces_by_id(coll.id, params["FaceIds"], conn)
        done, failed, remove = [], [], []
        for fid in dict.fromkeys(params["FaceIds"]):
            face = faces.get(fid)
            if face is None:
                failed.append({"FaceId": fid, "Reasons": ["FACE_NOT_FOUND"]})
            elif face.user_id is None:
                continue  # already disassociated: ignored
            elif face.user_id != params["UserId"]:
                failed.append({"FaceId": fid, "UserId": face.user_id,
                               "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]})
            else:
                remove.append(face.key)
                done.append({"FaceId": fid})
        status = user.status
        if remove:
            _, status = store.set_user_faces(conn, coll.id, user.id, [], remove)
        response = {"DisassociatedFaces": done, "UnsuccessfulFaceDisassociations": failed,
                    "UserStatus": status}
        return _remember(store, conn, "DisassociateFaces", params, response)


@operation("SearchUsers")
def search_users(service: Service, params: dict) -> dict:
    validate("SearchUsers", params)
    if bool(params.get("UserId")) == bool(params.get("FaceId")):
        raise InvalidParameter("Give exactly one of UserId or FaceId")
    store = store_of(service)
    coll = store.collection(params["CollectionId"])
    threshold = float(params.get("UserMatchThreshold", IDENTIFICATION_THRESHOLD))
    max_users = int(params.get("MaxUsers", DEFAULT_MAX_USERS))
    out: dict[str, Any] = {}
    exclude = None
    if params.get("FaceId"):
        vector = store.face_embedding(coll.id, params["FaceId"])
        if vector is None:
            raise InvalidParameter(f"faceId {params['FaceId']} was not found in the collection.")
        out["SearchedFace"] = {"FaceId": params["FaceId"]}
    else:
        user = _existing_user(store, coll.id, params["UserId"])
        if user.embedding is None:
            raise InvalidParameter(f"The user id: {params['UserId']} has no faces associated")
        from candor.store import from_blob

        vector, exclude = from_blob(user.embedding), user.id
        out["SearchedUser"] = {"UserId": params["UserId"]}
    out["UserMatches"] = _user_matches(store, coll.id, vector, max_users, threshold, exclude,
                                       scoring=service.scoring)
    out["FaceModelVersion"] = coll.face_model_version
    return {"UserMatches": out.pop("UserMatches"), **out}


@operation("SearchUsersByImage")
def search_users_by_image(service: Service, params: dict) -> dict:
    validate("SearchUsersByImage", params)
    store = store_of(service)
    coll = store.collection(params["CollectionId"])
    _same_model(coll)
    bar = params.get("QualityFilter", "NONE")
    _, faces = _analyse(service, params, embed="largest")
    out: dict[str, Any] = {"UserMatches": [], "FaceModelVersion": coll.face_model_version}
    unsearched = [{"FaceDetails": f.detail, "Reasons": ["FACE_NOT_LARGEST"]} for f in faces[1:]]
    if faces:
        reasons = quality_reasons(faces[0], bar)
        if reasons:
            unsearched.insert(0, {"FaceDetails": faces[0].detail, "Reasons": reasons})
        else:
            out["UserMatches"] = _user_matches(
                store, coll.id, _unit(faces[0].embedding),
                int(params.get("MaxUsers", DEFAULT_MAX_USERS)),
                float(params.get("UserMatchThreshold", IDENTIFICATION_THRESHOLD)),
                scoring=service.scoring)
            out["SearchedFace"] = {"FaceDetail": faces[0].detail}
    out["UnsearchedFaces"] = unsearched
    return out
