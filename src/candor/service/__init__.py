"""The operations, with Rekognition semantics, transport-free: one function per operation.

Every door (Python API, CLI, HTTP) calls :meth:`Service.call` with the operation's
Rekognition name and its request as a dict of wire names (``{"Image": {"Bytes": b"..."}}``,
bytes already base64-decoded or an already decoded Image), and gets the response dict back.
``call`` checks the request against botocore's model (:mod:`candor.service.validation`) before
the handler runs, so every door gets the same InvalidParameterException text and handlers see
only valid, normalised requests. Governance wraps ``call``, so no door can bypass it.

Operations live in one module per family and register themselves with :func:`operation`:
``detection`` (DetectFaces, CompareFaces), ``collections`` (Create/Delete/List/Describe),
``faces`` (IndexFaces, ListFaces, DeleteFaces), ``users`` (CreateUser ... DisassociateFaces),
``search`` (SearchFaces*, SearchUsers*).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from candor import config
from candor.errors import InvalidParameter
from candor.service.validation import validate

Handler = Callable[["Service", dict[str, Any]], dict[str, Any]]
OPERATIONS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler of Rekognition operation ``name``."""

    def register(fn: Handler) -> Handler:
        OPERATIONS[name] = fn
        return fn

    return register


class Service:
    """One candor instance: a data directory, a model backend and the engine over it."""

    def __init__(self, data_dir: str | os.PathLike | None = None, backend: str | None = None,
                 detector: str | None = None) -> None:
        self._data_dir_arg = data_dir
        self.backend_name = backend or config.default_backend()
        self.detector = detector

    @cached_property
    def data_dir(self) -> Path:
        return config.data_dir(self._data_dir_arg)

    @cached_property
    def engine(self):
        from candor.face.engine import Engine

        return Engine(backend=self.backend_name, detector=self.detector)

    def call(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run operation ``name`` on ``params`` (checked against botocore's model first) and
        return its response dict."""
        _load_operations()
        handler = OPERATIONS.get(name)
        if handler is None:
            raise InvalidParameter(f"unknown operation {name!r}")
        return handler(self, validate(name, params))


def _load_operations() -> None:
    """Import the operation modules so that they register their handlers (imported here, not
    at the top, because each of them imports :func:`operation` from this module)."""
    from candor.service import collections, detection, faces, search, users  # noqa: F401
