"""SearchFaces, SearchFacesByImage, SearchUsers and SearchUsersByImage: 1:N search."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from candor.errors import CandorError, InvalidParameter
from candor.scoring.fpir import default_search_threshold, user_search_size
from candor.scoring.similarity import Scoring
from candor.service import Service, operation
from candor.service.caller import resolve_collection
from candor.service.common import (
    analyse,
    existing_user,
    face_dict,
    quality_reasons,
    same_model,
    store_of,
    unit,
)
from candor.store import Store, from_blob

DEFAULT_SEARCH_MAX_FACES = 4096  # Rekognition states no default: return every match above threshold
DEFAULT_MAX_USERS = 500
#: the request member holding each search's threshold; searched items are faces (0) or users
#: (1); SearchFacesInImage searches users when its ``Match`` member says USERS
_SEARCHES = {"SearchFaces": ("FaceMatchThreshold", 0),
             "SearchFacesByImage": ("FaceMatchThreshold", 0),
             "SearchFacesInImage": ("FaceMatchThreshold", 0),
             "SearchUsers": ("UserMatchThreshold", 1),
             "SearchUsersByImage": ("UserMatchThreshold", 1)}


def _searched(operation: str, params: dict) -> int:
    """Whether the search compares with the collection's faces (0) or users (1)."""
    if operation == "SearchFacesInImage":
        return 1 if params.get("Match") == "USERS" else 0
    return _SEARCHES[operation][1]


def search_size(store: Store, coll_pk: int, operation: str, params: dict) -> int:
    """N of the size-aware default: the collection's faces, or for a user search the faces
    behind its users' templates (:func:`candor.scoring.fpir.user_search_size`)."""
    n_faces, n_users = store.collection_counts(coll_pk)
    if _searched(operation, params) == 0:
        return n_faces
    return user_search_size(n_users, store.user_face_count(coll_pk))


def threshold(store: Store, coll_pk: int, operation: str, params: dict) -> float:
    """The request's threshold (per-pair, Rekognition's meaning) or, when it names none, the
    size-aware default: FPIR <= 1% for the collection's current number of faces (:func:`search_size`)
    (:mod:`candor.scoring.fpir`). The gate resolves the default first (:func:`size_aware_default`)
    so that the policy judges and the ledger records the value the search runs with."""
    member = _SEARCHES[operation][0]
    if params.get(member) is not None:
        return float(params[member])
    return default_search_threshold(search_size(store, coll_pk, operation, params))


def size_aware_default(service: Service, operation: str, params: dict) -> tuple[float, int] | None:
    """(default threshold, collection size) for a search whose request names no threshold;
    None for any other call, or when the caller has no such collection (the search will say
    so). Runs as the current caller (tenancy): it never sizes another organisation's
    collection that the caller may not use."""
    if operation not in _SEARCHES or not isinstance(params.get("CollectionId"), str) \
            or params.get(_SEARCHES[operation][0]) is not None:
        return None
    try:
        store = store_of(service)
        coll = resolve_collection(store, params["CollectionId"])
    except CandorError:
        return None
    size = search_size(store, coll.id, operation, params)
    return default_search_threshold(size), size

#: ``nearest(n)``: the index's top ``n`` (cosines, keys) for one query, best first
Nearest = Callable[[int], tuple[np.ndarray, np.ndarray]]


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


def face_matches(store: Store, coll_pk: int, vector: np.ndarray, max_faces: int,
                 threshold: float, exclude: str | None = None, *,
                 scoring: Scoring, nearest: Nearest | None = None) -> list[dict]:
    """The collection's faces matching ``vector`` at or above ``threshold``, best first, in
    Rekognition's FaceMatch shape (shared by every face search, including SearchFacesInImage,
    which passes ``nearest``: the index's answers for many faces fetched in one call)."""
    index = store.face_index(coll_pk)
    k = max_faces + (1 if exclude else 0)
    chosen = scoring.rank(vector, nearest or (lambda n: index.search(vector, n)),
                          _stored(index), k, threshold)
    rows = store.faces_by_key(k for _, k in chosen)
    out = []
    for sim, key in chosen:
        face = rows.get(key)
        if face is None or face.face_id == exclude:
            continue
        out.append({"Similarity": sim, "Face": face_dict(face)})
    return out[:max_faces]


def user_matches(store: Store, coll_pk: int, vector: np.ndarray, max_users: int,
                 threshold: float, exclude_user_pk: int | None = None, *,
                 scoring: Scoring) -> list[dict]:
    """The collection's users matching ``vector``, best first, in the UserMatch shape."""
    index = store.user_index(coll_pk)
    ranked = scoring.rank(vector, lambda n: index.search(vector, n), _stored(index),
                          max_users + (1 if exclude_user_pk else 0), threshold)
    chosen = [(s, k) for s, k in ranked if k != exclude_user_pk]
    users = store.users_by_key(k for _, k in chosen)
    return [{"Similarity": s, "User": {"UserId": users[k].user_id,
                                       "UserStatus": users[k].status}}
            for s, k in chosen[:max_users] if k in users]


@operation("SearchFaces")
def search_faces(service: Service, params: dict) -> dict:
    store = store_of(service)
    coll = resolve_collection(store, params["CollectionId"])
    vector = store.face_embedding(coll.id, params["FaceId"])
    if vector is None:
        raise InvalidParameter(f"faceId {params['FaceId']} was not found in the collection.")
    matches = face_matches(store, coll.id, vector,
                            int(params.get("MaxFaces", DEFAULT_SEARCH_MAX_FACES)),
                            threshold(store, coll.id, "SearchFaces", params),
                            exclude=params["FaceId"], scoring=service.scoring)
    return {"SearchedFaceId": params["FaceId"], "FaceMatches": matches,
            "FaceModelVersion": coll.face_model_version}


def _largest_face(service: Service, params: dict, bar: str):
    """The largest face of the request's image that passes ``bar``, and the other faces.
    Only the largest is embedded, and described (68 points, pose, quality) only when a
    quality bar needs its pose and quality: the response returns its box alone."""
    _, faces = analyse(service, params, embed="largest",
                       describe="none" if bar == "NONE" else "largest")
    if not faces:
        raise InvalidParameter("There are no faces in the image. Should be at least 1.")
    largest, others = faces[0], faces[1:]
    return largest, quality_reasons(largest, bar), others


@operation("SearchFacesByImage")
def search_faces_by_image(service: Service, params: dict) -> dict:
    store = store_of(service)
    coll = resolve_collection(store, params["CollectionId"])
    same_model(coll)
    largest, reasons, _ = _largest_face(service, params, params.get("QualityFilter", "NONE"))
    if reasons:
        raise InvalidParameter("There are no faces in the image that pass the quality filter "
                               f"({', '.join(reasons)}). Should be at least 1.")
    matches = face_matches(store, coll.id, unit(largest.embedding),
                            int(params.get("MaxFaces", DEFAULT_SEARCH_MAX_FACES)),
                            threshold(store, coll.id, "SearchFacesByImage", params),
                            scoring=service.scoring)
    return {"SearchedFaceBoundingBox": largest.detail["BoundingBox"],
            "SearchedFaceConfidence": largest.detail.get("Confidence", 100.0),
            "FaceMatches": matches, "FaceModelVersion": coll.face_model_version}


@operation("SearchUsers")
def search_users(service: Service, params: dict) -> dict:
    if bool(params.get("UserId")) == bool(params.get("FaceId")):
        raise InvalidParameter("Give exactly one of UserId or FaceId")
    store = store_of(service)
    coll = resolve_collection(store, params["CollectionId"])
    limit = threshold(store, coll.id, "SearchUsers", params)
    max_users = int(params.get("MaxUsers", DEFAULT_MAX_USERS))
    out: dict[str, Any] = {}
    exclude = None
    if params.get("FaceId"):
        vector = store.face_embedding(coll.id, params["FaceId"])
        if vector is None:
            raise InvalidParameter(f"faceId {params['FaceId']} was not found in the collection.")
        out["SearchedFace"] = {"FaceId": params["FaceId"]}
    else:
        user = existing_user(store, coll.id, params["UserId"])
        if user.embedding is None:
            raise InvalidParameter(f"The user id: {params['UserId']} has no faces associated")
        vector, exclude = from_blob(user.embedding), user.id
        out["SearchedUser"] = {"UserId": params["UserId"]}
    out["UserMatches"] = user_matches(store, coll.id, vector, max_users, limit, exclude,
                                       scoring=service.scoring)
    out["FaceModelVersion"] = coll.face_model_version
    return {"UserMatches": out.pop("UserMatches"), **out}


@operation("SearchUsersByImage")
def search_users_by_image(service: Service, params: dict) -> dict:
    store = store_of(service)
    coll = resolve_collection(store, params["CollectionId"])
    same_model(coll)
    bar = params.get("QualityFilter", "NONE")
    _, faces = analyse(service, params, embed="largest")
    out: dict[str, Any] = {"UserMatches": [], "FaceModelVersion": coll.face_model_version}
    unsearched = [{"FaceDetails": f.detail, "Reasons": ["FACE_NOT_LARGEST"]} for f in faces[1:]]
    if faces:
        reasons = quality_reasons(faces[0], bar)
        if reasons:
            unsearched.insert(0, {"FaceDetails": faces[0].detail, "Reasons": reasons})
        else:
            out["UserMatches"] = user_matches(
                store, coll.id, unit(faces[0].embedding),
                int(params.get("MaxUsers", DEFAULT_MAX_USERS)),
                threshold(store, coll.id, "SearchUsersByImage", params),
                scoring=service.scoring)
            out["SearchedFace"] = {"FaceDetail": faces[0].detail}
    out["UnsearchedFaces"] = unsearched
    return out
