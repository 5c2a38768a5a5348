"""Who is calling the operation that runs on this thread, for operations that keep state per
organisation (video jobs: a job is visible only to the organisation that started it).

The governance gate sets it around each call (:func:`calling_as`); in-process code without a
gate runs as ``None`` (the service's own settings decide: ``settings.org``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    org: str | None
    principal: str | None
    category: str | None


_CALLER: ContextVar[Caller | None] = ContextVar("candor_caller", default=None)


@contextmanager
def calling_as(org: str | None, principal: str | None, category: str | None) -> Iterator[None]:
    token = _CALLER.set(Caller(org, principal, category))
    try:
        yield
    finally:
        _CALLER.reset(token)


def current_caller(default_org: str | None = None) -> Caller:
    """The caller of the running operation (or the local one of ``default_org``)."""
    return _CALLER.get() or Caller(default_org, "local", None)
