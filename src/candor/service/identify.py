"""SearchFacesInImage: every face of an image identified against a collection, in one call.

candor's own operation (Rekognition searches only the largest face). The image is decoded and
its faces detected once, the faces to search (up to ``MaxFaces``, largest first, and passing the
``QualityFilter``) are embedded in one batched call, and each is searched with the same
matching code as SearchFacesByImage / SearchUsersByImage (:mod:`candor.service.search`), so
scores, thresholds and normalisation are identical. Its operation descriptor (kind
``identify``, threshold ``FaceMatchThreshold``) makes every policy and audit rule of
SearchFacesByImage apply to it. Its request and response shapes are in the SDK extension
``candor/data/sdk/rekognition/2016-06-27/service-2.sdk-extras.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from candor.errors import InvalidParameter
from candor.service import Service, operation
from candor.service.caller import resolve_collection
from candor.service.common import quality_reasons, request_image, same_model, store_of, unit
from candor.service.search import face_matches, user_matches
from candor.service.search import threshold as size_aware_threshold

#: how many faces of the image are searched when the request says nothing (Rekognition's most)
DEFAULT_MAX_FACES = 100
#: matches returned per face when the request says nothing
DEFAULT_MATCHES_PER_FACE = 10


class _Found:
    """An engine face with its wire detail, for :func:`quality_reasons`."""

    def __init__(self, face) -> None:
        self.face = face
        self.box = face.box
        self.detail = face.detail.to_dict() if hasattr(face.detail, "to_dict") else dict(face.detail)


def faces_to_search(service: Service, params: dict[str, Any], max_faces: int, bar: str):
    """Detect the image's faces once, embed the ones to search in one batch. Returns
    (searched, unsearched): searched faces largest first, with embeddings; unsearched as
    Rekognition's UnsearchedFace dicts. No face at all is Rekognition's InvalidParameter."""
    engine = service.engine
    image, found = engine.analyse(request_image(params), attributes=["DEFAULT"], embed=False)
    if not found:
        raise InvalidParameter("There are no faces in the image. Should be at least 1.")
    faces = [_Found(f) for f in sorted(found, key=lambda f: -f.box.area)]
    searched, unsearched = [], []
    for rank, face in enumerate(faces):
        reasons = quality_reasons(face, bar)
        if rank >= max_faces:
            reasons = ["EXCEEDS_MAX_FACES", *reasons]
        if reasons:
            unsearched.append({"FaceDetails": face.detail, "Reasons": reasons})
        else:
            searched.append(face)
    if searched:
        engine.embed(image, [f.face for f in searched])  # one batched embedding call
    return searched, unsearched


def _batched(index, vectors: list[np.ndarray], per_face: int) -> list[Callable]:
    """One index call for every face (a flat index scans the collection once per call, so
    one call for all faces costs about what one face does), served to each face's ranking;
    a ranking that needs more than was fetched asks the index again."""
    fetch = min(max(4 * per_face, 64), max(index.ntotal, 1))
    batch = np.ascontiguousarray(np.stack(vectors), dtype=np.float32)
    cosines, keys = index.index.search(batch, fetch) if index.ntotal else (None, None)

    def serve(i: int) -> Callable:
        def nearest(n: int):
            if keys is not None and n <= fetch:
                found = keys[i][:n] >= 0
                return cosines[i][:n][found], keys[i][:n][found]
            return index.search(vectors[i], n)
        return nearest

    return [serve(i) for i in range(len(vectors))]


@operation("SearchFacesInImage")
def search_faces_in_image(service: Service, params: dict) -> dict:
    store = store_of(service)
    coll = resolve_collection(store, params["CollectionId"])
    same_model(coll)
    threshold = size_aware_threshold(store, coll.id, "SearchFacesInImage", params)
    per_face = int(params.get("MaxMatchesPerFace", DEFAULT_MATCHES_PER_FACE))
    users = params.get("Match", "FACES") == "USERS"
    searched, unsearched = faces_to_search(service, params,
                                           int(params.get("MaxFaces", DEFAULT_MAX_FACES)),
                                           params.get("QualityFilter", "NONE"))
    vectors = [unit(face.face.embedding) for face in searched]
    prefetched = None if users or not vectors else _batched(store.face_index(coll.id), vectors,
                                                             per_face)
    out = []
    for i, (face, vector) in enumerate(zip(searched, vectors)):
        if users:
            matches = user_matches(store, coll.id, vector, per_face, threshold,
                                   scoring=service.scoring)
            out.append({"FaceDetail": face.detail, "UserMatches": matches})
        else:
            matches = face_matches(store, coll.id, vector, per_face, threshold,
                                   scoring=service.scoring, nearest=prefetched[i])
            out.append({"FaceDetail": face.detail, "FaceMatches": matches})
    return {"SearchedFaces": out, "UnsearchedFaces": unsearched,
            "FaceModelVersion": coll.face_model_version}
