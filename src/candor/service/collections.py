"""CreateCollection, DescribeCollection, ListCollections and DeleteCollection.

Handlers take the request already validated against botocore's model (:meth:`Service.call`)
and return the response dict exactly as Rekognition shapes it; timestamps are datetimes,
written as epoch seconds by the HTTP protocol.
"""

from __future__ import annotations

from typing import Any

from candor.errors import InvalidParameter
from candor.face.engine import FACE_MODEL_VERSION
from candor.scoring import fpir
from candor.service import Service, operation
from candor.service.caller import collection_arn, current_caller, resolve_collection
from candor.service.common import DEFAULT_LIST_RESULTS, store_of
from candor.store import as_utc

__all__ = ["store_of"]  # tests and tools reach a service's store through here


@operation("CreateCollection")
def create_collection(service: Service, params: dict) -> dict:
    row = store_of(service).create_collection(params["CollectionId"], FACE_MODEL_VERSION,
                                              params.get("Tags"), org=current_caller().org)
    return {"StatusCode": 200, "CollectionArn": collection_arn(row),
            "FaceModelVersion": row.face_model_version}


@operation("DescribeCollection")
def describe_collection(service: Service, params: dict) -> dict:
    store = store_of(service)
    row = resolve_collection(store, params["CollectionId"])
    n_faces, n_users = store.collection_counts(row.id)
    return {"FaceCount": n_faces, "FaceModelVersion": row.face_model_version,
            "CollectionARN": collection_arn(row),
            "CreationTimestamp": as_utc(row.created_at).timestamp(), "UserCount": n_users,
            # candor's own member (SDKs ignore unknown response members): what a search that
            # names no threshold runs at, and the false-alarm rate at the common thresholds
            "CandorSearchFpir": {"Faces": fpir.describe(n_faces), "Users": fpir.describe(
                fpir.user_search_size(n_users, store.user_face_count(row.id)))}}


@operation("ListCollections")
def list_collections(service: Service, params: dict) -> dict:
    """The caller's own collections; the operator's lists every organisation's, in id order,
    an id that several organisations hold once per owner (DescribeCollection's ARN names it)."""
    store = store_of(service)
    caller = current_caller()
    limit = params.get("MaxResults", DEFAULT_LIST_RESULTS) or DEFAULT_LIST_RESULTS
    token = params.get("NextToken")
    scope = f"collections:{caller.org}"
    after = store.read_token(token, scope) if token else None
    if after is not None and not (isinstance(after, list) and len(after) == 2
                                  and all(isinstance(a, str) for a in after)):
        raise InvalidParameter("Invalid pagination token")
    rows, more = store.list_collections(after, int(limit),
                                        org=None if caller.is_operator else caller.org)
    caller.crossed.update(r.owner_org for r in rows if r.owner_org != caller.org)
    out: dict[str, Any] = {"CollectionIds": [r.collection_id for r in rows],
                           "FaceModelVersions": [r.face_model_version for r in rows]}
    if more:
        out["NextToken"] = store.make_token(scope, [rows[-1].collection_id, rows[-1].owner_org])
    return out


@operation("DeleteCollection")
def delete_collection(service: Service, params: dict) -> dict:
    store = store_of(service)
    row = resolve_collection(store, params["CollectionId"])
    store.delete_collection(row.collection_id, org=row.owner_org)
    return {"StatusCode": 200}
