"""Erasure of a person and retention purges, each with a receipt in the audit ledger.

candor stores embeddings and face metadata, never images. Erasing a person removes every
face indexed under their ExternalImageId or associated with their UserId, in every collection
(or one), recomputes the mean embedding of any user such a face belonged to, deletes the user
for a UserId erasure, and keeps the vector indexes in step (through the store), so that no
later search returns them. The receipt records FaceIds (random UUIDs) and a SHA-256 of the
identifier, not the identifier itself, so that the ledger does not keep what was erased.

Retention: a collection may carry ``retention_days``; :func:`purge` deletes faces older than
that, on demand or from :class:`RetentionTimer` in ``candor serve``. See docs/retention.md.

Tenancy: an erasure by the operator (or with no principal) spans every organisation's
collections, since it is the data subject's right; another organisation's spans its own.
A retention purge is system-wide. Receipts name a collection by
:func:`~candor.store.collections.collection_label` (``org/id`` for another organisation's).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from candor.errors import InvalidParameter, ResourceNotFound
from candor.governance.ledger import Ledger, iso
from candor.governance.principal import Principal
from candor.service.caller import Caller, resolve_collection
from candor.store.collections import collection_label

log = logging.getLogger(__name__)


@dataclass
class Receipt:
    """What an erasure or purge removed, and the ledger record that proves it."""

    operation: str
    faces: dict[str, list[str]] = field(default_factory=dict)  # collection -> FaceIds removed
    users: dict[str, list[str]] = field(default_factory=dict)  # collection -> UserIds removed
    record: dict[str, Any] | None = None

    @property
    def face_count(self) -> int:
        return sum(len(v) for v in self.faces.values())

    def to_dict(self) -> dict[str, Any]:
        return {"Operation": self.operation, "FacesRemoved": self.face_count,
                "Faces": self.faces, "UsersRemoved": self.users,
                "LedgerSeq": (self.record or {}).get("seq"),
                "LedgerHash": (self.record or {}).get("hash")}


def _subject_hash(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def _caller(principal: Principal | None) -> Caller:
    return Caller(principal.org) if principal is not None else Caller.operator()


def _collections(store: Any, conn, collection: str | None, caller: Caller) -> list:
    """The collections an erasure by ``caller`` covers: the named one as the caller resolves
    it, else every organisation's (the operator) or the caller's own."""
    if collection is not None:
        return [resolve_collection(store, collection, conn, caller)]
    return store.all_collections(conn, org=None if caller.is_operator else caller.org)


def _remove(store: Any, conn, coll, faces: list) -> list[str]:
    """Unlink ``faces`` (FaceRows) from their users (recomputing each user's mean embedding) in
    this write transaction; return their FaceIds for deletion once it has committed."""
    by_user: dict[int, list[int]] = {}
    for f in faces:
        if f.user_pk is not None:
            by_user.setdefault(f.user_pk, []).append(f.key)
    for user_pk, keys in by_user.items():
        store.set_user_faces(conn, coll.id, user_pk, add=[], remove=keys)
    return [f.face_id for f in faces]


def _delete_faces(store: Any, faces: dict[str, list[str]], owners: dict[str, Any]) -> None:
    """Delete the faces (by collection label; ``owners`` maps a label to its collection row);
    when this returns they are in no file of the data dir (the store checkpoints its log and
    rewrites the saved indexes after a deletion)."""
    for label, ids in faces.items():
        if not ids:
            continue
        row = owners[label]
        cid, org = row.collection_id, row.owner_org
        _, failed = store.delete_faces(cid, ids, org=org)
        left = [f for f in failed if "FACE_NOT_FOUND" not in f.get("Reasons", [])]
        if left:  # a concurrent AssociateFaces re-linked one: unlink again and retry once
            with store.write() as conn:
                coll = store.collection(cid, conn, org=org)
                found = store.faces_by_id(coll.id, [f["FaceId"] for f in left], conn)
                _remove(store, conn, coll, list(found.values()))
            store.delete_faces(cid, [f["FaceId"] for f in left], org=org)


def _forget_matches(store: Any, faces: dict[str, list[str]],
                    users: dict[str, set[str]] | None = None) -> None:
    """Stored video search results and held reviews name faces (and users) too: the deleted
    faces' matches and the erased users' go with them."""
    erased = {i for ids in faces.values() for i in ids}
    store.erase_job_matches(erased)
    store.erase_review_candidates(erased, users=users)


def erase(store: Any, ledger: Ledger, *, external_image_id: str | None = None,
          user_id: str | None = None, collection: str | None = None,
          principal: Principal | None = None, request_id: str | None = None) -> Receipt:
    """Remove every face of one person (by ExternalImageId or UserId) everywhere, or in one
    collection, and write the erasure receipt into the ledger."""
    if (external_image_id is None) == (user_id is None):
        raise InvalidParameter("erase needs exactly one of ExternalImageId or UserId")
    kind, value = (("ExternalImageId", external_image_id) if external_image_id is not None
                   else ("UserId", user_id))
    receipt = Receipt("Erase")
    owners: dict[str, Any] = {}
    caller = _caller(principal)
    with store.write() as conn:
        for coll in _collections(store, conn, collection, caller):
            label = collection_label(coll)
            owners[label] = coll
            if external_image_id is not None:
                found = store.faces_where(conn, coll.id, external_image_id=external_image_id)
                ids = _remove(store, conn, coll, found)
            else:
                user = store.user(coll.id, user_id, conn)
                if user is None:
                    continue
                ids = [f.face_id for f in store.faces_where(conn, coll.id, user_pk=user.id)]
                store.delete_user(conn, coll.id, user.id)  # unlinks its faces, drops the user
                receipt.users[label] = [user_id]
            if ids:
                receipt.faces[label] = ids
    _delete_faces(store, receipt.faces, owners)
    _forget_matches(store, receipt.faces, users={
        owners[label].collection_id: set(ids) for label, ids in receipt.users.items()})
    receipt.record = _receipt_record(ledger, receipt, principal, request_id, collection,
                                     decision="erasure", details={
                                         "subject": kind,
                                         "subject_sha256": _subject_hash(kind, value),
                                         # how many, not the UserIds: the receipt
                                         # keeps no identifier it erased
                                         "users_removed": {c: len(u) for c, u in
                                                           receipt.users.items()} or None,
                                         "owner_orgs": sorted({
                                             c.owner_org for c in owners.values()
                                             if c.owner_org != caller.org}) or None})
    return receipt


def set_retention(store: Any, ledger: Ledger, collection: str, days: int | None,
                  principal: Principal | None = None) -> None:
    """Keep the faces of ``collection`` for ``days`` (None: until deleted); recorded."""
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
        raise InvalidParameter("retention must be a whole number of days, at least 1")
    caller = _caller(principal)
    coll = resolve_collection(store, collection, caller=caller)
    store.set_retention(coll.collection_id, days, org=coll.owner_org)
    details: dict[str, Any] = {"retention_days": days}
    if coll.owner_org != caller.org:
        details["owner_org"] = coll.owner_org
    ledger.append(operation="SetRetention", decision="allow", collection=collection,
                  **_who(principal), details=details)


def retention(store: Any) -> dict[str, int]:
    """Collections that have a retention period, with it in days (by collection label)."""
    return store.retention_periods()


def purge(store: Any, ledger: Ledger, now: datetime | None = None,
          principal: Principal | None = None) -> list[Receipt]:
    """Delete faces older than their collection's retention period; one receipt each."""
    now = now or datetime.now(timezone.utc)
    receipts = []
    for row in store.retention_rows():  # every organisation's: retention is system-wide
        label, days = collection_label(row), int(row.retention_days)
        cutoff = now - timedelta(days=days)
        receipt = Receipt("Purge")
        with store.write() as conn:
            try:
                coll = store.collection(row.collection_id, conn, org=row.owner_org)
            except ResourceNotFound:
                continue
            ids = _remove(store, conn, coll, store.faces_where(conn, coll.id, created_before=cutoff))
        if not ids:
            continue
        receipt.faces[label] = ids
        _delete_faces(store, receipt.faces, {label: coll})
        _forget_matches(store, receipt.faces)
        receipt.record = _receipt_record(ledger, receipt, principal, None, label,
                                         decision="purge", details={
                                             "retention_days": days,
                                             "older_than": iso(cutoff)})
        receipts.append(receipt)
    return receipts


def _who(principal: Principal | None) -> dict[str, Any]:
    if principal is None:
        return {"principal": "system:retention", "org": None, "category": None}
    return {"principal": principal.name, "org": principal.org, "category": principal.category}


def _receipt_record(ledger: Ledger, receipt: Receipt, principal: Principal | None,
                    request_id: str | None, collection: str | None, decision: str,
                    details: dict[str, Any]) -> dict[str, Any]:
    who = _who(principal)
    if principal is None and decision == "erasure":
        who["principal"] = "system:erasure"
    face_ids = [fid for ids in receipt.faces.values() for fid in ids]
    return ledger.append(
        operation=receipt.operation, decision=decision, request_id=request_id,
        collection=collection or (next(iter(receipt.faces)) if len(receipt.faces) == 1 else None),
        faces_found=len(face_ids), matches=[{"FaceId": f, "Removed": True} for f in face_ids],
        details={**{k: v for k, v in details.items() if v is not None},
                 "collections": {c: len(v) for c, v in receipt.faces.items()}},
        **who)


class RetentionTimer:
    """Runs :func:`purge` every ``interval`` seconds in a daemon thread (``candor serve``)."""

    def __init__(self, store: Any, ledger: Ledger, interval: float = 3600.0,
                 run: Callable[[], list[Receipt]] | None = None):
        self.store, self.ledger, self.interval = store, ledger, interval
        #: what one round does (the server passes the purge through its gate)
        self.run = run or (lambda: purge(self.store, self.ledger))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="candor-retention", daemon=True)

    def start(self) -> RetentionTimer:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for r in self.run():
                    log.info("retention purge: %d faces from %s", r.face_count, list(r.faces))
            except Exception:  # keep the timer alive; the next round retries
                log.exception("retention purge failed")
            self._stop.wait(self.interval)
