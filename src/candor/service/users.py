"""CreateUser, DeleteUser, ListUsers, AssociateFaces and DisassociateFaces.

Writes that change users are idempotent under a ClientRequestToken, as in Rekognition: the same
token with the same request returns the first response; with another request, an error.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from candor.errors import ConflictError, IdempotentParameterMismatch, ServiceQuotaExceeded
from candor.service import Service, operation
from candor.service.caller import resolve_collection
from candor.service.common import MAX_FACES_PER_USER, existing_user, store_of
from candor.store import Store, from_blob

DEFAULT_LIST_USERS = 500


def _request_hash(params: dict) -> str:
    clean = {k: v for k, v in params.items() if k != "ClientRequestToken"}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, default=str).encode()).hexdigest()



def _idempotent(store: Store, conn, coll, name: str, params: dict):
    """The earlier response for this ClientRequestToken, if any (mismatch: an error); tokens
    are kept per collection, and so per organisation."""
    token = params.get("ClientRequestToken")
    if not token:
        return None
    prior = store.idempotent_response(conn, coll.collection_id, name, token,
                                      _request_hash(params), org=coll.owner_org)
    if prior is False:
        raise IdempotentParameterMismatch(
            f"ClientRequestToken {token} was already used with different parameters")
    return prior


def _remember(store: Store, conn, coll, name: str, params: dict, response: dict) -> dict:
    if params.get("ClientRequestToken"):
        store.remember_response(conn, coll.collection_id, name, params["ClientRequestToken"],
                                _request_hash(params), response, org=coll.owner_org)
    return response


@operation("CreateUser")
def create_user(service: Service, params: dict) -> dict:
    store = store_of(service)
    with store.write() as conn:
        coll = resolve_collection(store, params["CollectionId"], conn)
        prior = _idempotent(store, conn, coll, "CreateUser", params)
        if prior is not None:
            return prior
        if store.user(coll.id, params["UserId"], conn) is not None:
            raise ConflictError(f"The user id: {params['UserId']} already exists in the "
                                f"collection {params['CollectionId']}")
        store.create_user(conn, coll.id, params["UserId"])
        return _remember(store, conn, coll, "CreateUser", params, {})


@operation("DeleteUser")
def delete_user(service: Service, params: dict) -> dict:
    store = store_of(service)
    with store.write() as conn:
        coll = resolve_collection(store, params["CollectionId"], conn)
        prior = _idempotent(store, conn, coll, "DeleteUser", params)
        if prior is not None:
            return prior
        user = existing_user(store, coll.id, params["UserId"], conn)
        store.delete_user(conn, coll.id, user.id)
        return _remember(store, conn, coll, "DeleteUser", params, {})


@operation("ListUsers")
def list_users(service: Service, params: dict) -> dict:
    store = store_of(service)
    coll = resolve_collection(store, params["CollectionId"])
    scope = f"users:{coll.id}"
    after = store.read_token(params["NextToken"], scope) if params.get("NextToken") else None
    rows, more = store.list_users(coll.id, after, int(params.get("MaxResults", DEFAULT_LIST_USERS)))
    out: dict[str, Any] = {"Users": [{"UserId": r.user_id, "UserStatus": r.status} for r in rows]}
    if more:
        out["NextToken"] = store.make_token(scope, rows[-1].user_id)
    return out


@operation("AssociateFaces")
def associate_faces(service: Service, params: dict) -> dict:
    store = store_of(service)
    threshold = float(params.get("UserMatchThreshold", 75.0))
    with store.write() as conn:
        coll = resolve_collection(store, params["CollectionId"], conn)
        prior = _idempotent(store, conn, coll, "AssociateFaces", params)
        if prior is not None:
            return prior
        user = existing_user(store, coll.id, params["UserId"], conn)
        if user.face_count >= MAX_FACES_PER_USER:
            raise ServiceQuotaExceeded(f"The user id: {params['UserId']} already has "
                                       f"{MAX_FACES_PER_USER} faces associated")
        faces = store.faces_by_id(coll.id, params["FaceIds"], conn)
        existing = store.user_face_keys(conn, user.id)
        centre = None
        if user.embedding is not None:
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
        return _remember(store, conn, coll, "AssociateFaces", params, response)


@operation("DisassociateFaces")
def disassociate_faces(service: Service, params: dict) -> dict:
    store = store_of(service)
    with store.write() as conn:
        coll = resolve_collection(store, params["CollectionId"], conn)
        prior = _idempotent(store, conn, coll, "DisassociateFaces", params)
        if prior is not None:
            return prior
        user = existing_user(store, coll.id, params["UserId"], conn)
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
        return _remember(store, conn, coll, "DisassociateFaces", params, response)
