"""Who is calling the service, and which organisation's collections it may reach (tenancy).

A collection belongs to the organisation whose principal created it, and its id is unique
within that organisation only, as on AWS it is within an account. :meth:`Service.call` runs
each handler as a :class:`Caller`; handlers find a request's collection with
:func:`resolve_collection`, which gives another organisation exactly what AWS gives across
accounts (ResourceNotFoundException, worded as for a collection that does not exist).

The operator (:data:`candor.config.OPERATOR_ORG`) sees all: its own namespace first, then the
one other organisation that holds the id (more than one: it must say which, by acting as that
organisation). Every such cross-organisation access is noted on the caller, and the gate puts
it in the audit record (``details.owner_org``).

An organisation may use another's collection only through an explicit share rule of the
policy in force (``shares:`` in the policy file): the gate hands the call the owners whose
collection it may use for this operation, and :func:`may_use` is the one place that decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from candor.config import OPERATOR_ORG
from candor.errors import InvalidParameter, ResourceNotFound


@dataclass
class Caller:
    """The organisation a call acts for; ``shares`` the owners whose collections it may use
    by an explicit policy share (owner -> share id); ``crossed`` collects the owners of other
    organisations' collections the call used (for the audit record)."""

    org: str = OPERATOR_ORG
    crossed: set[str] = field(default_factory=set)
    shares: dict[str, str] = field(default_factory=dict)
    #: who, within the organisation (access key id or local name) and under which use-case
    #: category: kept with state an operation leaves behind (video jobs)
    principal: str | None = None
    category: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.org == OPERATOR_ORG

    @classmethod
    def operator(cls) -> Caller:
        return cls(OPERATOR_ORG)


_current: ContextVar[Caller | None] = ContextVar("candor_caller", default=None)


def current_caller() -> Caller:
    """The caller of the operation running in this context; a bare in-process call (no
    caller given) acts as the operator."""
    caller = _current.get()
    return caller if caller is not None else Caller.operator()


@contextmanager
def acting_as(caller: Caller | None) -> Iterator[Caller]:
    """Run the block as ``caller`` (None: the operator)."""
    caller = caller if caller is not None else Caller.operator()
    token = _current.set(caller)
    try:
        yield caller
    finally:
        _current.reset(token)


def may_use(caller: Caller, owner_org: str) -> bool:
    """Whether ``caller`` may use a collection owned by ``owner_org``: its owner, the
    operator, or an organisation an explicit policy share names for this call."""
    return (caller.org == owner_org or caller.org == OPERATOR_ORG
            or owner_org in caller.shares)


def not_found(collection_id: str) -> ResourceNotFound:
    return ResourceNotFound(f"The collection id: {collection_id} does not exist")


def resolve_collection(store, collection_id: str, conn=None, caller: Caller | None = None):
    """The collection row ``collection_id`` names for ``caller`` (default: the current one):
    its own; else, if it may use other organisations' (the operator), the one other
    organisation's that has the id. Otherwise ResourceNotFound, as for a missing collection."""
    caller = caller if caller is not None else current_caller()
    rows = store.collections_named(collection_id, conn)
    for row in rows:
        if row.owner_org == caller.org:
            return row
    usable = [r for r in rows if may_use(caller, r.owner_org)]
    if not usable:
        raise not_found(collection_id)
    if len(usable) > 1:
        owners = ", ".join(r.owner_org for r in usable)
        raise InvalidParameter(
            f"The collection id: {collection_id} exists in several organisations ({owners}); "
            "act as the one you mean (candor --as ORG, or that organisation's key)")
    caller.crossed.add(usable[0].owner_org)
    return usable[0]


def collection_arn(row) -> str:
    """``aws:rekognition:candor:<owner org>:collection/<id>`` (Rekognition returns collection
    ARNs without the ``arn:`` prefix)."""
    return f"aws:rekognition:candor:{row.owner_org}:collection/{row.collection_id}"
