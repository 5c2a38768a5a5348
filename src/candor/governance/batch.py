"""IndexFaces over many photos through the gate, recorded in groups (``candor index``).

Each photo is its own IndexFaces call: decided by :meth:`Gate.admit` (the same policy, caller,
shares and record fields as :meth:`Gate.call`; a refusal is recorded and comes back as that
photo's AccessDenied), run by the service's batch (:func:`candor.service.indexing.index_faces_many`:
the same validation, tenancy and faces as the IndexFaces handler, on the pipeline), and recorded
(allow, or failed with its error code) by :meth:`Gate.conclude` / :meth:`Admitted.failed`. What
differs is only when the records are written: the service stores a group of photos in one
transaction, and :class:`GroupRecords` appends the group's records inside that same transaction,
so faces and records are durable together or not at all, and no photo is handed back before its
group committed. Daily caps count the calls admitted but not yet recorded, so a group cannot
run past a cap.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from candor.errors import CandorError
from candor.governance.policy import Decision
from candor.governance.principal import Principal
from candor.governance.record_fields import _crossing
from candor.service.caller import Caller

OPERATION = "IndexFaces"


@dataclass
class Admitted:
    """An allowed call, not yet run: what :meth:`Gate.admit` decided and will record."""

    principal: Principal
    operation: str
    run_params: Any
    caller: Caller
    decision: Decision
    base: dict[str, Any]
    details: dict[str, Any]
    audited: bool
    authorization_reference: str | None = None

    def failed(self, exc: BaseException) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The record of this call having failed with ``exc`` (None: not audited)."""
        if not (self.audited or self.caller.crossed):
            return None
        code = exc.code if isinstance(exc, CandorError) else "InternalServerError"
        return ({**self.base, "decision": "failed"},
                {**self.details, **_crossing(self.caller), "error": code})


class GroupRecords:
    """The gate's side of a group commit: the records of a group's calls, appended inside the
    transaction that stores the group's faces, and the anchor moved once it committed."""

    def __init__(self, gate: Any) -> None:
        self.gate = gate
        self.pending: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()  # admitted on one thread, committed on another
        self._last: dict[str, Any] | None = None

    def usage(self, rule: str, org: str, since: Any) -> int:
        """The ledger's count, plus the calls admitted here and not yet recorded."""
        with self._lock:
            pending = self.pending[(rule, org)]
        return self.gate.ledger.usage(rule, org, since) + pending

    def admitted(self, ticket: Admitted, step: int = 1) -> None:
        with self._lock:
            self.pending[(ticket.base["rule"], ticket.base["org"])] += step

    def within(self, conn: Any, group: list) -> None:
        """Append the group's records (in photo order) in ``conn``'s transaction."""
        bodies = []
        for one in group:
            admitted: Admitted | None = one.ticket
            if admitted is None:
                continue
            if one.error is not None:
                record = admitted.failed(one.error)
            else:
                one.response, record = self.gate.conclude(admitted, one.response)
            if record is not None:
                bodies.append(self.gate.ledger.prepare(**self.gate.record_fields(*record)))
        rows = self.gate.ledger.append_within(conn, bodies)
        self._last = rows[-1] if rows else None

    def committed(self, group: list) -> None:
        """The group is durable: move the anchor, and stop counting its calls as pending."""
        if self._last is not None:
            self.gate.ledger.anchor(self._last)
            self._last = None
        for one in group:
            if one.ticket is not None:
                self.admitted(one.ticket, -1)


def index_faces_many(gate: Any, principal: Principal, requests: Iterable[tuple[Any, Any]], *,
                     authorization_reference: str | None = None, **kw: Any) -> Iterator[Any]:
    """IndexFaces for each ``(item, params)`` (params may be the exception that kept the
    request from being formed, e.g. an unreadable file: handed back unrecorded, as no call was
    made), in order, each handed back (an :class:`~candor.service.indexing.Indexing` with its
    response or error) only once its group's faces and records are committed."""
    from candor.service.indexing import Indexing

    records = GroupRecords(gate)

    def admitted() -> Iterator[Indexing]:
        for item, params in requests:
            if isinstance(params, BaseException):
                yield Indexing(item, error=params)
                continue
            try:
                ticket = gate.admit(principal, OPERATION, params,
                                    authorization_reference=authorization_reference,
                                    usage=records.usage)
            except CandorError as exc:  # refused (and recorded), or the ledger unreadable
                yield Indexing(item, error=exc)
                continue
            records.admitted(ticket)
            yield Indexing(item, ticket.run_params, ticket.caller, ticket)

    return gate.service.index_faces_many(admitted(), recorder=records, **kw)
