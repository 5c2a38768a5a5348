"""CreateCollection, DescribeCollection, ListCollections and DeleteCollection.

Handlers take the request already validated against botocore's model (:meth:`Service.call`)
and return the response dict exactly as Rekognition shapes it; timestamps are datetimes,
written as epoch seconds by the HTTP protocol.
"""

from __future__ import annotations

from typing import Any

from candor.face.engine import FACE_MODEL_VERSION
from candor.scoring import fpir
from candor.service import Service, operation
from candor.service.common import ARN_PREFIX, DEFAULT_LIST_RESULTS, store_of
from candor.store import as_utc

__all__ = ["store_of"]  # tests and tools reach a service's store through here


@operation("CreateCollection")
def create_collection(service: Service, params: dict) -> dict:
    row = store_of(service).create_collection(params["CollectionId"], FACE_MODEL_VERSION,
                                              params.get("Tags"))
    return {"StatusCode": 200, "CollectionArn": ARN_PREFIX + row.collection_id,
            "FaceModelVersion": row.face_model_version}


@operation("DescribeCollection")
def describe_collection(service: Service, params: dict) -> dict:
    store = store_of(service)
    row = store.collection(params["CollectionId"])
    n_faces, n_users = store.collection_counts(row.id)
    return {"FaceCount": n_faces, "FaceModelVersion": row.face_model_version,
            "CollectionARN": ARN_PREFIX + row.collection_id,
            "CreationTimestamp": as_utc(row.created_at).timestamp(), "UserCount": n_users,
            # candor's own member (SDKs ignore unknown response members): what a search that
            # names no threshold runs at, and the false-alarm rate at the common thresholds
            "CandorSearchFpir": {"Faces": fpir.describe(n_faces), "Users": fpir.describe(n_users)}}


@operation("ListCollections")
def list_collections(service: Service, params: dict) -> dict:
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
    store_of(service).delete_collection(params["CollectionId"])
    return {"StatusCode": 200}
