"""The gate in front of the service layer: principal -> policy decision -> operation -> record.

Every door calls :meth:`Gate.call` (HTTP with the key's principal, CLI and Python API with a
local one) instead of :meth:`candor.service.Service.call`, so no door runs an operation
without a decision and an audit record. A denied call does no work, is recorded, and raises
AccessDeniedException naming the rule. An allowed biometric call is recorded before its
response is returned; if the record cannot be written the call fails (and an IndexFaces whose
record failed is undone), so there is no unaudited biometric work.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from candor.config import Settings
from candor.errors import AccessDenied
from candor.governance import review
from candor.governance.batch import Admitted, index_faces_many
from candor.governance.ledger import AuditUnavailable, Ledger
from candor.governance.policy import (
    Decision,
    Policy,
    PolicyStore,
    Request,
    load_policy,
    resolve_policy_path,
    shipped_policy_path,
)
from candor.governance.principal import Principal
from candor.governance.record_fields import (  # noqa: F401  (image_digests etc. re-exported)
    _crossing,
    _safe_details,
    audit_fields,
    effective_threshold,
    image_digests,
    is_biometric,
)
from candor.service import operations
from candor.service.caller import Caller, acting_as
from candor.store.reviews import ReviewRows

log = logging.getLogger(__name__)

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
        #: the policy this gate enforces; a reload of a PolicyStore's file is itself an
        #: operation (ReloadPolicy), decided by the policy in force and recorded
        self._in_force: Policy | None = None
        self._reload_lock = threading.Lock()
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.scoring = scoring
        if getattr(service, "settings", None) is not None and hasattr(ledger, "table"):
            from candor.governance.video import record_jobs

            record_jobs(service, ledger)  # video jobs are recorded again when they finish
        #: where calls held for human review are kept: the ledger's database
        self.reviews = ReviewRows(ledger.writer)

    @classmethod
    def for_service(cls, service: Any, policy: PolicyStore | Policy | str | None = None,
                    **kw: Any) -> Gate:
        """A gate over ``service`` whose ledger lives in the service's own store."""
        from candor.store import open_store

        settings = service.settings
        store = open_store(service.data_dir, settings.database_url, settings.index_kind)
        return cls(service, Ledger.for_store(store), policy, **kw)

    @classmethod
    def for_store(cls, store: Any, settings: Settings) -> Gate:
        """A gate for candor's own operations on ``store`` (the CLI's keys, erase and
        retention commands), under the settings' policy."""
        return cls(None, Ledger.for_store(store), settings.policy)

    @property
    def policy(self) -> Policy:
        """The policy in force now (re-read by a PolicyStore when its file changed)."""
        p = self._policy
        if not isinstance(p, PolicyStore):
            return p
        current = p.policy
        with self._reload_lock:
            if self._in_force is None:
                self._in_force = current
            elif current.sha256 != self._in_force.sha256:
                self._adopt(current)
            return self._in_force

    def _adopt(self, new: Policy) -> None:
        """A changed policy file: ReloadPolicy, decided by the policy in force (which may
        refuse it, keeping itself) and recorded with both files' SHA-256."""
        old = self._in_force
        principal = system_principal("system:policy")
        at = self.clock()
        decision = old.decide(Request(principal, "ReloadPolicy", {}, at),
                              usage=self.ledger.usage)
        record = {"ts": at, "request_id": str(uuid.uuid4()), "principal": principal.name,
                  "org": principal.org, "category": principal.category,
                  "operation": "ReloadPolicy", "rule": decision.rule,
                  "decision": "allow" if decision.allowed else "deny"}
        details = {"policy": new.name, "sha256": new.sha256, "previous_sha256": old.sha256,
                   "source": new.source}
        if new.shares:
            details["shares"] = [s.summary() for s in new.shares]
        try:
            self._record(record, details)
        except AuditUnavailable:
            log.error("policy reload of %s not recorded: keeping %s", new.source, old.name)
            return
        if decision.allowed:
            self._in_force = new
        else:
            log.warning("policy reload refused by %s: %s", old.name, decision.denial_text())

    def record_policy_in_force(self) -> None:
        """Record which policy a server starts under (its SHA-256 and any collection shares it
        grants), so that the ledger shows every policy that was ever in force; a later change
        of the file is a ReloadPolicy of its own."""
        policy = self.policy
        principal = system_principal("system:policy")
        details: dict[str, Any] = {"policy": policy.name, "sha256": policy.sha256,
                                   "source": policy.source, "at_start": True}
        if policy.shares:
            details["shares"] = [s.summary() for s in policy.shares]
        self._record({"ts": self.clock(), "request_id": str(uuid.uuid4()),
                      "principal": principal.name, "org": principal.org,
                      "category": principal.category, "operation": "ReloadPolicy",
                      "rule": "start", "decision": "allow"}, details)

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
        admitted = self.admit(principal, operation, params, request_id,
                              authorization_reference=authorization_reference)
        try:
            with acting_as(admitted.caller):
                resp = self.service.call(operation, admitted.run_params)
        except Exception as exc:
            failed = admitted.failed(exc)
            if failed is not None:
                self._record(*failed)
            raise
        resp, allowed = self.conclude(admitted, resp)
        if allowed is not None:
            try:
                self._record(*allowed)
            except AuditUnavailable:
                self._undo(operation, admitted.run_params, resp, admitted.caller.org)
                raise
        return resp

    def admit(self, principal: Principal, operation: str, params: dict[str, Any] | None = None,
              request_id: str | None = None, *, authorization_reference: str | None = None,
              usage: Callable[[str, str, datetime], int] | None = None) -> Admitted:
        """The decision on one call before it runs (:meth:`call`, :mod:`.batch`): a refusal is
        recorded and raises AccessDenied; an allowed call comes back :class:`Admitted`."""
        if not isinstance(principal, Principal):
            raise AccessDenied("no principal: every call must be made by a known principal")
        at = self.clock()
        request_id = request_id or str(uuid.uuid4())
        if params is None:
            params = {}
        safe = params if isinstance(params, dict) else {}
        policy = self.policy
        collection = safe.get("CollectionId")
        # the service runs the call for the principal's org, with the collections a policy
        # share lets it use; the size-aware search default is computed as that caller too
        caller = Caller(principal.org, shares=policy.shared_with(
            principal.org, collection if isinstance(collection, str) else None, operation),
            principal=principal.name, category=principal.category)
        with acting_as(Caller(caller.org, shares=caller.shares)):
            safe, sized = self._size_aware(operation, safe, params)
        if sized is not None:
            params = safe
        decision = policy.decide(
            Request(principal, operation, safe, at, authorization_reference),
            usage=usage or self.ledger.usage)
        base: dict[str, Any] = {
            "ts": at, "request_id": request_id, "principal": principal.name,
            "org": principal.org, "category": principal.category, "operation": operation,
            "collection": collection if isinstance(collection, str) else None,
            "image_sha256": image_digests(operation, safe),
            "threshold": effective_threshold(operation, safe),
            "rule": decision.rule,
        }
        details = {k: v for k, v in (("authorization_reference", authorization_reference),
                                     ("constraints", decision.constraints or None)) if v}
        if sized is not None:
            details["collection_size"] = sized
            details["threshold_default"] = "size-aware: FPIR <= 1% (candor.scoring.fpir)"
        if decision.allowed and decision.constraints.get("human_review") and not \
                review.reviewable(operation) and is_biometric(operation):
            decision = review.cannot_hold(decision, operation)  # enforced: no way around it
            base["rule"] = decision.rule
        if not decision.allowed:
            self._record(base, details, decision="deny")
            raise AccessDenied(decision.denial_text())
        # a non-dict request goes on unchanged, for the service to refuse as it would anyway
        run_params = {**safe, **decision.param_overrides} if params is safe else params
        return Admitted(principal, operation, run_params, caller, decision, base, details,
                        policy.audit == "all" or is_biometric(operation),
                        authorization_reference)

    def conclude(self, admitted: Admitted, resp: dict[str, Any]
                 ) -> tuple[dict[str, Any], tuple[dict[str, Any], dict[str, Any]] | None]:
        """The response to return for an admitted call that ran, and its allow record
        (``(base, details)`` with the fields, for :meth:`_record`; None: not audited)."""
        base, details, decision = admitted.base, dict(admitted.details), admitted.decision
        details.update(_crossing(admitted.caller))
        fields = audit_fields(admitted.operation, resp)
        if decision.constraints.get("human_review") and review.reviewable(admitted.operation):
            # enforced: the matches go to a review, the caller gets a review id
            resp, details["review_id"], fields["matches"] = review.hold(
                self.reviews, admitted.operation, admitted.run_params, resp,
                principal=admitted.principal, request_id=base["request_id"], rule=decision.rule,
                at=base["ts"], threshold=base["threshold"],
                authorization_reference=admitted.authorization_reference,
                constraints=decision.constraints)
        if not (admitted.audited or admitted.caller.crossed):
            return resp, None  # the operator's use of another org's data: always recorded
        fields.update(decision="allow",
                      scoring=self._scoring() if base["threshold"] is not None else None)
        return resp, ({**base, **fields}, details)

    def run_candor(self, principal: Principal, operation: str, params: dict[str, Any],
                   action: Callable[[], Any], *, records_itself: bool = False,
                   authorization_reference: str | None = None) -> Any:
        """One of candor's own operations (keys, erasure, retention: descriptors with
        ``candor=True``): decided by the policy like any call, refused calls recorded, and
        ``action()`` run only when allowed. Its allow record is written here unless the
        action writes its own receipt (``records_itself``)."""
        descriptor = operations.spec(operation)
        if descriptor is None or not descriptor.candor:
            raise ValueError(f"{operation!r} is not one of candor's own operations")
        if not isinstance(principal, Principal):
            raise AccessDenied("no principal: every call must be made by a known principal")
        at = self.clock()
        decision = self.policy.decide(
            Request(principal, operation, params, at, authorization_reference),
            usage=self.ledger.usage)
        collection = params.get(descriptor.collection) if descriptor.collection else None
        base: dict[str, Any] = {
            "ts": at, "request_id": str(uuid.uuid4()), "principal": principal.name,
            "org": principal.org, "category": principal.category, "operation": operation,
            "collection": collection if isinstance(collection, str) else None,
            "rule": decision.rule}
        details = {k: v for k, v in (("authorization_reference", authorization_reference),
                                     ("request", _safe_details(params))) if v}
        if not decision.allowed:
            self._record(base, details, decision="deny")
            raise AccessDenied(decision.denial_text())
        if not records_itself:
            self._record(base, details, decision="allow")
        return action()

    def _size_aware(self, operation: str, safe: dict[str, Any],
                    params: Any) -> tuple[dict[str, Any], int | None]:
        """A search that names no threshold runs at the size-aware default (FPIR <= 1% for
        the collection's current size): resolve it here, into the request, so that the policy
        judges, the ledger records and the search runs with one value."""
        descriptor = operations.spec(operation)
        if (descriptor is None or descriptor.threshold is None or descriptor.threshold_fixed
                or params is not safe or not hasattr(self.service, "data_dir")):
            return safe, None
        from candor.service.search import size_aware_default

        resolved = size_aware_default(self.service, operation, safe)
        if resolved is None:
            return safe, None
        value, size = resolved
        return {**safe, descriptor.threshold: value}, size

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
        self.ledger.append(**self.record_fields(base, details, **fields))

    def record_fields(self, base: dict[str, Any], details: dict[str, Any],
                      **fields: Any) -> dict[str, Any]:
        record = {**base, **fields}  # details where the ledger has the column
        if details and "details" in self.ledger.table.c:
            record["details"] = details
        return record

    def _undo(self, operation: str, params: dict[str, Any], resp: dict[str, Any],
              org: str) -> None:
        """Remove faces indexed by a call whose audit record could not be written."""
        if operation != "IndexFaces":
            return
        ids = [r["Face"]["FaceId"] for r in resp.get("FaceRecords") or []
               if (r.get("Face") or {}).get("FaceId")]
        if not ids:
            return
        try:
            with acting_as(Caller(org)):
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

    def index_faces_many(self, requests: Iterable[tuple[Any, Any]], **kw: Any) -> Iterator[Any]:
        """IndexFaces per photo, decided and recorded as by :meth:`call`, in groups (.batch)."""
        return index_faces_many(self.gate, self.principal, requests,
                                authorization_reference=self.authorization_reference, **kw)

    def __getattr__(self, name: str) -> Any:  # data_dir, engine, ... of the wrapped service
        return getattr(self.gate.service, name)


def system_principal(name: str) -> Principal:
    """candor acting on its own (the retention timer, policy reloads): the operator's
    organisation, so that a policy can name it (``org: operator``)."""
    from candor.config import OPERATOR_ORG

    return Principal(name=name, org=OPERATOR_ORG, category="general", kind="local")


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
