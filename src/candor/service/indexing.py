"""IndexFaces over many photos at the pipeline's speed: what ``candor index`` runs.

:func:`index_faces_many` runs each request as the IndexFaces handler does (validated against
botocore's model, its collection resolved for its caller, the same faces kept or left out by
:func:`candor.service.faces.faces_to_index`, the same response), but decodes and detects ahead
and embeds in batches on :func:`candor.face.pipeline.analyse_many`, and stores a *group* of
photos in one write transaction instead of one per photo: one commit (one fsync) per group.
A ``recorder`` (the gate's :class:`candor.governance.batch.GroupRecords`) appends the group's
audit records inside that transaction. Groups commit on their own thread, one at a time and in
order, so the pipeline is not idle while the disk syncs; each photo is handed back only once its
group has committed, so a ``kill -9`` loses nothing that was handed back (and at most one group
of faces is stored without having been reported: the next group is committed only after the
previous one was handed back).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from candor.errors import AuditUnavailable, CandorError
from candor.service.caller import Caller, acting_as, current_caller, resolve_collection
from candor.service.common import analysed_faces, request_image, same_model, store_of
from candor.service.faces import faces_to_index, index_response
from candor.service.validation import validate

#: photos per commit: one transaction (and one fsync) per group; a kill -9 can leave at most
#: this many photos' faces stored but not yet reported
GROUP_PHOTOS = 16
#: group commits that lost a race for the ledger's next seq (another writer) are retried
RETRIES = 20


@dataclass
class Indexing:
    """One photo through the batch: the caller's ``item`` (a path), its IndexFaces request
    and caller, the gate's ``ticket``; then its ``response`` or ``error``."""

    item: Any
    params: Any = None
    caller: Caller | None = None
    ticket: Any = None
    error: BaseException | None = None
    response: dict | None = None
    coll: Any = None
    rows: list = field(default_factory=list)
    parts: tuple = ()


def index_faces_many(service: Any, requests: Iterable[Indexing | tuple[Any, Any]], *,
                     recorder: Any = None, group: int = GROUP_PHOTOS,
                     workers: int | None = None) -> Iterator[Indexing]:
    """IndexFaces for every request, in order; see the module doc. A request is an
    :class:`Indexing` or an ``(item, params)`` pair (params may be the exception that kept it
    from being formed; it comes back as that error)."""
    from candor.face.pipeline import analyse_many

    store = store_of(service)
    # each request's collection is resolved for its own caller (tenancy, shares, crossings
    # noted), from the rows read once per run; the group's transaction finds it again
    named = _Named(store)

    def checked() -> Iterator[Indexing]:
        for one in requests:
            if not isinstance(one, Indexing):
                item, params = one
                one = (Indexing(item, error=params) if isinstance(params, BaseException)
                       else Indexing(item, params))
            if one.error is None:
                try:
                    one.params = validate("IndexFaces", one.params)
                    with acting_as(one.caller or current_caller()):
                        one.coll = resolve_collection(named, one.params["CollectionId"])
                    same_model(one.coll)  # fail before any model work
                except CandorError as exc:
                    one.error = exc
            yield one

    def load(one: Indexing):
        if one.error is not None:
            raise one.error
        return request_image(one.params)

    def attributes(one: Indexing) -> list[str]:
        return one.params.get("DetectionAttributes") or ["DEFAULT"]

    # groups commit on their own thread, one at a time and in order, while the pipeline goes
    # on with the next photos; a group is handed back once its commit has returned
    committer = ThreadPoolExecutor(1, thread_name_prefix="candor-commit")
    inflight: Future | None = None
    pending: list[Indexing] = []

    def commit(ready: list[Indexing]) -> Iterator[Indexing]:
        nonlocal inflight
        if inflight is not None:
            yield from inflight.result()
        inflight = committer.submit(_commit, store, ready, recorder)

    try:
        for analysed in analyse_many(service.engine, checked(), attributes, load=load,
                                     landmarks=True, workers=workers):
            one = analysed.source
            if analysed.error is not None:
                one.error = analysed.error
            else:
                rows, keep, unindexed = faces_to_index(one.coll, one.params, analysed.image,
                                                       analysed_faces(analysed.faces))
                one.rows, one.parts = rows, (keep, unindexed)
            if one.error is None and pending and _key_of(pending) not in (None, _key(one)):
                yield from commit(pending)
                pending = []
            pending.append(one)
            if len(pending) >= group:
                yield from commit(pending)
                pending = []
            if inflight is not None and inflight.done():
                done, inflight = inflight, None
                yield from done.result()
        if pending:
            yield from commit(pending)
        if inflight is not None:
            done, inflight = inflight, None
            yield from done.result()
    finally:
        committer.shutdown(wait=True)


class _Named:
    """``collections_named`` of the store, read once per collection id."""

    def __init__(self, store: Any) -> None:
        self.store, self.rows = store, {}

    def collections_named(self, collection_id: str, conn: Any = None) -> list:
        if collection_id not in self.rows:
            self.rows[collection_id] = self.store.collections_named(collection_id, conn)
        return self.rows[collection_id]


def _key(one: Indexing) -> tuple[str, str] | None:
    return (one.coll.collection_id, one.coll.owner_org) if one.coll is not None else None


def _key_of(group: list[Indexing]) -> tuple[str, str] | None:
    return next((_key(one) for one in group if one.coll is not None and one.error is None),
                None)


def _commit(store: Any, group: list[Indexing], recorder: Any) -> list[Indexing]:
    """Store the group's faces and (``recorder``) its records in one transaction."""
    ok = [one for one in group if one.error is None]
    rows = [row for one in ok for row in one.rows]

    def within(conn: Any, stored: list) -> None:
        at = 0
        for one in ok:
            keep, unindexed = one.parts
            one.response = index_response(stored[at:at + len(one.rows)], keep, unindexed)
            at += len(one.rows)
        if recorder is not None:
            recorder.within(conn, group)

    key = _key_of(group)
    for attempt in range(RETRIES):
        try:
            if key is None:
                with store.write() as conn:
                    within(conn, [])
            else:
                store.add_faces(key[0], rows, org=key[1], within=within)
            break
        except SQLAlchemyError as exc:
            if recorder is None:
                raise  # as the IndexFaces handler would
            # another writer took the ledger's next seq (or held the lock): try again
            if not isinstance(exc, (IntegrityError, OperationalError)) or attempt == RETRIES - 1:
                raise AuditUnavailable("the audit ledger cannot be written, so the operation "
                                       "was refused (no unaudited biometric work)") from exc
            time.sleep(min(0.005 * (2 ** attempt), 0.25))
    if recorder is not None:
        recorder.committed(group)
    for one in group:
        one.rows, one.parts = [], ()
    return group

