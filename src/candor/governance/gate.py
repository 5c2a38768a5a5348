"""The gate in front of the service layer: principal -> policy decision -> operation -> record.

Every door calls :meth:`Gate.call` (HTTP with the key's principal, CLI and Python API with a
local one) instead of :meth:`candor.service.Service.call`, so no door runs an operation
without a decision and an audit record. A denied call does no work, is recorded, and raises
AccessDeniedException naming the rule. An allowed biometric call is recorded before its
response is returned; if the record cannot be written the call fails (and an IndexFaces whose
record failed is undone), so there is no unaudited biometric work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from candor.config import Settings
from candor.errors import AccessDenied, CandorError
from candor.governance.ledger import AuditUnavailable, Ledger
from candor.governance.policy import (
    THRESHOLD_PARAMS,
    Decision,
    Policy,
    PolicyStore,
    Request,
    default_threshold,
    load_policy,
    resolve_policy_path,
    shipped_policy_path,
)
from candor.governance.principal import Principal
from candor.service.caller import calling_as

log = logging.getLogger(__name__)

#: operations that read, create, search or destroy face data: always recorded
BIOMETRIC_OPERATIONS = frozenset({
    "DetectFaces", "CompareFaces", "IndexFaces", "SearchFaces", "SearchFacesByImage",
    "SearchUsers", "SearchUsersByImage", "ListFaces", "DeleteFaces", "AssociateFaces",
    "DisassociateFaces", "DeleteUser", "DeleteCollection", "StartFaceSearch", "GetFaceSearch",
    "StartFaceDetection", "GetFaceDetection", "RecognizeCelebrities",
})

_IMAGE_PARAMS = ("Image", "SourceImage", "TargetImage")


def image_digests(params: dict[str, Any]) -> list[str] | None:
    """SHA-256 of each input image (never the image). An S3 image is named by a hash of its
    location, prefixed ``s3:``, because the gate does not fetch it."""
    out: list[str] = []
    for key in _IMAGE_PARAMS:
        img = params.get(key)
        if not isinstance(img, dict):
            continue
        data = img.get("Bytes")
        if data is not None:
            digest = getattr(data, "sha256", None)  # candor.face.imaging.Image, already hashed
            if isinstance(digest, str):
                out.append(digest)
            elif isinstance(data, (bytes, bytearray, memoryview)):
                out.append(hashlib.sha256(data).hexdigest())
            elif isinstance(data, str):
                try:
                    raw = base64.b64decode(data, validate=True)
                except (binascii.Error, ValueError):
                    raw = data.encode("utf-8")
                out.append(hashlib.sha256(raw).hexdigest())
        elif isinstance(img.get("S3Object"), dict):
            s3 = img["S3Object"]
            where = f"s3://{s3.get('Bucket')}/{s3.get('Name')}?{s3.get('Version') or ''}"
            out.append("s3:" + hashlib.sha256(where.encode("utf-8")).hexdigest())
    return out or None


def effective_threshold(operation: str, params: dict[str, Any]) -> float | None:
    """The match threshold the call runs with (candor's default when none is given)."""
    pname = THRESHOLD_PARAMS.get(operation)
    if pname is None:
        return None
    value = params.get(pname, default_threshold(operation))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:  # in-process callers reach here before validation: a 400-digit int, inf, -0.0
        number = float(value) + 0.0  # -0.0 becomes 0.0, which the ledger hashes stably
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _length(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def faces_found(operation: str, resp: dict[str, Any]) -> int | None:
    """How many faces the operation found in its input image(s)."""
    if operation == "DetectFaces":
        return _length(resp.get("FaceDetails"))
    if operation == "IndexFaces":
        return _length(resp.get("FaceRecords")) + _length(resp.get("UnindexedFaces"))
    if operation == "CompareFaces":
        return ((1 if resp.get("SourceImageFace") else 0) + _length(resp.get("FaceMatches"))
                + _length(resp.get("UnmatchedFaces")))
    if operation == "SearchFacesByImage":
        return 1 if resp.get("SearchedFaceBoundingBox") else 0
    if operation == "SearchUsersByImage":
        return (1 if resp.get("SearchedFace") else 0) + _length(resp.get("UnsearchedFaces"))
    return None


def matches_returned(operation: str, resp: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The matches the caller received (FaceIds / UserIds and similarities); for IndexFaces the
    FaceIds created, so that erasure and audits can follow a face from its indexing."""
    if operation in ("SearchFaces", "SearchFacesByImage"):
        return [{"FaceId": (m.get("Face") or {}).get("FaceId"), "Similarity": m.get("Similarity")}
                for m in resp.get("FaceMatches") or []]
    if operation in ("SearchUsers", "SearchUsersByImage"):
        return [{"UserId": (m.get("User") or {}).get("UserId"), "Similarity": m.get("Similarity")}
                for m in resp.get("UserMatches") or []]
    if operation == "CompareFaces":
        return [{"Similarity": m.get("Similarity")} for m in resp.get("FaceMatches") or []]
    if operation == "IndexFaces":
        return [{"FaceId": (r.get("Face") or {}).get("FaceId"), "Indexed": True}
                for r in resp.get("FaceRecords") or []]
    return None


class Gate:
    """Wraps one service: ``call(principal, operation, params)`` is the only way in.

    ``policy`` is a :class:`PolicyStore` (hot-reloaded), a :class:`Policy`, a path or a shipped
    policy's name; ``None`` means the shipped ``open`` policy (allow all, audit all).
    """

    def __init__(self, service: Any, ledger: Ledger,
                 policy: PolicyStore | Policy | str | None = None,
                 clock: Callable[[], datetime] | None = None, scoring: str | None = None):
        self.service = service
        self.ledger = ledger
        if policy is None:
            policy = load_policy(shipped_policy_path("open"))
        elif isinstance(policy, str):
            policy = PolicyStore(resolve_policy_path(policy))
        self._policy = policy
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.scoring = scoring
        if getattr(service, "settings", None) is not None and hasattr(ledger, "table"):
            from candor.governance.video import record_jobs

            record_jobs(service, ledger)  # video jobs are recorded again when they finish

    @classmethod
    def for_service(cls, service: Any, policy: PolicyStore | Policy | str | None = None,
                    **kw: Any) -> Gate:
        """A gate over ``service`` whose ledger lives in the service's own store."""
        from candor.store import open_store

        settings = service.settings
        store = open_store(service.data_dir, settings.database_url, settings.index_kind)
        return cls(service, Ledger.for_store(store), policy, **kw)

    @property
    def policy(self) -> Policy:
        """The policy in force now (re-read by a PolicyStore when its file changed)."""
        p = self._policy
        return p.policy if isinstance(p, PolicyStore) else p

    def decide(self, principal: Principal, operation: str, params: dict[str, Any] | None = None,
               authorization_reference: str | None = None) -> Decision:
        """The decision alone, without running or recording anything (``candor policy check``)."""
        req = Request(principal, operation, dict(params or {}), self.clock(),
                      authorization_reference)
        return self.policy.decide(req, usage=self.ledger.usage)

    def call(self, principal: Principal, operation: str, params: dict[str, Any] | None = None,
             request_id: str | None = None, *,
             authorization_reference: str | None = None) -> dict[str, Any]:
        """Decide, run and record one operation for ``principal``; return its response."""
        if not isinstance(principal, Principal):
            raise AccessDenied("no principal: every call must be made by a known principal")
        at = self.clock()
        request_id = request_id or str(uuid.uuid4())
        if params is None:
            params = {}
        safe = params if isinstance(params, dict) else {}
        policy = self.policy
        decision = policy.decide(
            Request(principal, operation, safe, at, authorization_reference),
            usage=self.ledger.usage)
        collection = safe.get("CollectionId")
        base: dict[str, Any] = {
            "ts": at, "request_id": request_id, "principal": principal.name,
            "org": principal.org, "category": principal.category, "operation": operation,
            "collection": collection if isinstance(collection, str) else None,
            "image_sha256": image_digests(safe),
            "threshold": effective_threshold(operation, safe),
            "rule": decision.rule,
        }
        details = {k: v for k, v in (("authorization_reference", authorization_reference),
                                     ("constraints", decision.constraints or None)) if v}
        if not decision.allowed:
            self._record(base, details, decision="deny")
            raise AccessDenied(decision.denial_text())

        audited = policy.audit == "all" or operation in BIOMETRIC_OPERATIONS
        # a non-dict request goes on unchanged, for the service to refuse as it would anyway
        run_params = {**safe, **decision.param_overrides} if params is safe else params
        try:
            with calling_as(principal.org, principal.name, principal.category):
                resp = self.service.call(operation, run_params)
        except Exception as exc:
            if audited:
                code = exc.code if isinstance(exc, CandorError) else "InternalServerError"
                self._record(base, {**details, "error": code}, decision="failed")
            raise
        if audited:
            try:
                self._record(base, details, decision="allow",
                             faces_found=faces_found(operation, resp),
                             matches=matches_returned(operation, resp),
                             scoring=self._scoring() if base["threshold"] is not None else None)
            except AuditUnavailable:
                self._undo(operation, run_params, resp)
                raise
        return resp

    # Same shape as the HTTP gateway's seam: ``invoke(principal, operation, params, request_id)``.
    invoke = call

    def as_principal(self, principal: Principal,
                     authorization_reference: str | None = None) -> BoundGate:
        """A service-like object (``.call(operation, params)``) that acts as ``principal``."""
        return BoundGate(self, principal, authorization_reference)

    def _scoring(self) -> str | None:
        """What scored the similarities: model backend | score normalisation (or raw-cosine) |
        Similarity table, e.g. ``onnx|normalisation-v1|table:normalisation-v1:<date>``."""
        if self.scoring:
            return self.scoring
        scoring = getattr(self.service, "scoring", None)
        if scoring is None:
            from candor.scoring.similarity import Scoring

            scoring = Scoring()
        backend = getattr(self.service, "backend_name", None)
        return f"{backend}|{scoring.description}" if backend else scoring.description

    def _record(self, base: dict[str, Any], details: dict[str, Any], **fields: Any) -> None:
        record = {**base, **fields}
        if details and "details" in self.ledger.table.c:
            record["details"] = details
        self.ledger.append(**record)

    def _undo(self, operation: str, params: dict[str, Any], resp: dict[str, Any]) -> None:
        """Remove faces indexed by a call whose audit record could not be written."""
        if operation != "IndexFaces":
            return
        ids = [r["Face"]["FaceId"] for r in resp.get("FaceRecords") or []
               if (r.get("Face") or {}).get("FaceId")]
        if not ids:
            return
        try:
            self.service.call("DeleteFaces", {"CollectionId": params.get("CollectionId"),
                                              "FaceIds": ids})
        except Exception:
            log.exception("could not undo unaudited IndexFaces of %s", ids)


class BoundGate:
    """The gate for one principal, with the service's ``call(operation, params)`` shape, so the
    CLI and the Python API can use it wherever they would have used the service.
    ``authorization_reference`` (``candor --authorization-ref``) goes with every call unless a
    call names its own."""

    def __init__(self, gate: Gate, principal: Principal,
                 authorization_reference: str | None = None):
        self.gate = gate
        self.principal = principal
        self.authorization_reference = authorization_reference

    def call(self, operation: str, params: dict[str, Any] | None = None,
             request_id: str | None = None, *,
             authorization_reference: str | None = None) -> dict[str, Any]:
        return self.gate.call(self.principal, operation, params, request_id,
                              authorization_reference=authorization_reference
                              or self.authorization_reference)

    def __getattr__(self, name: str) -> Any:  # data_dir, engine, ... of the wrapped service
        return getattr(self.gate.service, name)


def local_principal(settings: Settings) -> Principal:
    """The CLI / Python API caller: ``settings.org`` (``--as ORG``, CANDOR_ORG) in
    ``settings.category``; audited like an access key."""
    return Principal.local(settings.org, settings.category)


def governed(service: Any, principal: Principal | None = None,
             policy: PolicyStore | Policy | str | None = None) -> BoundGate:
    """``service`` behind the gate, acting as ``principal`` (default: the local principal of
    the service's settings): what the CLI and the Python API use in place of the bare
    service, so that their calls are decided and audited too. ``policy`` defaults to the
    settings' policy, else the shipped open policy."""
    settings = service.settings
    policy = policy if policy is not None else settings.policy
    return Gate.for_service(service, policy).as_principal(
        principal or local_principal(settings), settings.authorization_reference)
